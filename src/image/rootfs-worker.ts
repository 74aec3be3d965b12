// The rootfs unpack's worker thread: builds an image's tree (rootfs.ts, buildTree). On the main
// thread an unpack's tar parsing and per-entry syscalls held vmlet's CRI calls back: the event
// loop waited up to 33-62 ms at a time while 25k files (550 MB) unpacked.
import { parentPort } from 'node:worker_threads';
import { toWire } from '../util/worker-thread.js';
import { buildTree } from './rootfs.js';
import type { FromWorker, ToWorker } from './rootfs-protocol.js';

const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  buildTree(m.root, m.layers, m.limits).then(
    () => send({ t: 'built', job: m.job }),
    (err: unknown) => send({ t: 'failed', job: m.job, error: toWire(err) }),
  );
});
