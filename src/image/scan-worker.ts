// The layer scan's worker thread: reads an image's layers side by side (layer-read.ts) and sends
// back what each held. The bytes of a pull (1 MiB reads, 256 KiB inflated chunks) are fresh
// buffers; on the main thread each 64 MB of them made V8 mark vmlet's whole heap (25-49 full GCs
// for two 200 MB pulls, a third of the pull's CPU). This thread's heap is a few MB: its GCs are cheap.
import { parentPort } from 'node:worker_threads';
import { VmletError } from '../errors.js';
import { LayerFeed } from './layer-feed.js';
import { readOneLayer } from './layer-read.js';
import { ScanBudget, wantedBy, type LayerRef } from './layer-tar.js';
import { BUILT, type FromWorker, type ToWorker } from './scan-protocol.js';
import { scanIntoErofs } from './erofs-scan.js';
import { toWire as wire } from '../util/worker-thread.js';

interface Job {
  feeds: Array<LayerFeed | undefined>;
  readies: Array<{ resolve: () => void; reject: (err: Error) => void } | undefined>;
}

const jobs = new Map<number, Job>();
const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  if (m.t === 'scan') {
    const job: Job = { feeds: [], readies: [] };
    jobs.set(m.job, job);
    const budget = new ScanBudget(m.budget);
    const wanted = wantedBy(m.wanted);
    const layers = m.layers.map((l, i) => {
      const feed = l.feed ? new LayerFeed() : undefined;
      let ready: Promise<void> | undefined;
      if (l.ready) {
        ready = new Promise<void>((resolve, reject) => (job.readies[i] = { resolve, reject }));
        ready.catch(() => undefined); // awaited by the read, or never if it fails first
      }
      job.feeds[i] = feed;
      return { digest: l.digest, mediaType: l.mediaType, path: l.path, ...(l.diffId ? { diffId: l.diffId } : {}), ...(ready ? { ready } : {}), ...(feed ? { feed } : {}) } satisfies LayerRef;
    });
    const both = m.erofsRoot === undefined ? undefined : scanIntoErofs(m.erofsRoot, layers, wanted, m.tmpDir, m.limits, budget);
    const reads = layers.map((layer, i) =>
      (both?.reads[i] ?? readOneLayer(layer, wanted, m.tmpDir, m.limits, budget)).then(
        (read) => send({ t: 'read', job: m.job, i, read, live: layer.feed?.live ?? false }),
        (err: unknown) => send({ t: 'failed', job: m.job, i, error: wire(err) }),
      ),
    );
    const built = both?.built.then(
      () => send({ t: 'built', job: m.job, i: BUILT }),
      (err: unknown) => send({ t: 'built', job: m.job, i: BUILT, error: wire(err) }),
    );
    void Promise.all([...reads, built]).then(() => jobs.delete(m.job));
    return;
  }
  const job = jobs.get(m.job);
  if (!job) return; // a late event of a job whose reads have all ended
  if (m.t === 'feed') job.feeds[m.i]?.apply(m.ev);
  else if (m.error === undefined) job.readies[m.i]?.resolve();
  else job.readies[m.i]?.reject(new VmletError('unavailable', m.error));
});
