// The run's end-of-run report of crashed daemons, on kernel log lines as dmesg --time-format iso prints them.
import { describe, expect, it } from 'vitest';
import { crashesSince } from '../setup/daemon-crashes.js';

const LOG = [
  '2026-12-06T23:50:00,000001+00:00 libvirtd[1500]: segfault at 0 ip 0000 sp 0000 error 4 in libvirtd[29d6b,5619432ae000+3a000]',
  '2026-12-06T23:58:12,206664+00:00 libvirtd[1536]: segfault at 0 ip 00005619432b4d6b sp 00007fff960fc030 error 4 in libvirtd[29d6b,5619432ae000+3a000]',
  '2026-12-06T23:58:13,000000+00:00 traps: qemu-system-x86[4242] general protection fault ip:7f0 sp:7ff error:0 in libc.so.6',
  '2026-12-06T23:58:14,000000+00:00 node[99]: segfault at 10 ip 0 sp 0 error 4 in node',
  '2026-12-06T23:58:15,000000+00:00 vmfault0: port 6(veth1) entered disabled state',
  'not a stamped line libvirtd[1]: segfault',
].join('\n');

describe('crashesSince', () => {
  it('keeps the daemons’ crash lines stamped since the run began, nothing else', () => {
    const since = Date.parse('2026-12-06T23:55:00Z');
    expect(crashesSince(since, LOG).map((l) => l.slice(0, 26))).toEqual(['2026-12-06T23:58:12,206664', '2026-12-06T23:58:13,000000']);
  });

  it('says nothing when the kernel log cannot be read', () => {
    expect(crashesSince(0, '')).toEqual([]);
  });
});
