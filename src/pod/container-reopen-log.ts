// ReopenContainerLog (the kubelet rotated the CRI log): nothing to reopen, since the console
// copier opens the log by path for every write and so picks up a rotated file as it is; a
// container that is not running has no copier, and CRI asks for an error then. Sandboxed
// containers' logs are written by vmlet through an open file, which is reopened.
import type { PodManager } from './manager.js';
import { requireRunning } from './records.js';

export async function reopenContainerLog(m: PodManager, id: string): Promise<void> {
  const c = m.mustContainer(id);
  requireRunning(c, "only a running container's log can be reopened");
  // A sandboxed container's log is a file vmlet holds open: a new one is made at the path.
  if (c.kind === 'sandboxed') await m.podVms.get(c.sandboxId)?.io.get(c.id)?.log.reopen();
}
