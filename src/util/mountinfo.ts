// Mount points as /proc/self/mountinfo lists them (field 5), with space, tab, newline and
// backslash written there as octal escapes.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export function mountPoints(info: string): string[] {
  return info
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

const under = (points: string[], path: string) => points.filter((p) => p === path || p.startsWith(path + '/')).sort((a, b) => b.length - a.length);

/** Mount points at or below `path`, deepest first. */
export async function mountsUnder(path: string): Promise<string[]> {
  return under(mountPoints(await readFile('/proc/self/mountinfo', 'utf8')), path);
}

/** mountsUnder, read at once (a procfs read: no disk is waited on). */
export function mountsUnderSync(path: string): string[] {
  return under(mountPoints(readFileSync('/proc/self/mountinfo', 'utf8')), path);
}
