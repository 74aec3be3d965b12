// QEMU's memory, read from /proc/<pid>/smaps and split by mapping, for the benchmarks that say
// what a VM costs the node beyond its guest's RAM (pod-overhead.ts, density.ts, guest-boot.ts,
// sandboxed-pod.ts).
import { readFileSync } from 'node:fs';

/** KiB → MiB with one decimal. */
export const mib = (kib: number) => Math.round(kib / 102.4) / 10;

/** KiB each; `kernel` (the guest kernel file QEMU mapped to load it) is a part of `file`. */
export interface Split {
  rss: number;
  guestRam: number;
  tcg: number;
  anon: number;
  file: number;
  kernel: number;
  /** The kernel mapping's private dirty part: the rest of it is page cache, shared by every QEMU. */
  kernelDirty: number;
}

type Kind = 'guestRam' | 'tcg' | 'anon' | 'file';

/**
 * The guest's RAM is the one mapping of about its size: anonymous (memory-backend-ram) or a
 * memfd (memory-backend-memfd, which virtiofs needs). TCG's code cache is executable and
 * anonymous, or a `tcg-jit` memfd where QEMU maps it twice (split W^X). Other memfds are QEMU's
 * own memory; mappings of real files are its binary, libraries and the guest's kernel.
 */
function kindOf(perms: string, inode: string, path: string, sizeKiB: number, guestKiB: number): Kind {
  const anon = inode === '0' || path.startsWith('/memfd:');
  if ((inode === '0' && perms.includes('x') && perms.includes('w')) || path.startsWith('/memfd:tcg-jit')) return 'tcg';
  if (anon && !perms.includes('x') && sizeKiB >= guestKiB && sizeKiB <= guestKiB + 4096) return 'guestRam';
  return anon ? 'anon' : 'file';
}

export function split(pid: number, guestMiB: number): Split {
  const s: Split = { rss: 0, guestRam: 0, tcg: 0, anon: 0, file: 0, kernel: 0, kernelDirty: 0 };
  let perms = '', inode = '0', path = '', size = 0, isKernel = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s*(.*)$/.exec(line);
    if (head) {
      [perms, inode, path] = [head[1]!, head[2]!, head[3]!];
      isKernel = path.endsWith('/vmlinux') || /\/kernels\/[0-9a-f]+\/kernel$/.test(path);
      continue;
    }
    const f = /^(\w+):\s+(\d+) kB/.exec(line);
    if (!f) continue;
    const kib = Number(f[2]);
    if (f[1] === 'Size') size = kib;
    else if (f[1] === 'Rss') {
      s.rss += kib;
      s[kindOf(perms, inode, path, size, guestMiB * 1024)] += kib;
      if (isKernel) s.kernel += kib;
    } else if (f[1] === 'Private_Dirty' && isKernel) s.kernelDirty += kib;
  }
  return s;
}

export const show = (s: Split) => `RSS ${mib(s.rss)} = guest RAM ${mib(s.guestRam)} + TCG cache ${mib(s.tcg)} + QEMU anon ${mib(s.anon)} + binary/libs ${mib(s.file)} MiB; beyond guest RAM ${mib(s.rss - s.guestRam)} MiB`;
