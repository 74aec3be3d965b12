// The rootfs unpack's worker thread: builds an image's tree (rootfs.ts, buildTree) or its EROFS
// image (rootfs-erofs.ts, buildErofs). On the main
// thread an unpack's tar parsing and per-entry syscalls held vmlet's CRI calls back: while 25k
// files (550 MB) unpacked, the event loop waited p99 9-70 ms, up to 34-154 ms at a time
// (bench/rootfs-unpack.ts).
import { parentPort } from 'node:worker_threads';
import { toWire } from '../util/worker-thread.js';
import { buildTree } from './rootfs.js';
import { buildErofs } from './rootfs-erofs.js';
import type { FromWorker, ToWorker } from './rootfs-protocol.js';

const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  (m.format === 'erofs' ? buildErofs : buildTree)(m.root, m.layers, m.limits).then(
    () => send({ t: 'built', job: m.job }),
    (err: unknown) => send({ t: 'failed', job: m.job, error: toWire(err) }),
  );
});
