// The StreamBackend for VM pods, from two lookups the caller supplies (pod/ or serve.ts knows
// the records and the libvirt connection; this file does not):
//   consolePty(containerId): the serial pty path of a running container's domain (read the live
//     domain XML through the VM driver's consolePty); throw if the container is not running.
//   podAddress(podSandboxId): the pod IP (routable from the host netns).
//   exec(req, io): runs a command in the guest (optional: without it exec answers 'not available').
import type { Duplex } from 'node:stream';
import { execUnavailable, type StreamBackend } from './backend.js';
import { ConsoleAttacher } from './console-attach.js';
import { dialTcp } from './port-forward.js';

export interface VmStreamLookups {
  consolePty(containerId: string): Promise<string>;
  podAddress(podSandboxId: string): Promise<string>;
  exec?: StreamBackend['exec'];
}

export function vmStreamBackend(lookups: VmStreamLookups, attacher = new ConsoleAttacher()): StreamBackend {
  return {
    async attach(req, io) {
      await attacher.attach(await lookups.consolePty(req.containerId), io);
    },
    exec: lookups.exec ?? execUnavailable,
    async portForward(podSandboxId, port): Promise<Duplex> {
      return dialTcp(await lookups.podAddress(podSandboxId), port);
    },
  };
}
