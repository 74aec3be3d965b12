// ReopenContainerLog (the kubelet rotated the CRI log): nothing to reopen, since the console
// copier opens the log by path for every write and so picks up a rotated file as it is; a
// container that is not running has no copier, and CRI asks for an error then.
import type { PodManager } from './manager.js';
import { requireRunning } from './records.js';

export function reopenContainerLog(m: PodManager, id: string): void {
  requireRunning(m.mustContainer(id), "only a running container's log can be reopened");
}
