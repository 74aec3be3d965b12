// The Libvirt class (vmlet's one entry point to libvirt) against a fake daemon: which calls each
// method makes, VirtError kinds from libvirt's error codes (not from message text), the daemon's
// version for loadedLibvirtVersion, and lifecycle events: delivered by name, registered again
// on a new connection after the daemon dropped the old one, with onReconnect after that.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FakeDaemon, type Call, type Handler } from '../helpers/fake-libvirtd.js';
import { waitFor } from '../helpers/wait.js';
import { XdrReader, XdrWriter } from '../../src/vm/rpc/xdr.js';
import { decodeDomain, encodeDomain, Proc, uuidFromString, type WireDomain } from '../../src/vm/rpc/protocol.js';
import { encodeDomainInfo, encodeDomainState, encodeLifecycleMsg, encodeListAllDomains, encodeNodeInfo } from '../../src/vm/rpc/structs.js';
import { DomainState, Libvirt, loadedLibvirtVersion, VirtError, type LifecycleEvent } from '../../src/vm/libvirt.js';

const dir = mkdtempSync(join(tmpdir(), 'vmlet-lv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const silent = pino({ level: 'silent' });
const fakes: FakeDaemon[] = [];
const wrappers: Libvirt[] = [];
afterEach(async () => {
  await Promise.all(wrappers.splice(0).map((l) => l.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

const UUID = '8fed2cf1-1f9f-4766-8244-b8a8f1737e54';
const vm: WireDomain = { name: 'vm', uuid: uuidFromString(UUID), id: 3 };
const bytes = (fn: (x: XdrWriter) => void) => {
  const x = new XdrWriter();
  fn(x);
  return x.bytes();
};
/** Looks up "vm" only; any other name is libvirt's VIR_ERR_NO_DOMAIN. */
const lookup: Handler = (c, d) => {
  const name = new XdrReader(c.payload).string();
  if (name === 'vm') d.reply(c, bytes((x) => encodeDomain(x, vm)));
  else d.fail(c, 42, `Domain not found: no domain with matching name '${name}'`);
};
const libVersion = (n: number): Handler => (c, d) => d.reply(c, bytes((x) => x.uhyper(n)));
const ok: Handler = (c, d) => d.reply(c);

async function fake(handlers: Partial<Record<number, Handler>>): Promise<FakeDaemon> {
  const f = await new FakeDaemon(dir, { [Proc.DOMAIN_LOOKUP_BY_NAME]: lookup, ...handlers }).listen();
  fakes.push(f);
  return f;
}

function wrapper(path: string): Libvirt {
  const l = new Libvirt(`qemu:///system?socket=${path}`, silent);
  wrappers.push(l);
  return l;
}

const rejection = async (p: Promise<unknown>): Promise<VirtError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VirtError);
  return err as VirtError;
};
const procsAfterHandshake = (f: FakeDaemon) => f.calls.map((c) => c.header.proc).filter((p) => p !== Proc.AUTH_LIST && p !== Proc.CONNECT_OPEN);

describe('Libvirt lifecycle methods over the RPC client', () => {
  it('look the domain up by name, then make the lifecycle call; undefine keeps the NVRAM file', async () => {
    const f = await fake({
      [Proc.DOMAIN_DEFINE_XML]: (c, d) => d.reply(c, bytes((x) => encodeDomain(x, { ...vm, id: -1 }))),
      [Proc.DOMAIN_CREATE_WITH_FLAGS]: (c, d) => d.reply(c, bytes((x) => encodeDomain(x, vm))),
      [Proc.DOMAIN_SHUTDOWN]: ok,
      [Proc.DOMAIN_DESTROY]: ok,
      [Proc.DOMAIN_UNDEFINE_FLAGS]: ok,
      [Proc.DOMAIN_GET_XML_DESC]: (c, d) => d.reply(c, bytes((x) => x.string('<domain/>'))),
      [Proc.DOMAIN_GET_INFO]: (c, d) => d.reply(c, bytes((x) => encodeDomainInfo(x, { state: 1, maxMemKiB: 262_144, memoryKiB: 131_072, vcpus: 2, cpuTimeNs: 5e9 }))),
    });
    const lv = wrapper(f.path);
    expect(await lv.defineDomain('<domain/>')).toBe(UUID);
    await lv.startDomain('vm');
    await lv.shutdownDomain('vm');
    await lv.destroyDomain('vm');
    await lv.undefineDomain('vm');
    expect(await lv.domainXML('vm')).toBe('<domain/>');
    expect(await lv.domainInfo('vm')).toEqual({ state: DomainState.RUNNING, maxMemKiB: 262_144, memoryKiB: 131_072, vcpus: 2, cpuTimeNs: 5e9 });
    const L = Proc.DOMAIN_LOOKUP_BY_NAME;
    expect(procsAfterHandshake(f)).toEqual([11, L, 196, L, 33, L, 12, L, 231, L, 14, L, 16]);
    const undefine = new XdrReader(f.callsOf(Proc.DOMAIN_UNDEFINE_FLAGS)[0]!.payload);
    expect(decodeDomain(undefine).name).toBe('vm');
    expect(undefine.uint()).toBe(1 | 2 | 8 | 16); // MANAGED_SAVE | SNAPSHOTS_METADATA | KEEP_NVRAM | CHECKPOINTS_METADATA
  });

  it('lists every domain with its state; one gone between the list and its state is left out', async () => {
    const gone: WireDomain = { name: 'gone', uuid: Buffer.alloc(16, 1), id: -1 };
    const f = await fake({
      [Proc.CONNECT_LIST_ALL_DOMAINS]: (c, d) => d.reply(c, bytes((x) => encodeListAllDomains(x, [vm, gone]))),
      [Proc.DOMAIN_GET_STATE]: (c, d) => {
        if (decodeDomain(new XdrReader(c.payload)).name === 'gone') return d.fail(c, 42, 'Domain not found');
        d.reply(c, bytes((x) => encodeDomainState(x, { state: 1, reason: 1 })));
      },
    });
    expect(await wrapper(f.path).listDomains()).toEqual([{ name: 'vm', uuid: UUID, state: DomainState.RUNNING }]);
    expect(new XdrReader(f.callsOf(Proc.CONNECT_LIST_ALL_DOMAINS)[0]!.payload).int()).toBe(1); // need_results
  });

  it('takes the error kind from libvirt’s code: 42 not-found, others other, whatever the message', async () => {
    const f = await fake({
      [Proc.DOMAIN_GET_XML_DESC]: (c, d) => d.fail(c, 42, 'no such thing here'), // NO_DOMAIN, odd message
      [Proc.DOMAIN_DESTROY]: (c, d) => d.fail(c, 55, 'Requested operation is not valid: domain is not running'),
      [Proc.CONNECT_GET_HOSTNAME]: (c, d) => d.fail(c, 1, 'internal error: client socket is closed'), // a connection-ish message, code 1
    });
    const lv = wrapper(f.path);
    expect(await rejection(lv.domainXML('vm'))).toMatchObject({ kind: 'not-found', op: 'xml', message: 'xml vm: no such thing here' });
    expect(await rejection(lv.domainInfo('other'))).toMatchObject({ kind: 'not-found', op: 'info', message: "info other: Domain not found: no domain with matching name 'other'" });
    // The message stays libvirt's, so callers that look for "not running" still find it.
    expect(await rejection(lv.destroyDomain('vm'))).toMatchObject({ kind: 'other', message: 'destroy vm: Requested operation is not valid: domain is not running' });
    expect(await rejection(lv.hostname())).toMatchObject({ kind: 'other', op: 'hostname' });
    expect(f.connections).toBe(1);
  });

  it('says connection when libvirtd is not there, on connect and on calls', async () => {
    const lv = wrapper(join(dir, 'nobody.sock'));
    const e1 = await rejection(lv.connect());
    expect(e1).toMatchObject({ kind: 'connection', op: 'connect' });
    expect(e1.message).toMatch(/^cannot connect to libvirt at qemu:\/\/\/system\?socket=.*nobody\.sock/);
    expect(await rejection(lv.ping())).toMatchObject({ kind: 'connection', op: 'ping' });
    expect(lv.connected).toBe(false);
  });

  it('retries a call once on a new connection after the old one was lost', async () => {
    let n = 0;
    const f = await fake({ [Proc.CONNECT_GET_HOSTNAME]: (c, d) => (++n === 1 ? c.socket.destroy() : d.reply(c, bytes((x) => x.string('node-1')))) });
    expect(await wrapper(f.path).hostname()).toBe('node-1');
    expect(f.connections).toBe(2);
  });

  it('loadedLibvirtVersion: the daemon’s version, learnt at connect and refreshed by ping', async () => {
    const nodeInfo: Handler = (c, d) => d.reply(c, bytes((x) => encodeNodeInfo(x, { model: 'x86_64', memoryKiB: 1, cpus: 1, mhz: 1, nodes: 1, sockets: 1, cores: 1, threads: 1 })));
    const a = await fake({ [Proc.CONNECT_GET_LIB_VERSION]: libVersion(9_000_000), [Proc.NODE_GET_INFO]: nodeInfo });
    await wrapper(a.path).connect();
    expect(loadedLibvirtVersion()).toBe('9.0.0');
    const b = await fake({ [Proc.CONNECT_GET_LIB_VERSION]: libVersion(10_010_002), [Proc.NODE_GET_INFO]: nodeInfo });
    const lv = wrapper(b.path);
    await lv.ping();
    expect(loadedLibvirtVersion()).toBe('10.10.2');
    expect(await lv.libvirtVersion()).toBe('10.10.2');
    expect(b.callsOf(Proc.NODE_GET_INFO)).toHaveLength(1);
  });
});

describe('Libvirt lifecycle events', () => {
  /** A daemon that hands out callback ids 1, 2, … and remembers the socket of each registration. */
  async function eventDaemon(): Promise<{ f: FakeDaemon; regs: Call[] }> {
    const regs: Call[] = [];
    const f = await fake({
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY]: (c, d) => {
        regs.push(c);
        d.reply(c, bytes((x) => x.int(regs.length)));
      },
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY]: ok,
    });
    return { f, regs };
  }
  const send = (f: FakeDaemon, reg: Call, callbackId: number, event: number, detail: number) =>
    f.event(reg.socket, Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, bytes((x) => encodeLifecycleMsg(x, { callbackId, dom: vm, event, detail })));

  it('registers with the first listener and delivers events by name; the last listener out deregisters', async () => {
    const { f, regs } = await eventDaemon();
    const lv = wrapper(f.path);
    const got: LifecycleEvent[] = [];
    const off = lv.onLifecycle((e) => got.push(e));
    const off2 = lv.onLifecycle(() => {
      throw new Error('a bad listener'); // logged; the others still hear every event
    });
    await lv.eventsReady();
    expect(regs).toHaveLength(1);
    expect(new XdrReader(regs[0]!.payload).int()).toBe(0); // VIR_DOMAIN_EVENT_ID_LIFECYCLE, for every domain
    send(f, regs[0]!, 1, 2, 0);
    send(f, regs[0]!, 1, 5, 5);
    send(f, regs[0]!, 1, 42, 0); // an event type newer than this client: ignored
    send(f, regs[0]!, 1, 8, 0);
    await waitFor('3 events', () => got.length === 3);
    expect(got).toEqual([
      { name: 'vm', uuid: UUID, event: 'started', detail: 0 },
      { name: 'vm', uuid: UUID, event: 'stopped', detail: 5 },
      { name: 'vm', uuid: UUID, event: 'crashed', detail: 0 },
    ]);
    off2();
    off();
    await waitFor('deregister', () => f.callsOf(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY).length === 1);
    expect(new XdrReader(f.callsOf(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY)[0]!.payload).int()).toBe(1);
  });

  it('after the daemon drops the connection: reconnects by itself, registers again, then says onReconnect', async () => {
    const { f, regs } = await eventDaemon();
    const lv = wrapper(f.path);
    const got: LifecycleEvent[] = [];
    lv.onLifecycle((e) => got.push(e));
    const order: string[] = [];
    lv.onReconnect(() => order.push(`reconnect after ${regs.length} registrations`));
    await lv.eventsReady();
    expect(order).toEqual([]); // not for the first connection
    f.dropAll(); // libvirtd restarting; nobody calls libvirt meanwhile
    await waitFor('onReconnect', () => order.length === 1, { timeoutMs: 5000 });
    expect(order).toEqual(['reconnect after 2 registrations']);
    expect(f.connections).toBe(2);
    send(f, regs[1]!, 2, 5, 1);
    await waitFor('the event on the new connection', () => got.length === 1);
    expect(got[0]).toMatchObject({ event: 'stopped', detail: 1 });
  });

  it('a call that reconnects first also brings the registration back', async () => {
    const { f, regs } = await eventDaemon();
    f.calls.length = 0;
    const lv = wrapper(f.path);
    lv.onLifecycle(() => undefined);
    let reconnects = 0;
    lv.onReconnect(() => reconnects++);
    await lv.eventsReady();
    const lookups = () => f.callsOf(Proc.DOMAIN_LOOKUP_BY_NAME).length;
    f.dropAll();
    await rejection(lv.domainInfo('other')); // reconnects (not-found is the answer), before the retry timer fires
    expect(lookups()).toBe(1);
    await waitFor('second registration and onReconnect', () => regs.length === 2 && reconnects === 1);
    expect(new Set(regs.map((r) => r.socket)).size).toBe(2); // one per connection, none twice on one
  });

  it('eventsReady rejects while libvirtd is away, and retries until it is there', async () => {
    const regs: Call[] = [];
    const f = new FakeDaemon(dir, {
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY]: (c, d) => {
        regs.push(c);
        d.reply(c, bytes((x) => x.int(7)));
      },
    });
    const lv = wrapper(f.path);
    lv.onLifecycle(() => undefined);
    expect(await rejection(lv.eventsReady())).toMatchObject({ kind: 'connection', op: 'events' });
    await f.listen();
    fakes.push(f);
    await waitFor('registration once the daemon listens', () => regs.length === 1, { timeoutMs: 10_000 });
    await lv.eventsReady(); // in place now: no second registration
    expect(regs).toHaveLength(1);
  });
});
