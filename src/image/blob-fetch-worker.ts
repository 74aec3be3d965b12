// The blob download worker: fetches a layer from the registry and writes it to the store's temp
// file while its size and digest are checked (blob-write.ts). On the main thread a pull's bytes
// made vmlet's CRI calls wait on socket reads, hashing and the GC of node:http's copy of each
// body chunk (bench/pull.ts --poll: p50 8-11 ms during a 200 MB pull against 0.9 idle, p99 up
// to 54). The main thread keeps the credentials: a 401 goes back to it with its challenge.
import { parentPort } from 'node:worker_threads';
import { toWire } from '../util/worker-thread.js';
import { writeBlob } from './blob-write.js';
import { LayerFeed } from './layer-feed.js';
import { getFollowing } from './registry-get.js';
import type { FetchReply, FetchRequest } from './blob-fetch-protocol.js';

const port = parentPort!;
const send = (m: FetchReply) => port.postMessage(m);

async function fetchOne(m: FetchRequest): Promise<void> {
  const res = await getFollowing(m.url, {}, m.get);
  if (!res.ok) {
    const challenge = res.header('www-authenticate');
    res.discard();
    send({ t: 'status', id: m.id, status: res.status, statusText: res.statusText, ...(challenge !== undefined ? { challenge } : {}) });
    return;
  }
  // The download's feed, told to the main thread's copy as LayerFeed.watch tells any watcher.
  const feed = new LayerFeed();
  feed.watch((ev) => send({ t: 'feed', id: m.id, ev }));
  await writeBlob(res.body, m.target, undefined, feed);
  send({ t: 'stored', id: m.id });
}

port.on('message', (m: FetchRequest) => {
  fetchOne(m).catch((err: unknown) => send({ t: 'failed', id: m.id, error: toWire(err) }));
});
