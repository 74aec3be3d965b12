// After the whole run: the kernel's lines about libvirtd, virtlogd or QEMU crashing (segfaults,
// traps) since the run began, printed as a warning. A libvirtd that crashes mid-run shows up only
// as ECONNREFUSED in whichever tests came next; this names the cause (it did once, in CI).
import { spawnSync } from 'node:child_process';

const DAEMONS = /\b(libvirtd|virtlogd|qemu-system-\w+|virtqemud)\[\d+\]/;
// Each project (main, faults) loads this module afresh and runs its setup and teardown: state on
// the process, so that the first start counts and one report is printed.
const run = ((globalThis as { vmletDaemonCrashes?: { startedAt: number; reported: boolean } }).vmletDaemonCrashes ??= { startedAt: 0, reported: false });

export function setup(): void {
  run.startedAt ||= Date.now();
}

/** The kernel log's crash lines of `DAEMONS` stamped at or after `since` (ms); [] when dmesg cannot be read. */
export function crashesSince(since: number, log = readKernelLog()): string[] {
  return log
    .split('\n')
    .filter((l) => DAEMONS.test(l) && /segfault|trap|general protection/.test(l))
    .filter((l) => {
      const stamp = Date.parse(l.slice(0, l.indexOf(' ')).replace(',', '.'));
      return Number.isFinite(stamp) && stamp >= since;
    });
}

function readKernelLog(): string {
  const r = spawnSync('dmesg', ['--time-format', 'iso'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

export function teardown(): void {
  if (run.reported) return;
  run.reported = true;
  const lines = crashesSince(run.startedAt);
  if (lines.length) console.warn(`daemons crashed on this host during this run (kernel log, which a shared host shares):\n  ${lines.join('\n  ')}`);
}
