// Attach: the VM's serial console, both directions, through the streaming server. The RPC only
// registers the request and answers its URL; the stream asks consolePty (streams.ts) when the
// client connects.
import type { StreamServer } from '../stream/server.js';
import type { AttachStreamRequest } from '../stream/backend.js';
import type { PodManager } from './manager.js';
import { requireRunning, type ContainerRecord } from './records.js';

/** The container to attach to: known, and its VM running. */
export function attachable(m: PodManager, containerId: string): ContainerRecord {
  const c = m.mustContainer(containerId);
  requireRunning(c, 'attach needs a running VM');
  return c;
}

/** The streaming URL the client connects to. */
export function attachContainer(m: PodManager, streams: Pick<StreamServer, 'registerAttach'>, req: AttachStreamRequest): string {
  const c = attachable(m, req.containerId);
  return streams.registerAttach({ ...req, containerId: c.id });
}
