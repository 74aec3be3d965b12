// Mount points as /proc/self/mountinfo lists them (field 5), with space, tab, newline and
// backslash written there as octal escapes.
import { readFileSync } from 'node:fs';

export function mountPoints(info: string): string[] {
  return info
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Mount points at or below `path`, deepest first (read at once: a procfs read waits on no disk). */
export function mountsUnder(path: string): string[] {
  const points = mountPoints(readFileSync('/proc/self/mountinfo', 'utf8'));
  return points.filter((p) => p === path || p.startsWith(path + '/')).sort((a, b) => b.length - a.length);
}
