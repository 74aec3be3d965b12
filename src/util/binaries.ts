// Locates the host programs vmlet depends on, and asks QEMU its version once.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';

const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** First executable named `name` on PATH or in the usual system dirs. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  return findExecutable(name, [...path.split(delimiter).filter(Boolean), ...SYSTEM_PATH]);
}

/** First executable named `name` in `dirs`, in order. */
export function findExecutable(name: string, dirs: readonly string[]): string | undefined {
  for (const dir of dirs) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export const QEMU_SYSTEM = 'qemu-system-x86_64';
export const QEMU_IMG = 'qemu-img';

/** "QEMU emulator version 7.2.19 (Debian …)" → "7.2.19"; undefined when the binary is missing or fails. */
export async function programVersion(bin: string): Promise<string | undefined> {
  try {
    const { stdout } = await execa(bin, ['--version'], { timeout: 5000 });
    // "QEMU emulator version 7.2.19 (…)", "Dnsmasq version 2.89 …", "nsenter from util-linux 2.38.1",
    // "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***"
    return (/version\s+([0-9][^\s,]*)/i.exec(stdout) ?? /\bv?(\d+\.\d+[^\s,()]*)/.exec(stdout))?.[1];
  } catch {
    return undefined;
  }
}
