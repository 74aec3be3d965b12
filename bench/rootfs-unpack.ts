// Benchmark (not a test): unpacking an image's layers into the rootfs tree a sandboxed pod's
// first container waits for (src/image/rootfs.ts), on vmlet's main thread against the unpack's
// worker thread (rootfs-client.ts), and into one EROFS image in the worker (rootfs-erofs.ts, config
// imageRootfs' default), with GNU tar on the same layers as the reference.
//   npx tsx bench/rootfs-unpack.ts [--runs N=2]
// The layers are gzip -1 tars of this node's own files (node-file-layers.ts). Printed per run:
// wall time, CPU of this process (user/sys: the worker and the thread pool count too), and the
// main thread's event-loop delay while the unpack ran (what a CRI call arriving meanwhile waits
// at least: monitorEventLoopDelay, 1 ms resolution). Trees go under /var/lib (the image store's
// filesystem) and stay until the end: ext4 makes each file much slower to create for minutes
// after many inodes were freed (recently_deleted in perf), so a run after another's removal
// would pay for it (sys time 5x).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { unpackRootfs } from '../src/image/rootfs.js';
import { unpackRootfsOffThread } from '../src/image/rootfs-client.js';
import type { ScanLimits } from '../src/image/layer-tar.js';
import { tempDir } from '../test/helpers/vmlet.js';
import { nodeFileLayers } from './node-file-layers.js';

const args = process.argv.slice(2);
const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 2;
const LIMITS: ScanLimits = { maxEntryBytes: 2 ** 40, maxImageBytes: 2 ** 40, writableBytes: 2 ** 40 };

const work = tempDir('vmlet-bench-unpack-');
const layers = nodeFileLayers(work);
const files = layers.reduce((a, l) => a + l.entries, 0);
const mb = (n: number) => (n / 1e6).toFixed(0);
const compressed = layers.reduce((a, l) => a + l.size, 0);
console.log(`rootfs unpack benchmark: ${layers.length} gzip layers, ${mb(compressed)} MB compressed, ${files} entries`);

interface Row {
  how: string;
  ms: number;
  user: number;
  sys: number;
  p50?: number;
  p99?: number;
  max?: number;
}
const rows: Row[] = [];
const bases: string[] = [];
const newBase = () => {
  bases.push(mkdtempSync('/var/lib/vmlet-bench-unpack-'));
  return bases.at(-1)!;
};

async function timed(how: string, unpack: (dest: string, tmp: string) => Promise<void>): Promise<void> {
  const base = newBase();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const cpu = process.cpuUsage();
  const t = performance.now();
  await unpack(join(base, 'tree'), base);
  const ms = performance.now() - t;
  const used = process.cpuUsage(cpu);
  delay.disable();
  const d = (q: number) => delay.percentile(q) / 1e6;
  rows.push({ how, ms, user: used.user / 1e3, sys: used.system / 1e3, p50: d(50), p99: d(99), max: delay.max / 1e6 });
}

/** GNU tar on the same layers, in order (user/sys from /usr/bin/time: tar and its gzip). */
function gnuTar(): void {
  const base = newBase();
  const t = performance.now();
  const script = layers.map((l) => `tar -C ${base} -xzf ${l.path}`).join(' && ');
  const timed = existsSync('/usr/bin/time');
  const r = timed ? spawnSync('/usr/bin/time', ['-f', 'TIMES %U %S', 'bash', '-c', script], { encoding: 'utf8' }) : spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  const [user, sys] = (/TIMES (\S+) (\S+)/.exec(r.stderr)?.slice(1) ?? ['NaN', 'NaN']).map((x) => Number(x) * 1000);
  rows.push({ how: 'GNU tar -xzf', ms, user: user!, sys: sys! });
}

for (let r = 0; r < runs; r++) {
  // A different one first each run: the filesystem's state (recently freed inodes) favours none.
  const order = r % 2 === 0 ? ['erofs', 'worker', 'main'] : ['main', 'worker', 'erofs'];
  for (const how of order) {
    if (how === 'main') await timed('main thread', (dest, tmp) => unpackRootfs(layers, dest, tmp, LIMITS));
    else if (how === 'worker') await timed('worker thread', (dest, tmp) => unpackRootfsOffThread(layers, dest, tmp, LIMITS).then((r) => r.synced));
    else await timed('EROFS (worker)', (dest, tmp) => unpackRootfsOffThread(layers, dest, tmp, LIMITS, 'erofs').then((r) => r.synced)); // to its data on disk, as GNU tar's sync
  }
  gnuTar();
}

const f = (n: number | undefined, digits = 1) => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits));
console.log('\nhow              wall ms   user ms   sys ms   loop delay p50 / p99 / max ms');
for (const row of rows) {
  console.log(`${row.how.padEnd(16)} ${f(row.ms, 0).padStart(7)} ${f(row.user, 0).padStart(9)} ${f(row.sys, 0).padStart(8)}   ${row.p50 === undefined ? '-' : `${f(row.p50)} / ${f(row.p99)} / ${f(row.max)}`}`);
}
for (const d of [work, ...bases]) rmSync(d, { recursive: true, force: true });
process.exit(0);
