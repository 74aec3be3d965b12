// Benchmark (not a test): boots the project's kernel-boot test guest through libvirt N times and
// prints define → ready-marker latency (median, p90) and QEMU's memory split into guest RAM,
// TCG translation cache and QEMU's own use (the basis of the RuntimeClass podFixed overhead).
//   npx tsx bench/guest-boot.ts [N=5] [memoryMiB=256]
// BENCH_KERNEL=FILE boots another kernel with the same initrd (e.g. the test guest's vmlinuz, its
// bzImage, against the default vmlinux, its ELF booted through PVH).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { kernelGuest, kernelGuestXml, READY_MARKER } from '../test/helpers/guest.js';
import { bootToMarker } from './boot-domain.js';
import { mib, split } from './qemu-memory.js';

const runs = Number(process.argv[2] ?? 5);
const memoryMiB = Number(process.argv[3] ?? 256);

interface MemSplit {
  rssMiB: number;
  guestRamMiB: number;
  tcgCacheMiB: number;
  /** QEMU's own anonymous memory: what each extra VM costs beyond its guest RAM. */
  qemuAnonMiB: number;
  /** Binary and shared libraries: page cache, shared by every QEMU on the node. */
  fileMiB: number;
}

/** QEMU's RSS split by mapping (bench/qemu-memory.ts), in MiB. */
function qemuMemory(pid: number, guestMiB: number): MemSplit {
  const q = split(pid, guestMiB);
  return { rssMiB: mib(q.rss), guestRamMiB: mib(q.guestRam), tcgCacheMiB: mib(q.tcg), qemuAnonMiB: mib(q.anon), fileMiB: mib(q.file) };
}

/** CPU time (ms) QEMU used so far: utime + stime from /proc/<pid>/stat. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks are 100 Hz on Linux
}

/** Millicores an idle guest's QEMU burns, over a window after the ready marker. */
async function idleMillicores(pid: number, windowMs = 2000): Promise<number> {
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  return Math.round(((cpuMs(pid) - c0) / (performance.now() - t0)) * 1000);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
  const accel = decideAccel('auto', probeHost());
  const guest = { ...kernelGuest(), ...(process.env.BENCH_KERNEL ? { kernel: process.env.BENCH_KERNEL } : {}) };
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-'));
  const times: number[] = [];
  const mems: MemSplit[] = [];
  const idle: number[] = [];
  for (let i = 0; i < runs; i++) {
    const name = `vmlet-bench-${randomBytes(4).toString('hex')}`;
    const log = join(dir, `${name}.log`);
    const t = await bootToMarker(lv, {
      name,
      xml: kernelGuestXml({ name, guest, domainType: accel.domainType, consoleLog: log, memoryMiB }),
      consoleLog: log,
      running: async () => {
        const pid = Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
        mems.push(qemuMemory(pid, memoryMiB));
        idle.push(await idleMillicores(pid));
      },
    });
    times.push(t.markerMs);
  }
  await lv.close();
  rmSync(dir, { recursive: true, force: true }); // the console logs
  const sorted = [...times].sort((a, b) => a - b);
  const s = (ms: number) => (ms / 1000).toFixed(2);
  console.log(`guest boot through libvirt, ${accel.accel}, ${memoryMiB} MiB guest, ${runs} runs (define → ${READY_MARKER})`);
  console.log(`  each:   ${times.map(s).join(' ')} s`);
  console.log(`  median: ${s(pct(sorted, 50))} s   p90: ${s(pct(sorted, 90))} s`);
  const avg = (k: keyof MemSplit) => (mems.reduce((a, m) => a + m[k], 0) / mems.length).toFixed(1);
  console.log(`QEMU CPU with the guest idle after ready: ${idle.join(' ')} millicores`);
  console.log(`QEMU memory at ready (mean): RSS ${avg('rssMiB')} MiB = guest RAM touched ${avg('guestRamMiB')} + TCG code cache ${avg('tcgCacheMiB')} + QEMU anon ${avg('qemuAnonMiB')} + binary/libs ${avg('fileMiB')} MiB`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
