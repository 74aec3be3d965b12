// The main thread's side of the layer scan's worker (scan-worker.ts): one worker for the process,
// started on the first scan and ended after a quiet minute (it holds ~25 MiB). Each layer's read
// settles with what the worker found, or with its error as it was thrown there: a VmletError keeps
// its kind, an fs error its code; a read that failed because its download did gets the
// download's own error, as a read on this thread did.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VmletError, type ErrorKind } from '../errors.js';
import type { LayerRead, LayerRef, ScanBudget, ScanLimits, Wanted } from './layer-tar.js';
import type { FromWorker, ToWorker, WireError } from './scan-protocol.js';

const IDLE_MS = 60_000;

interface Pending {
  /** The worker reading it: only that one's death fails it. */
  worker: Worker;
  layer: LayerRef;
  resolve: (read: LayerRead) => void;
  reject: (err: unknown) => void;
}

let worker: Worker | undefined;
let idle: NodeJS.Timeout | undefined;
let nextJob = 1;
/** "job:layer" → the read waiting for the worker's answer. */
const pending = new Map<string, Pending>();

/** Built: the .js beside this file. From source (unit tests, tsx): the .ts, through tsx's loader. */
function spawn(): Worker {
  const js = new URL('./scan-worker.js', import.meta.url);
  const ts = new URL('./scan-worker.ts', import.meta.url).href;
  const fromSource = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(ts)}); })`;
  const w = existsSync(fileURLToPath(js)) ? new Worker(js) : new Worker(fromSource, { eval: true });
  w.on('message', (m: FromWorker) => {
    const key = `${m.job}:${m.i}`;
    const p = pending.get(key);
    if (!p) return;
    pending.delete(key);
    if (m.t === 'read') {
      if (m.live && p.layer.feed) p.layer.feed.live = true;
      p.resolve(m.read);
    } else {
      // A read that failed because its download did fails with the download's error.
      Promise.resolve(p.layer.ready).then(() => p.reject(revive(m.error)), p.reject);
    }
    if (pending.size === 0) quiet();
  });
  // A worker ended for being idle may report its exit after a new one took reads: those stay.
  const died = (why: string) => {
    if (worker === w) worker = undefined;
    for (const [key, p] of pending) {
      if (p.worker !== w) continue;
      pending.delete(key);
      p.reject(new VmletError('internal', `layer scan worker: ${why}`));
    }
  };
  w.on('error', (err) => died(err.message));
  w.on('exit', (code) => died(`exited with code ${code}`));
  return w;
}

/** No read pending: the worker does not hold the process open, and ends if nothing comes. */
function quiet(): void {
  worker?.unref();
  clearTimeout(idle);
  idle = setTimeout(() => {
    const w = worker;
    worker = undefined;
    void w?.terminate();
  }, IDLE_MS);
  idle.unref();
}

/** The worker's error as this thread would have had it: same kind, or same fs code (ENOSPC, …). */
function revive(e: WireError): VmletError {
  return Object.assign(new VmletError((e.kind as ErrorKind | undefined) ?? 'internal', e.message), e.code ? { code: e.code } : {});
}

/** The worker thread, while there is one (tests end it to check what its death does). */
export function scanWorker(): Worker | undefined {
  return worker;
}

/** Reads `layers` side by side in the worker: one promise per layer, in order. */
export function readLayersInWorker(layers: LayerRef[], wanted: Wanted, tmpDir: string, limits: ScanLimits, budget: ScanBudget): Promise<LayerRead>[] {
  if (layers.length === 0) return []; // no answer would come to let the worker go quiet
  clearTimeout(idle);
  worker ??= spawn();
  worker.ref();
  const w = worker;
  const job = nextJob++;
  const post = (m: ToWorker) => w.postMessage(m);
  const reads = layers.map((layer, i) => new Promise<LayerRead>((resolve, reject) => pending.set(`${job}:${i}`, { worker: w, layer, resolve, reject })));
  post({
    t: 'scan',
    job,
    layers: layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: l.path, ...(l.diffId ? { diffId: l.diffId } : {}), feed: l.feed !== undefined, ready: l.ready !== undefined })),
    wanted,
    tmpDir,
    limits,
    budget: budget.memory,
  });
  layers.forEach((l, i) => {
    const stop = l.feed?.watch((ev) => post({ t: 'feed', job, i, ev }));
    l.ready?.then(
      () => post({ t: 'ready', job, i }),
      (err: unknown) => post({ t: 'ready', job, i, error: (err as Error).message ?? String(err) }),
    );
    if (stop) void reads[i]!.catch(() => undefined).finally(stop);
  });
  return reads;
}
