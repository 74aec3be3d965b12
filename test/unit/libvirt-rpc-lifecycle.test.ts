// The lifecycle half of the libvirt RPC client without libvirtd: the structs of the lifecycle
// calls and of the lifecycle event message against bytes written out by hand from
// remote_protocol.x, the procedure numbers, and each typed call's procedure, arguments and reply
// against a fake daemon, which also sends the event messages.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpcRejection as rejection } from '../helpers/errors.js';
import { FakeDaemon, type Call, type Handler } from '../helpers/fake-libvirtd.js';
import { waitFor } from '../helpers/wait.js';
import { XdrError, XdrReader, XdrWriter } from '../../src/vm/rpc/xdr.js';
import { encodeDomain, Proc, uuidFromString, uuidToString, type WireDomain } from '../../src/vm/rpc/protocol.js';
import {
  decodeDomainState,
  decodeLifecycleMsg,
  decodeListAllDomains,
  decodeNodeInfo,
  encodeDomainState,
  encodeEventRegisterArgs,
  encodeLifecycleMsg,
  encodeListAllDomains,
  encodeListAllDomainsArgs,
  encodeNodeInfo,
} from '../../src/vm/rpc/structs.js';
import { DomainState, EVENT_ID, LIFECYCLE_EVENTS, LIST_DOMAINS, LibvirtRpc, START, STOPPED_DETAIL, UNDEFINE, type RpcDomain, type RpcLifecycleEvent } from '../../src/vm/rpc/index.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const w = () => new XdrWriter(4);
const UUID = '8fed2cf1-1f9f-4766-8244-b8a8f1737e54';
const dom: RpcDomain = { name: 'vm', uuid: UUID, id: 3 };
const wireDom: WireDomain = { name: 'vm', uuid: uuidFromString(UUID), id: 3 };
/** remote_nonnull_domain "vm", UUID, id 3, by hand. */
const DOM_HEX = '00000002' + '766d0000' + UUID.replace(/-/g, '') + '00000003';
const word = (n: number) => (n >>> 0).toString(16).padStart(8, '0');

describe('procedure numbers (remote_protocol.x)', () => {
  it('has libvirt’s numbers for the lifecycle calls and events', () => {
    expect(Proc).toMatchObject({
      NODE_GET_INFO: 6,
      DOMAIN_DEFINE_XML: 11,
      DOMAIN_DESTROY: 12,
      DOMAIN_GET_XML_DESC: 14,
      DOMAIN_GET_INFO: 16,
      DOMAIN_LOOKUP_BY_NAME: 23,
      DOMAIN_RESUME: 28,
      DOMAIN_SHUTDOWN: 33,
      CONNECT_GET_HOSTNAME: 59,
      CONNECT_GET_LIB_VERSION: 157,
      DOMAIN_CREATE_WITH_FLAGS: 196,
      DOMAIN_GET_STATE: 212,
      DOMAIN_UNDEFINE_FLAGS: 231,
      CONNECT_LIST_ALL_DOMAINS: 273,
      CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
      CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
      DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
    });
  });

  it('has libvirt’s enum values (libvirt-domain.h)', () => {
    expect(DomainState.RUNNING).toBe(1);
    expect(DomainState.SHUTOFF).toBe(5);
    expect(DomainState.PMSUSPENDED).toBe(7);
    expect(DomainState[6]).toBe('CRASHED'); // the reverse mapping callers print
    expect(LIFECYCLE_EVENTS.indexOf('stopped')).toBe(5);
    expect(LIFECYCLE_EVENTS.indexOf('crashed')).toBe(8);
    expect(STOPPED_DETAIL.FAILED).toBe(5);
    expect(START.PAUSED).toBe(1);
    expect(UNDEFINE).toMatchObject({ MANAGED_SAVE: 1, SNAPSHOTS_METADATA: 2, NVRAM: 4, KEEP_NVRAM: 8, CHECKPOINTS_METADATA: 16 });
    expect(LIST_DOMAINS.ACTIVE | LIST_DOMAINS.INACTIVE).toBe(3);
    expect(EVENT_ID.LIFECYCLE).toBe(0);
  });
});

describe('lifecycle structs', () => {
  it('remote_node_get_info_ret: char model[32] takes a word per char', () => {
    const info = { model: 'x86_64', memoryKiB: 16_384_000, cpus: 2, mhz: 2400, nodes: 1, sockets: 1, cores: 2, threads: 1 };
    const x = w();
    encodeNodeInfo(x, info);
    const model = ['78', '38', '36', '5f', '36', '34'].map((c) => '000000' + c).join('') + '00000000'.repeat(26);
    expect(hex(x.bytes())).toBe(model + '0000000000fa0000' + '00000002' + '00000960' + '00000001' + '00000001' + '00000002' + '00000001');
    expect(x.length).toBe(32 * 4 + 8 + 6 * 4);
    const r = new XdrReader(x.bytes());
    expect(decodeNodeInfo(r)).toEqual(info);
    r.end();
    // libvirt's char is signed: a byte past 127 arrives as a negative int.
    const odd = Buffer.from('ffffffff' + 'ffffffe9' + '00000000'.repeat(30) + '00'.repeat(8) + '00000000'.repeat(6), 'hex');
    expect(decodeNodeInfo(new XdrReader(odd)).model).toBe('\u00ff\u00e9');
  });

  it('remote_domain_get_state_ret: state, reason', () => {
    const x = w();
    encodeDomainState(x, { state: 5, reason: 2 });
    expect(hex(x.bytes())).toBe('00000005' + '00000002');
    expect(decodeDomainState(new XdrReader(x.bytes()))).toEqual({ state: 5, reason: 2 });
  });

  it('remote_connect_list_all_domains: need_results 1 and the flags; the domains, then their count', () => {
    const a = w();
    encodeListAllDomainsArgs(a, 3);
    expect(hex(a.bytes())).toBe('00000001' + '00000003');
    const x = w();
    encodeListAllDomains(x, [wireDom]);
    expect(hex(x.bytes())).toBe('00000001' + DOM_HEX + '00000001');
    const got = decodeListAllDomains(new XdrReader(x.bytes()));
    expect(got.map((d) => ({ ...d, uuid: uuidToString(d.uuid) }))).toEqual([dom]);
    expect(() => decodeListAllDomains(new XdrReader(Buffer.from('00000001' + DOM_HEX + '00000002', 'hex')))).toThrow(XdrError);
  });

  it('remote_connect_domain_event_callback_register_any_args: eventID, then an optional domain', () => {
    const all = w();
    encodeEventRegisterArgs(all, EVENT_ID.LIFECYCLE, null);
    expect(hex(all.bytes())).toBe('00000000' + '00000000');
    const one = w();
    encodeEventRegisterArgs(one, EVENT_ID.LIFECYCLE, wireDom);
    expect(hex(one.bytes())).toBe('00000000' + '00000001' + DOM_HEX);
  });

  it('remote_domain_event_callback_lifecycle_msg: callbackID, domain, event, detail', () => {
    const bytes = Buffer.from(word(7) + DOM_HEX + word(5) + word(STOPPED_DETAIL.FAILED), 'hex');
    const r = new XdrReader(bytes);
    const m = decodeLifecycleMsg(r);
    r.end();
    expect({ ...m, dom: { ...m.dom, uuid: uuidToString(m.dom.uuid) } }).toEqual({ callbackId: 7, dom, event: 5, detail: 5 });
    const x = w();
    encodeLifecycleMsg(x, m);
    expect(hex(x.bytes())).toBe(hex(bytes));
  });
});

// ------------------------------------------------------------------- against a fake daemon

const dir = mkdtempSync(join(tmpdir(), 'vmlet-rpc-life-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fakes: FakeDaemon[] = [];
const clients: LibvirtRpc[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function fake(handlers: Partial<Record<number, Handler>>): Promise<FakeDaemon> {
  const f = await new FakeDaemon(dir, handlers).listen();
  fakes.push(f);
  return f;
}

function client(f: FakeDaemon): LibvirtRpc {
  const c = new LibvirtRpc({ uri: `qemu:///system?socket=${f.path}` });
  clients.push(c);
  return c;
}

const domReply = (d: WireDomain) => {
  const x = new XdrWriter();
  encodeDomain(x, d);
  return x.bytes();
};
const lastArgs = (f: FakeDaemon, proc: number) => hex(f.callsOf(proc).at(-1)!.payload);
const ok = (c: Call, d: FakeDaemon) => d.reply(c);

describe('lifecycle calls against a fake daemon', () => {
  it('define, create, shutdown, destroy, undefine: each its procedure with its arguments', async () => {
    const f = await fake({
      [Proc.DOMAIN_DEFINE_XML]: (c, d) => d.reply(c, domReply({ ...wireDom, id: -1 })),
      [Proc.DOMAIN_CREATE_WITH_FLAGS]: (c, d) => d.reply(c, domReply({ ...wireDom, id: 9 })),
      [Proc.DOMAIN_SHUTDOWN]: ok,
      [Proc.DOMAIN_RESUME]: ok,
      [Proc.DOMAIN_DESTROY]: ok,
      [Proc.DOMAIN_UNDEFINE_FLAGS]: ok,
    });
    const c = client(f);
    expect(await c.defineXML('<domain/>')).toEqual({ ...dom, id: -1 });
    expect(lastArgs(f, Proc.DOMAIN_DEFINE_XML)).toBe('00000009' + hex(Buffer.from('<domain/>')) + '000000');
    expect(await c.createDomain(dom)).toEqual({ ...dom, id: 9 }); // the new id, in the same round trip
    expect(lastArgs(f, Proc.DOMAIN_CREATE_WITH_FLAGS)).toBe(DOM_HEX + '00000000');
    await c.createDomain(dom, START.PAUSED);
    expect(lastArgs(f, Proc.DOMAIN_CREATE_WITH_FLAGS)).toBe(DOM_HEX + '00000001');
    await c.resumeDomain(dom);
    expect(lastArgs(f, Proc.DOMAIN_RESUME)).toBe(DOM_HEX);
    await c.shutdownDomain(dom);
    expect(lastArgs(f, Proc.DOMAIN_SHUTDOWN)).toBe(DOM_HEX);
    await c.destroyDomain(dom);
    expect(lastArgs(f, Proc.DOMAIN_DESTROY)).toBe(DOM_HEX);
    await c.undefineDomain(dom, UNDEFINE.KEEP_NVRAM | UNDEFINE.MANAGED_SAVE);
    expect(lastArgs(f, Proc.DOMAIN_UNDEFINE_FLAGS)).toBe(DOM_HEX + '00000009');
  });

  it('getXMLDesc, getState, listAllDomains, nodeGetInfo, hostname decode their replies', async () => {
    const f = await fake({
      [Proc.DOMAIN_GET_XML_DESC]: (c, d) => d.reply(c, new XdrWriter().string('<domain>vm</domain>').bytes()),
      [Proc.DOMAIN_GET_STATE]: (c, d) => d.reply(c, new XdrWriter().int(1).int(1).bytes()),
      [Proc.CONNECT_LIST_ALL_DOMAINS]: (c, d) => {
        const x = new XdrWriter();
        encodeListAllDomains(x, [wireDom, { name: 'off', uuid: Buffer.alloc(16, 0xab), id: -1 }]);
        d.reply(c, x.bytes());
      },
      [Proc.NODE_GET_INFO]: (c, d) => {
        const x = new XdrWriter();
        encodeNodeInfo(x, { model: 'x86_64', memoryKiB: 1024, cpus: 2, mhz: 1, nodes: 1, sockets: 1, cores: 2, threads: 1 });
        d.reply(c, x.bytes());
      },
      [Proc.CONNECT_GET_HOSTNAME]: (c, d) => d.reply(c, new XdrWriter().string('node-1').bytes()),
    });
    const c = client(f);
    expect(await c.getXMLDesc(dom)).toBe('<domain>vm</domain>');
    expect(lastArgs(f, Proc.DOMAIN_GET_XML_DESC)).toBe(DOM_HEX + '00000000');
    expect(await c.getState(dom)).toEqual({ state: DomainState.RUNNING, reason: 1 });
    expect(lastArgs(f, Proc.DOMAIN_GET_STATE)).toBe(DOM_HEX + '00000000');
    expect(await c.listAllDomains(LIST_DOMAINS.ACTIVE | LIST_DOMAINS.INACTIVE)).toEqual([dom, { name: 'off', uuid: 'abababab-abab-abab-abab-abababababab', id: -1 }]);
    expect(lastArgs(f, Proc.CONNECT_LIST_ALL_DOMAINS)).toBe('00000001' + '00000003');
    expect((await c.nodeGetInfo()).cpus).toBe(2);
    expect(await c.hostname()).toBe('node-1');
    expect(f.callsOf(Proc.NODE_GET_INFO)[0]!.payload.length).toBe(0); // no arguments
  });

  it('registers for lifecycle events and decodes the messages the daemon sends', async () => {
    let sock: Call['socket'] | undefined;
    const f = await fake({
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY]: (c, d) => {
        sock = c.socket;
        d.reply(c, new XdrWriter().int(41).bytes());
      },
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY]: ok,
    });
    const c = client(f);
    const got: RpcLifecycleEvent[] = [];
    c.onLifecycleEvent((e) => got.push(e));
    const errors: unknown[] = [];
    c.onEventError((err) => errors.push(err));
    const reg = await c.registerDomainEvent(EVENT_ID.LIFECYCLE);
    expect(reg).toEqual({ callbackId: 41, generation: 1 });
    expect(lastArgs(f, Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY)).toBe('00000000' + '00000000');
    const msg = (event: number, detail: number) => {
      const x = new XdrWriter();
      encodeLifecycleMsg(x, { callbackId: 41, dom: wireDom, event, detail });
      return x.bytes();
    };
    f.event(sock!, Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, msg(2, 0));
    f.event(sock!, Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, Buffer.alloc(6)); // does not decode: reported, dropped
    f.event(sock!, Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, msg(5, STOPPED_DETAIL.FAILED));
    f.event(sock!, 331, Buffer.alloc(8)); // an event kind nobody asked for: ignored
    await waitFor('two lifecycle events', () => got.length === 2);
    expect(got).toEqual([
      { callbackId: 41, dom, event: 2, detail: 0 },
      { callbackId: 41, dom, event: 5, detail: 5 },
    ]);
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/truncated/);
    // The connection still serves calls after all of that.
    await c.deregisterDomainEvent(41);
    expect(lastArgs(f, Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY)).toBe(word(41));
  });

  it('close() waits for event (de)registrations in flight before CONNECT_CLOSE (libvirtd 9.0 crashes on a close beside one)', async () => {
    // The order the daemon sees, as each call arrives and as each reply leaves.
    const seen: string[] = [];
    const held: Array<() => void> = [];
    const hold = (name: string, reply: (c: Call, d: FakeDaemon) => void) => (c: Call, d: FakeDaemon) => {
      seen.push(`${name} in`);
      held.push(() => {
        seen.push(`${name} out`);
        reply(c, d);
      });
    };
    const f = await fake({
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY]: hold('register', (c, d) => d.reply(c, new XdrWriter().int(7).bytes())),
      [Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY]: hold('deregister', ok),
      [Proc.CONNECT_CLOSE]: (c, d) => {
        seen.push('close in');
        d.reply(c);
      },
    });
    const c = new LibvirtRpc({ uri: `qemu:///system?socket=${f.path}` });
    await c.connect();
    // Both asked for, then close() at once, in the same tick: as an unsubscribe just before a shutdown does.
    const reg = c.registerDomainEvent(EVENT_ID.LIFECYCLE, dom);
    const dereg = c.deregisterDomainEvent(5);
    const closed = c.close();
    await waitFor('both calls at the daemon', () => held.length === 2);
    held.shift()!();
    await reg;
    // One still has no answer: no close yet, for as long as it takes.
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(['register in', 'deregister in', 'register out']);
    held.shift()!();
    await dereg;
    await closed;
    expect(seen).toEqual(['register in', 'deregister in', 'register out', 'deregister out', 'close in']);
    // Other calls are not waited for: a close with no registration in flight goes out at once.
    const g = await fake({});
    const quick = new LibvirtRpc({ uri: `qemu:///system?socket=${g.path}` });
    await quick.connect();
    await quick.close();
    expect(g.callsOf(Proc.CONNECT_CLOSE)).toHaveLength(1);
  });

  it('refuses a bad UUID or flags before sending, and maps libvirt’s errors by code', async () => {
    const f = await fake({ [Proc.DOMAIN_CREATE_WITH_FLAGS]: (c, d) => d.fail(c, 55, 'Requested operation is not valid: domain is already running') });
    const c = client(f);
    expect((await rejection(c.destroyDomain({ ...dom, uuid: 'x' }))).kind).toBe('invalid');
    expect((await rejection(c.listAllDomains(2 ** 32))).kind).toBe('invalid');
    expect(f.connections).toBe(0);
    const err = await rejection(c.createDomain(dom));
    expect(err).toMatchObject({ code: 55, kind: 'invalid', op: 'createDomain' });
  });

});
