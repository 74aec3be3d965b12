// How vmlet's QMP monitor tells a VM's ends apart (src/vm/qmp-watch.ts QmpEndState), message by
// message as QEMU sends them; the socket's place beside the agent's; and a QEMU that misbehaves
// (a stand-in server: no answer, an endless line). The real QEMU side:
// test/integration/qmp-watch.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { MAX_LINE_BYTES, QmpEndState, QmpWatch, monitorSocketBeside, type QmpEnd } from '../../src/vm/qmp-watch.js';
import { agentSocketPath } from '../../src/vm/guest-agent.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } };
const NEGOTIATED = { return: {} };
const shutdown = (guest: boolean, reason: string) => ({ event: 'SHUTDOWN', data: { guest, reason }, timestamp: { seconds: 1, microseconds: 0 } });

function after(...msgs: unknown[]) {
  const s = new QmpEndState();
  for (const m of msgs) s.push(m);
  return s.end();
}

describe('QmpEndState', () => {
  it("a close with no SHUTDOWN before it is 'crashed' (QEMU killed or died), as libvirt says", () => {
    expect(after(GREETING, NEGOTIATED)).toBe('crashed');
    expect(after(GREETING, NEGOTIATED, { event: 'NIC_RX_FILTER_CHANGED', data: { name: 'net0' } })).toBe('crashed');
  });

  it("a guest's poweroff is 'shutdown', even with libvirt's SIGTERM after it (-no-shutdown)", () => {
    expect(after(GREETING, NEGOTIATED, shutdown(true, 'guest-shutdown'))).toBe('shutdown');
    expect(after(GREETING, NEGOTIATED, shutdown(true, 'guest-shutdown'), shutdown(false, 'host-signal'))).toBe('shutdown');
  });

  it('a host-side stop alone (a SIGTERM, libvirt\'s destroy) is left to libvirt', () => {
    expect(after(GREETING, NEGOTIATED, shutdown(false, 'host-signal'))).toBeUndefined();
    expect(after(GREETING, NEGOTIATED, shutdown(false, 'host-qmp-quit'))).toBeUndefined();
  });

  it('a reset (a guest reboot in place) forgets the shutdowns before it', () => {
    expect(after(GREETING, NEGOTIATED, shutdown(true, 'guest-reset'), { event: 'RESET', data: { guest: true, reason: 'guest-reset' } })).toBe('crashed');
  });

  it('before the negotiation answered nothing is known (QEMU sends no events yet): libvirt says', () => {
    expect(after()).toBeUndefined();
    expect(after(GREETING)).toBeUndefined();
    expect(after(GREETING, shutdown(true, 'guest-shutdown'))).toBeUndefined();
  });

  it('ignores what is not a message', () => {
    expect(after(GREETING, NEGOTIATED, null, 42, 'SHUTDOWN', { event: 'SHUTDOWN' })).toBeUndefined(); // a SHUTDOWN without data counts as host-side
    expect(after(GREETING, NEGOTIATED, null, 42, 'x')).toBe('crashed');
  });
});

describe('monitorSocketBeside', () => {
  it("sits in the agent socket's directory, in the container dir or the fallback alike", () => {
    const short = '/var/lib/vmlet/pods/p/containers/c';
    expect(monitorSocketBeside(agentSocketPath(short, 'c').path)).toBe(`${agentSocketPath(short, 'c').dir}/qmp.sock`);
    const long = `/var/lib/vmlet/pods/${'a'.repeat(64)}/containers/${'b'.repeat(64)}`;
    expect(agentSocketPath(long, 'b'.repeat(64)).fallback).toBe(true);
    expect(monitorSocketBeside(agentSocketPath(long, 'b'.repeat(64)).path)).toBe(`${agentSocketPath(long, 'b'.repeat(64)).dir}/qmp.sock`);
  });

  it("is the pod VM's agent socket's directory", () => {
    expect(monitorSocketBeside('/run/vmlet/qga/abc/qga.sock')).toBe('/run/vmlet/qga/abc/qmp.sock');
  });
});

describe('QmpWatch against a QEMU that misbehaves', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });
  const serve = async (onConn: (s: Socket) => void) => {
    const path = join(tempDir('vmlet-qmpw-'), 'qmp.sock');
    const srv = createServer(onConn);
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(path, r));
    return path;
  };
  const log = pino({ level: 'silent' });

  it('gives up on a QEMU that never answers the negotiation, closes, and reports no end', async () => {
    let peerClosed = false;
    const path = await serve((s) => s.on('close', () => (peerClosed = true)).resume());
    const ends: QmpEnd[] = [];
    const w = new QmpWatch(path, { log, connectTimeoutMs: 100, onEnd: (e) => ends.push(e) });
    expect(await w.connect()).toBe(false);
    await waitFor('the connection closed', () => peerClosed, { timeoutMs: 5_000, intervalMs: 5 });
    expect(ends).toEqual([]);
  });

  it('drops a line longer than it keeps without taking it for an end', async () => {
    let peerClosed = false;
    const path = await serve((s) => {
      s.on('close', () => (peerClosed = true)).resume();
      s.write('{"QMP": {}}\n{"return": {}}\n');
      s.write('{"event": "NIC_RX_FILTER_CHANGED", "data": {"name": "' + 'x'.repeat(MAX_LINE_BYTES + 1));
    });
    const ends: QmpEnd[] = [];
    let drops = 0;
    const w = new QmpWatch(path, { log, onEnd: (e) => ends.push(e), onDrop: () => drops++ });
    expect(await w.connect()).toBe(true);
    await waitFor('the connection dropped', () => peerClosed, { timeoutMs: 5_000, intervalMs: 5 });
    expect(ends).toEqual([]);
    expect(drops).toBe(1);
  });
});
