// Block devices for tests: a loop device over a sparse file (losetup), the nearest thing to a
// block PVC on one machine. Tests that need one skip with the reason when loop devices cannot be made.
import { execFileSync } from 'node:child_process';
import { existsSync, truncateSync, writeFileSync } from 'node:fs';

/** Why loop devices cannot be made here; undefined when they can. */
export function loopUnavailable(): string | undefined {
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control: this machine cannot make loop devices (a block volume needs one)';
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'losetup (util-linux) is not installed';
  }
  return undefined;
}

/** A loop device over a new sparse file of `bytes`; returns its path (/dev/loopN). */
export function makeLoop(file: string, bytes: number): string {
  writeFileSync(file, '');
  truncateSync(file, bytes);
  return execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
}

/** Detaches the loop device; already gone: no error. */
export function freeLoop(dev: string | undefined): void {
  if (dev) execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
}
