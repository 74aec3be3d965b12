// How vmlet's QMP monitor tells a VM's ends apart (src/vm/qmp-watch.ts QmpEndState), message by
// message as QEMU sends them, and the socket's place beside the agent's. The real QEMU side:
// test/integration/qmp-watch.test.ts.
import { describe, expect, it } from 'vitest';
import { QmpEndState, monitorSocketPath } from '../../src/vm/qmp-watch.js';
import { agentSocketPath } from '../../src/vm/guest-agent.js';

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

describe('monitorSocketPath', () => {
  it("sits in the agent socket's directory, in the container dir or the fallback alike", () => {
    const short = '/var/lib/vmlet/pods/p/containers/c';
    expect(monitorSocketPath(short, 'c')).toBe(`${agentSocketPath(short, 'c').dir}/qmp.sock`);
    const long = `/var/lib/vmlet/pods/${'a'.repeat(64)}/containers/${'b'.repeat(64)}`;
    expect(agentSocketPath(long, 'b'.repeat(64)).fallback).toBe(true);
    expect(monitorSocketPath(long, 'b'.repeat(64))).toBe(`${agentSocketPath(long, 'b'.repeat(64)).dir}/qmp.sock`);
  });
});
