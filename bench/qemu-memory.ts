// QEMU's memory, read from /proc/<pid>/smaps and split by mapping, for the benchmarks that say
// what a VM costs the node beyond its guest's RAM (pod-overhead.ts, density.ts).
import { readFileSync } from 'node:fs';

/** KiB → MiB with one decimal. */
export const mib = (kib: number) => Math.round(kib / 102.4) / 10;

export interface Split {
  rss: number;
  guestRam: number;
  tcg: number;
  anon: number;
  file: number;
}

/** QEMU's RSS by mapping: guest RAM (the anonymous mapping of the guest's size), the TCG code cache (the rwx one), binary and libraries, the rest (QEMU's own). KiB. */
export function split(pid: number, guestMiB: number): Split {
  let rss = 0, guestRam = 0, tcg = 0, file = 0, size = 0, perms = '', inode = '0';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+\s+(\S+)\s+\S+\s+\S+\s+(\d+)/.exec(line);
    if (head) {
      [perms, inode] = [head[1]!, head[2]!];
      continue;
    }
    const s = /^Size:\s+(\d+) kB/.exec(line);
    if (s) size = Number(s[1]);
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (!r) continue;
    const kib = Number(r[1]);
    rss += kib;
    const anon = inode === '0';
    if (anon && size >= guestMiB * 1024 && size <= guestMiB * 1024 + 4096 && !perms.includes('x')) guestRam += kib;
    else if (anon && perms.startsWith('rwx')) tcg += kib;
    else if (!anon) file += kib;
  }
  return { rss, guestRam, tcg, anon: rss - guestRam - tcg - file, file };
}

export const show = (s: Split) => `RSS ${mib(s.rss)} = guest RAM ${mib(s.guestRam)} + TCG cache ${mib(s.tcg)} + QEMU anon ${mib(s.anon)} + binary/libs ${mib(s.file)} MiB; beyond guest RAM ${mib(s.rss - s.guestRam)} MiB`;
