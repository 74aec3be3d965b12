// Benchmark (not a test): pull throughput and memory of vmlet's image service against skopeo.
// Builds an OCI layout of random (incompressible) layers, or of the node's own files (--real),
// pushes it to a local registry, then pulls it with a fresh vmlet (cold: V8 has compiled none of the pull's code), with skopeo (to an
// OCI dir), and with the same vmlet again once RemoveImage emptied its store (warm, as a node's
// long-running vmlet pulls). Prints figures only.
//   npx tsx bench/pull.ts [sizeMB=200] [--layers N=4] [--rate MBps] [--disk] [--cmd] [--trace] [--drop-caches] [--profile DIR]
//     --rate N       pull through a proxy that sends each response at N MB/s (a registry over a
//                    network link, not loopback: what a node sees; both vmlet and skopeo use it)
//     --trace        print vmlet's RSS (anon/file split) sampled every 50 ms during each pull
//     --drop-caches  sync and drop the page cache (machine-wide, root) before the first vmlet pull
//     --disk         a containerDisk: the last layer's file is disk/disk.img (raw), which vmlet
//                    keeps (writes it out, checks it with qemu-img) instead of only scanning it
//     --profile DIR  V8 CPU profile of each vmlet pull, DIR/pull-<pid>-vmlet{cold,warm}.cpuprofile
//                    (npx tsx bench/profile-top.ts FILE prints its heaviest functions)
//     --pause S      wait S seconds before the warm pull (past 60 s the pull's worker threads have
//                    ended, as between a node's pulls: the warm pull then starts them again)
//     --settle S     after the pulls, wait S seconds (the pull's worker threads end after a quiet
//                    minute) and print vmlet's RSS
//     --zstd         zstd layers (zstd -3, application/vnd.oci.image.layer.v1.tar+zstd) instead of gzip
//     --real         layer contents from this node's own files (/usr/lib, /usr/share, /usr/bin: they
//                    compress ~3:1 as an image's do) instead of random bytes (stored as is by gzip
//                    and zstd, so decompressing costs next to nothing)
//     --containerd   also pull with containerd 1.6's CRI (test/helpers/containerd.ts, overlayfs),
//                    cold (a fresh containerd) and warm: the pull a kubelet gets from the node's
//                    ordinary runtime, which also decompresses every layer (and writes its files)
//     --threads      print each vmlet pull's CPU by thread (main, the worker threads it started, the
//                    rest) and its minor page faults: where a cold pull's extra time goes
//     --cmd          the image names a command (Cmd), as container images do: vmlet's pull then
//                    also builds its EROFS rootfs for sandboxed pods (imageRootfsAtPull), in the
//                    same read of the layers; without it the image is like a VM image (no command)
//     --poll         ask vmlet ListPodSandbox and ListImages back to back (one call in flight) for
//                    2 s before the pulls and during each vmlet pull: the latency the kubelet's
//                    polling sees while a pull runs, against the same calls idle
// BENCH_WRAP=CMD starts each vmlet as `CMD node main.js …` (CMD may add node flags, e.g. --trace-gc).
// MB/s is 10^6 bytes per second of compressed bytes (config + layers); memory is in MiB.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Duplex, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { execa } from 'execa';
import { Header } from 'tar';
import { call, startVmlet, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { startRegistry } from '../test/helpers/registry.js';
import { startSlowProxy } from '../test/helpers/slow-proxy.js';
import { startContainerd, type TestContainerd } from '../test/helpers/containerd.js';
import { profiled, profileWritten, toggleProfilers } from './profiler.js';
import { CallStats, procStatus as statusField, sleep } from './kubelet-poll.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const positional = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && ['--layers', '--rate', '--profile', '--settle', '--pause'].includes(args[i - 1]!)));
const sizeMB = Number(positional[0] ?? 200);
const nLayers = Number(opt('--layers') ?? 4);
const rateMBps = opt('--rate') === undefined ? undefined : Number(opt('--rate'));
const trace = flag('--trace');
const disk = flag('--disk');
const dropCaches = flag('--drop-caches');
const profileDir = opt('--profile');
const pollCalls = flag('--poll');
const settleS = opt('--settle') === undefined ? undefined : Number(opt('--settle'));
const pauseS = Number(opt('--pause') ?? 0);
const zstd = flag('--zstd');
const real = flag('--real');
const withContainerd = flag('--containerd');
const threads = flag('--threads');
const cmd = flag('--cmd');
if (!(sizeMB > 0) || !Number.isInteger(nLayers) || nLayers < 1 || (rateMBps !== undefined && !(rateMBps > 0))) {
  console.error('usage: npx tsx bench/pull.ts [sizeMB=200] [--layers N=4] [--rate MBps] [--disk] [--zstd] [--real] [--trace] [--drop-caches] [--profile DIR] [--poll] [--pause S] [--settle S] [--containerd] [--threads] [--cmd]');
  process.exit(2);
}

const MEDIA = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: zstd ? 'application/vnd.oci.image.layer.v1.tar+zstd' : 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;
const CHUNK = 1024 * 1024;
const MiB = 1024 * 1024;

const sec = (ms: number) => (ms / 1000).toFixed(2);
const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(1);
const mib = (kib: number) => (kib / 1024).toFixed(1);

// ---------------------------------------------------------------- 1. OCI layout of random layers

interface Blob { digest: string; size: number }
interface Layout { dir: string; config: Blob; layers: Blob[]; manifest: Blob; totalBytes: number; rawBytes: number }

/** Counts and hashes what passes through. */
function tap(hash: ReturnType<typeof createHash>, count: { n: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      count.n += chunk.length;
      cb(null, chunk);
    },
  });
}

/** This node's files under /usr/lib, /usr/share and /usr/bin, in a fixed order (--real). */
let nodeFiles: string[] | undefined;
function listNodeFiles(): string[] {
  if (nodeFiles) return nodeFiles;
  const out: string[] = [];
  for (const top of ['/usr/lib', '/usr/share', '/usr/bin']) {
    for (const e of readdirSync(top, { recursive: true, withFileTypes: true })) if (e.isFile()) out.push(join(e.path, e.name));
  }
  return (nodeFiles = out.sort());
}

/** `size` bytes of content in CHUNK pieces: random, or (--real) the node's files from the `start`-th on. */
function* content(size: number, start: number): Generator<Buffer> {
  if (!real) {
    for (let left = size; left > 0; left -= CHUNK) yield randomBytes(Math.min(CHUNK, left));
    return;
  }
  const files = listNodeFiles();
  const buf = Buffer.alloc(CHUNK);
  let left = size;
  for (let i = start, misses = 0; left > 0; i++) {
    let fd: number;
    try {
      fd = openSync(files[i % files.length]!, 'r');
    } catch {
      if (++misses > files.length) throw new Error('no file under /usr can be read');
      continue; // unreadable: the next one
    }
    misses = 0;
    try {
      for (let n: number; left > 0 && (n = readSync(fd, buf, 0, Math.min(CHUNK, left), null)) > 0; ) {
        left -= n;
        yield Buffer.from(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** The layer's compressor: gzip -1 in-process, or the zstd program at level 3 (--zstd); `done` once it exited well. */
function compressor(): { stream: NodeJS.ReadWriteStream; done: Promise<void> } {
  if (!zstd) return { stream: createGzip({ level: 1 }), done: Promise.resolve() };
  const child = spawn('zstd', ['-q', '-c', '-3'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const done = new Promise<void>((resolve, reject) => child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`zstd exited ${code}`)))));
  return { stream: Duplex.from({ writable: child.stdin, readable: child.stdout }), done };
}

/** One compressed tar holding `path` of `size` bytes of content; returns digest, size, diff_id. */
async function writeLayer(blobsDir: string, i: number, size: number, path: string): Promise<Blob & { diffId: string }> {
  const diff = createHash('sha256');
  // One chunk at a time: memory stays flat whatever the size.
  function* tarStream(): Generator<Buffer> {
    const h = new Header({ path, mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', size, mtime: new Date(), type: 'File' });
    h.encode();
    diff.update(h.block!);
    yield h.block!;
    for (const b of content(size, i * 997)) {
      diff.update(b);
      yield b;
    }
    const tail = Buffer.alloc(((512 - (size % 512)) % 512) + 1024);
    diff.update(tail);
    yield tail;
  }
  const digest = createHash('sha256');
  const count = { n: 0 };
  const tmp = join(blobsDir, `tmp-${i}`);
  const c = compressor();
  await Promise.all([pipeline(Readable.from(tarStream()), c.stream, tap(digest, count), createWriteStream(tmp)), c.done]);
  const hex = digest.digest('hex');
  renameSync(tmp, join(blobsDir, hex));
  return { digest: `sha256:${hex}`, size: count.n, diffId: `sha256:${diff.digest('hex')}` };
}

function writeJsonBlob(blobsDir: string, doc: unknown): Blob {
  const body = Buffer.from(JSON.stringify(doc));
  const hex = createHash('sha256').update(body).digest('hex');
  writeFileSync(join(blobsDir, hex), body);
  return { digest: `sha256:${hex}`, size: body.length };
}

async function buildLayout(dir: string, totalBytes: number, layers: number): Promise<Layout> {
  const blobsDir = join(dir, 'blobs', 'sha256');
  mkdirSync(blobsDir, { recursive: true });
  const per = Math.floor(totalBytes / layers);
  // In parallel: gzip runs on libuv's thread pool, so both cores work.
  const built = await Promise.all(
    Array.from({ length: layers }, (_, i) => {
      const last = i === layers - 1;
      return writeLayer(blobsDir, i, last ? totalBytes - per * (layers - 1) : per, last && disk ? 'disk/disk.img' : `data/blob-${i}.bin`);
    }),
  );
  const config = writeJsonBlob(blobsDir, {
    created: new Date().toISOString(),
    architecture: 'amd64',
    os: 'linux',
    // --cmd: a container image, which vmlet's pull also builds the rootfs of (imageRootfsAtPull).
    config: { Labels: { 'vmlet.bench': 'pull' }, ...(cmd ? { Cmd: ['/bin/sh'] } : {}) },
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map((_, i) => ({ created_by: `bench/pull.ts layer ${i}` })),
  });
  const manifest = writeJsonBlob(blobsDir, {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, ...config },
    layers: built.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })),
  });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: MEDIA.manifest, ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  const layerBlobs = built.map(({ digest, size }) => ({ digest, size }));
  return { dir, config, layers: layerBlobs, manifest, totalBytes: config.size + layerBlobs.reduce((a, l) => a + l.size, 0), rawBytes: totalBytes };
}

// ---------------------------------------------------------------- memory sampling

interface Status { rss: number; hwm: number; anon: number; file: number; shmem: number }

/** VmRSS, VmHWM, RssAnon, RssFile, RssShmem of a process, in KiB. */
function procStatus(pid: number): Status {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: kib('VmRSS'), hwm: kib('VmHWM'), anon: kib('RssAnon'), file: kib('RssFile'), shmem: kib('RssShmem') };
}

/** From a /proc/…/stat file (a process's or one thread's): its name, user and system CPU (ms), minor page faults. */
function statOf(path: string): { comm: string; user: number; sys: number; minflt: number } {
  const st = readFileSync(path, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  const ms = (ticks: string | undefined) => (Number(ticks) * 1000) / 100; // USER_HZ is 100 on Linux
  return { comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')), user: ms(f[11]), sys: ms(f[12]), minflt: Number(f[7]) };
}

/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const s = statOf(`/proc/${pid}/stat`);
  return s.user + s.sys;
}

/** utime + stime of each thread of a process (ms), by thread id. */
function taskCpu(pid: number): Map<string, { comm: string; ms: number }> {
  const m = new Map<string, { comm: string; ms: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = statOf(`/proc/${pid}/task/${tid}/stat`);
      m.set(tid, { comm: s.comm, ms: s.user + s.sys });
    } catch {
      /* gone */
    }
  }
  return m;
}

interface Sample extends Status { t: number }

function sampler(pid: number, t0: number, everyMs = 50): { samples: Sample[]; stop(): void } {
  const samples: Sample[] = [];
  const take = () => {
    try {
      samples.push({ t: performance.now() - t0, ...procStatus(pid) });
    } catch {
      /* process gone */
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return { samples, stop: () => (clearInterval(timer), take()) };
}

// ---------------------------------------------------------------- runs

interface Row {
  name: string;
  wallMs: number;
  bytes: number;
  /** vmlet only: request start → last layer stored; then → reply (decompress + tar scan + diff_id check). */
  downloadMs?: number;
  scanMs?: number;
  cpuMs?: number;
  idleRssKiB?: number;
  peakSampledKiB?: number;
  peakAnonKiB?: number;
  hwmKiB?: number;
  hwmBeforeKiB?: number;
}

/** A vmlet with an empty store, for its pulls: the first is cold (V8 has compiled nothing of the pull's code yet). */
async function startPuller(reg: { host: string }): Promise<VmletProcess> {
  const vm = await profiled(profileDir, 'pull', () => startVmlet({ wrap: process.env.BENCH_WRAP ? [process.env.BENCH_WRAP] : [], config: `registries:\n  insecure: [${JSON.stringify(reg.host)}]\n` }));
  await new Promise((r) => setTimeout(r, 1000)); // let start-up garbage settle
  return vm;
}

/** One pull of `ref` into vm's store, which must not hold it (every layer is downloaded: checked). */
async function pullWithVmlet(name: string, vm: VmletProcess, ref: string, bytes: number, layers: number): Promise<Row> {
  const pid = vm.proc.pid!;
  const idle = procStatus(pid);
  const cpu0 = cpuMs(pid);
  const tasks0 = taskCpu(pid);
  const stat0 = statOf(`/proc/${pid}/stat`);
  const logFrom = vm.logLines.length;
  const wall0 = Date.now();
  const t0 = performance.now();
  const s = sampler(pid, t0);
  if (profileDir) toggleProfilers([vm.proc]);
  let imageRef: string;
  const polling = pollCalls ? pollWhile(vm) : undefined;
  try {
    imageRef = (await call<object, { image_ref: string }>(vm.image, 'PullImage', { image: { image: ref } })).image_ref;
  } finally {
    s.stop();
  }
  const wallMs = performance.now() - t0;
  if (polling) printPolls(`${name}, during the pull`, await polling.stop());
  const end = procStatus(pid);
  const cpu = cpuMs(pid) - cpu0;
  if (threads) {
    // A thread new since the pull began is one of the pull's worker threads (download, scan).
    const tasks1 = taskCpu(pid);
    const stat1 = statOf(`/proc/${pid}/stat`);
    const cpuOf = [...tasks1].map(([tid, t]) => ({ tid, ms: t.ms - (tasks0.get(tid)?.ms ?? 0), fresh: !tasks0.has(tid) })).filter((t) => t.ms > 0);
    const main = cpuOf.find((t) => t.tid === String(pid));
    const fresh = cpuOf.filter((t) => t.fresh);
    const rest = cpuOf.filter((t) => !t.fresh && t !== main).reduce((a, t) => a + t.ms, 0);
    console.log(`  ${name}: CPU by thread (ms): main ${main?.ms ?? 0}; ${fresh.length ? `started by this pull ${fresh.map((t) => t.ms).join(', ')}` : 'no thread started'}; others (V8 platform, libuv pool, workers from before) ${rest}; minor page faults ${stat1.minflt - stat0.minflt}; user ${stat1.user - stat0.user} ms, system ${stat1.sys - stat0.sys} ms`);
  }
  if (profileDir) {
    toggleProfilers([vm.proc]);
    const file = await profileWritten(profileDir, 'pull', vm.proc);
    const named = file.replace(/pull-(\d+)\.cpuprofile$/, `pull-$1-${name.replace(/\W+/g, '')}.cpuprofile`);
    renameSync(file, named);
    console.log(`  profile: ${named}`);
  }
  // Phase split from vmlet's own log: the last 'layer stored' ends the download.
  const logs = vm.logLines.slice(logFrom).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; time?: string | number });
  const stored = logs.filter((l) => l.msg === 'layer stored').map((l) => new Date(l.time!).getTime());
  if (stored.length !== layers) throw new Error(`${name}: ${stored.length} of ${layers} layers downloaded (the store held the others)`);
  const downloadMs = Math.max(...stored) - wall0;
  const peak = s.samples.reduce((a, x) => (x.rss > a.rss ? x : a), s.samples[0]!);
  const peakAnon = Math.max(...s.samples.map((x) => x.anon));
  if (trace) printTrace(name, s.samples, idle);
  // Emptied again, blobs and all, for the next pull (RemoveImage drops what no image uses).
  await call(vm.image, 'RemoveImage', { image: { image: imageRef } });
  return {
    name, wallMs, bytes, cpuMs: cpu, downloadMs, scanMs: wallMs - downloadMs,
    idleRssKiB: idle.rss, peakSampledKiB: peak.rss, peakAnonKiB: peakAnon, hwmKiB: end.hwm, hwmBeforeKiB: idle.hwm,
  };
}

/** Polling calls back to back, one in flight, until stop(): what a kubelet's relist sees meanwhile. */
function pollWhile(vm: VmletProcess): { stop(): Promise<CallStats> } {
  const stats = new CallStats();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await stats.timed(vm.runtime, 'ListPodSandbox', {});
      await stats.timed(vm.image, 'ListImages', {});
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return stats;
    },
  };
}

function printPolls(what: string, stats: CallStats): void {
  console.log(`  CRI calls ${what} (ms):`);
  for (const l of stats.table('    ')) console.log(l);
}

function printTrace(name: string, samples: Sample[], idle: Status): void {
  console.log(`  ${name}: RSS every 50 ms (MiB; idle rss ${mib(idle.rss)} anon ${mib(idle.anon)} file ${mib(idle.file)})`);
  const step = Math.max(1, Math.ceil(samples.length / 60));
  for (let i = 0; i < samples.length; i += step) {
    const x = samples[i]!;
    console.log(`    t=${sec(x.t).padStart(6)}s  rss ${mib(x.rss).padStart(6)}  anon ${mib(x.anon).padStart(6)}  file ${mib(x.file).padStart(5)}  shmem ${mib(x.shmem).padStart(4)}  hwm ${mib(x.hwm).padStart(6)}`);
  }
}

async function pullWithSkopeo(_reg: { host: string }, ref: string, bytes: number): Promise<Row> {
  const dest = tempDir('vmlet-bench-skopeo-');
  try {
    const haveTime = (() => {
      try {
        readFileSync('/usr/bin/time');
        return true;
      } catch {
        return false;
      }
    })();
    const skopeoArgs = ['skopeo', '--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}:latest`];
    const t0 = performance.now();
    const res = haveTime ? await execa('/usr/bin/time', ['-v', ...skopeoArgs]) : await execa(skopeoArgs[0]!, skopeoArgs.slice(1));
    const wallMs = performance.now() - t0;
    const row: Row = { name: 'skopeo', wallMs, bytes };
    if (haveTime) {
      const field = (re: RegExp) => Number(re.exec(res.stderr)?.[1] ?? NaN);
      row.hwmKiB = field(/Maximum resident set size \(kbytes\): (\d+)/);
      row.cpuMs = (field(/User time \(seconds\): ([\d.]+)/) + field(/System time \(seconds\): ([\d.]+)/)) * 1000;
    } else {
      console.log('  (/usr/bin/time absent: no peak RSS for skopeo; apt-get install -y time)');
    }
    return row;
  } finally {
    rmSync(dest, { recursive: true, force: true });
  }
}

/** One CRI pull by containerd (fetch, then unpack into its overlayfs snapshots), then RemoveImage. */
async function pullWithContainerd(name: string, ctr: TestContainerd, ref: string, bytes: number): Promise<Row> {
  const pid = ctr.pid()!;
  const cpu0 = cpuMs(pid);
  const before = procStatus(pid);
  const t0 = performance.now();
  const imageRef = (await call<object, { image_ref: string }>(ctr.image, 'PullImage', { image: { image: ref } })).image_ref;
  const wallMs = performance.now() - t0;
  const row: Row = { name, wallMs, bytes, cpuMs: cpuMs(pid) - cpu0, idleRssKiB: before.rss, hwmKiB: procStatus(pid).hwm };
  await call(ctr.image, 'RemoveImage', { image: { image: imageRef } });
  return row;
}

// ---------------------------------------------------------------- main

const cleanups: Array<() => Promise<void> | void> = [];
async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch (err) {
      console.error(`cleanup: ${(err as Error).message}`);
    }
  }
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => void cleanup().finally(() => process.exit(130)));
}

async function main(): Promise<void> {
  console.log(`pull benchmark: ${sizeMB} MB of ${real ? "this node's files" : 'random data'} in ${nLayers} ${zstd ? 'zstd' : 'gzip'} layers${disk ? ' (a containerDisk: disk/disk.img in the last)' : ''}${cmd ? ' (naming a command: its rootfs built by the pull)' : ''}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const layoutDir = tempDir('vmlet-bench-layout-');
  cleanups.push(() => rmSync(layoutDir, { recursive: true, force: true }));
  let t = performance.now();
  const layout = await buildLayout(layoutDir, Math.round(sizeMB * 1e6), nLayers);
  console.log(`build:  ${sec(performance.now() - t)} s  (${layout.layers.length} layers, ${(layout.totalBytes / 1e6).toFixed(1)} MB compressed from ${(layout.rawBytes / 1e6).toFixed(1)} MB)`);

  const reg = await startRegistry();
  cleanups.push(async () => {
    await reg.stop();
    rmSync(dirname(reg.storageDir), { recursive: true, force: true });
  });
  const ref = `${reg.host}/bench/big:v1`;
  t = performance.now();
  await execa('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layoutDir}:latest`, `docker://${ref}`]);
  const pushMs = performance.now() - t;
  console.log(`push:   ${sec(pushMs)} s  (${mbps(layout.totalBytes, pushMs)} MB/s, skopeo → docker-registry ${reg.host})`);
  // The layout is no longer needed: free its disk space before the pulls.
  rmSync(layoutDir, { recursive: true, force: true });

  if (dropCaches) {
    await execa('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    console.log('page cache dropped');
  }

  let from: { host: string } = reg;
  if (rateMBps !== undefined) {
    const proxy = await startSlowProxy(`http://${reg.host}`, rateMBps * 1e6);
    cleanups.push(() => proxy.stop());
    from = proxy;
    console.log(`pulls through a proxy at ${rateMBps} MB/s per response (${proxy.host})`);
  }
  const pullRef = `${from.host}/bench/big:v1`;
  const rows: Row[] = [];
  // One vmlet for its three pulls: cold, then warm (V8 has compiled the pull's code), as a node's
  // long-running vmlet pulls; skopeo between them.
  const vm = await startPuller(from);
  cleanups.push(async () => {
    await vm.stop();
    rmSync(vm.dir, { recursive: true, force: true });
  });
  if (pollCalls) {
    const idle = pollWhile(vm);
    await sleep(2000);
    printPolls('with no pull (2 s)', await idle.stop());
  }
  for (const run of ['vmlet cold', 'skopeo', 'vmlet warm'] as const) {
    if (run === 'vmlet warm' && pauseS) await sleep(pauseS * 1000);
    const row = run === 'skopeo' ? await pullWithSkopeo(from, pullRef, layout.totalBytes) : await pullWithVmlet(run, vm, pullRef, layout.totalBytes, layout.layers.length);
    rows.push(row);
    const extra = row.downloadMs !== undefined ? `, download ${sec(row.downloadMs)} s + scan ${sec(row.scanMs!)} s` : '';
    const mem = row.peakSampledKiB !== undefined
      ? `idle RSS ${mib(row.idleRssKiB!)} MiB, peak RSS ${mib(row.peakSampledKiB)} MiB sampled (anon ${mib(row.peakAnonKiB!)}), VmHWM ${mib(row.hwmKiB!)} MiB (${mib(row.hwmBeforeKiB!)} before the pull)`
      : row.hwmKiB !== undefined ? `max RSS ${mib(row.hwmKiB)} MiB` : '';
    console.log(`${run.padEnd(10)}: ${sec(row.wallMs)} s, ${mbps(row.bytes, row.wallMs)} MB/s${extra}; ${mem}`);
  }
  if (withContainerd) {
    // After vmlet's runs, so its daemon takes no CPU from them; the same registry and ref.
    const ctr = await startContainerd({ registry: reg });
    cleanups.push(() => ctr.stop());
    for (const run of ['containerd cold', 'containerd warm'] as const) {
      const row = await pullWithContainerd(run, ctr, pullRef, layout.totalBytes);
      rows.push(row);
      console.log(`${run.padEnd(10)}: ${sec(row.wallMs)} s, ${mbps(row.bytes, row.wallMs)} MB/s; cpu ${sec(row.cpuMs!)} s, containerd HWM ${mib(row.hwmKiB!)} MiB`);
    }
  }
  if (settleS !== undefined) {
    await sleep(settleS * 1000);
    const st = procStatus(vm.proc.pid!);
    console.log(`vmlet ${settleS} s after the last pull: RSS ${mib(st.rss)} MiB (anon ${mib(st.anon)}), threads ${statusField(vm.proc.pid!, 'Threads')}`);
  }

  console.log('\nsummary (MB/s = 10^6 compressed bytes/s over the whole pull; memory in MiB)');
  const head = ['run', 'wall s', 'MB/s', 'dl s', 'dl MB/s', 'scan s', 'cpu s', 'idle RSS', 'peak RSS', 'peak anon', 'HWM'];
  const fmt = (v: number | undefined, f: (n: number) => string) => (v === undefined || Number.isNaN(v) ? '-' : f(v));
  const table = rows.map((r) => [
    r.name,
    sec(r.wallMs),
    mbps(r.bytes, r.wallMs),
    fmt(r.downloadMs, sec),
    fmt(r.downloadMs, (d) => mbps(r.bytes, d)),
    fmt(r.scanMs, sec),
    fmt(r.cpuMs, sec),
    fmt(r.idleRssKiB, mib),
    fmt(r.peakSampledKiB, mib),
    fmt(r.peakAnonKiB, mib),
    fmt(r.hwmKiB, mib),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  for (const row of table) console.log(line(row));
  const wall = (name: string) => rows.find((r) => r.name === name)?.wallMs;
  const ratios = (['skopeo', 'containerd cold', 'containerd warm'] as const).flatMap((ref) => {
    const r = wall(ref);
    return r === undefined ? [] : [`vs ${ref}: warm ${(r / wall('vmlet warm')!).toFixed(2)}, cold ${(r / wall('vmlet cold')!).toFixed(2)}`];
  });
  console.log(`throughput ratio vmlet / reference (>1: vmlet faster): ${ratios.join('; ')}`);
  console.log(`(${(layout.totalBytes / MiB).toFixed(1)} MiB compressed; vmlet dl = request → last 'layer stored' log line, scan = the rest: decompression + tar walk + diff_id check; skopeo HWM from /usr/bin/time -v)`);
}

try {
  await main();
} finally {
  await cleanup();
}
