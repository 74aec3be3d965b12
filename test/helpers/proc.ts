// A process as /proc shows it, for tests that watch daemons come and go.
import { readFileSync } from 'node:fs';

/** The name (comm) of process `pid` if it is alive and not a zombie; undefined otherwise. */
export function liveComm(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] === 'Z' ? undefined : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  } catch {
    return undefined;
  }
}

/** Process `pid` is alive and not a zombie. */
export const alive = (pid: number): boolean => liveComm(pid) !== undefined;
