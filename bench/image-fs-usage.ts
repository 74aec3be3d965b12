// Benchmark (not a test): what ImageFsInfo's walk of the image store costs with sandboxed pods'
// images unpacked in it. The kubelet asks about every 10 s (eviction, summary API), and the
// store's usage is kept 10 s (store.ts USAGE_TTL_MS) or until the index changes.
//   npx tsx bench/image-fs-usage.ts [--trees N=2]
// Makes a store with N rootfs trees of this node's own files (node-file-layers.ts, ~25k entries
// each, unpacked by GNU tar), then, in rounds, marks the store changed (as a pull or a removal
// does) and times store.fsUsage() — vmlet's walk, each tree walked once — against a full walk of
// the same dir (treeUsage, what every ImageFsInfo past the TTL did before: then through
// fs.promises, 4.9-6.1 s and 4.2-5.3 s of CPU for two trees; now synchronous in 2 ms slices).
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { ImageStore } from '../src/image/store.js';
import { treeUsage } from '../src/util/fs-usage.js';
import { tempDir } from '../test/helpers/vmlet.js';
import { nodeFileLayers } from './node-file-layers.js';

const args = process.argv.slice(2);
const trees = args.includes('--trees') ? Number(args[args.indexOf('--trees') + 1]) : 2;
const work = tempDir('vmlet-bench-fsusage-');
const root = join('/var/lib', `vmlet-bench-fsusage-${process.pid}`);
try {
  const layers = nodeFileLayers(work);
  const store = new ImageStore(root, { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
  for (let i = 0; i < trees; i++) {
    const tree = join(store.rootfsRoot, i.toString(16).padStart(64, '0'));
    mkdirSync(tree, { recursive: true });
    for (const l of layers) execFileSync('tar', ['-C', tree, '-xzf', l.path]);
  }
  console.log(`image store usage: ${trees} rootfs trees of ${layers.reduce((a, l) => a + l.entries, 0)} entries each`);
  for (let round = 0; round < 4; round++) {
    await store.index.save(); // the store changed: its cached usage is stale
    const cpu = process.cpuUsage();
    const t = performance.now();
    const u = await store.fsUsage();
    const ms = performance.now() - t;
    const used = process.cpuUsage(cpu);
    const cpu2 = process.cpuUsage();
    const t2 = performance.now();
    const full = await treeUsage(root);
    const fullMs = performance.now() - t2;
    const used2 = process.cpuUsage(cpu2);
    const c = (x: NodeJS.CpuUsage) => ((x.user + x.system) / 1e3).toFixed(0);
    console.log(
      `round ${round}: store.fsUsage ${ms.toFixed(0)} ms (CPU ${c(used)} ms; ${u.inodesUsed} inodes, ${(u.usedBytes / 2 ** 20).toFixed(0)} MiB) | a full walk ${fullMs.toFixed(0)} ms (CPU ${c(used2)} ms; ${full.inodes} inodes)`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);
