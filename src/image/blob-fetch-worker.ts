// The blob download worker: fetches a layer from the registry and writes it to the store's temp
// file while its size and digest are checked (blob-write.ts). On the main thread a pull's bytes
// made vmlet's CRI calls wait on socket reads, hashing and the GC of node:http's copy of each
// body chunk (bench/pull.ts --poll: p50 8-11 ms during a 200 MB pull against 0.9 idle, p99 up
// to 54). The main thread keeps the credentials: a 401 goes back to it with its challenge.
import { parentPort } from 'node:worker_threads';
import { toWire } from '../util/worker-thread.js';
import { writeBlob, type FeedSink } from './blob-write.js';
import type { FeedEvent } from './layer-feed.js';
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
  const tell = (ev: FeedEvent) => send({ t: 'feed', id: m.id, ev });
  const feed: FeedSink = {
    started: (path, final) => tell({ e: 'started', path, final }),
    wrote: (total) => tell({ e: 'wrote', total }),
    end: () => tell({ e: 'end' }),
    failed: (err) => tell({ e: 'failed', message: err.message }),
  };
  await writeBlob(res.body, m.target, undefined, feed);
  send({ t: 'stored', id: m.id });
}

port.on('message', (m: FetchRequest) => {
  fetchOne(m).catch((err: unknown) => send({ t: 'failed', id: m.id, error: toWire(err) }));
});
