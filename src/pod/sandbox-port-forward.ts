// PortForward: TCP from the streaming server to the VM's address in the pod network. The RPC
// only registers the request and answers its URL; the stream asks podAddress (streams.ts).
import type { StreamServer } from '../stream/server.js';
import type { PodManager } from './manager.js';

export function portForward(m: PodManager, streams: Pick<StreamServer, 'registerPortForward'>, podSandboxId: string, ports: number[]): string {
  const s = m.mustSandbox(podSandboxId);
  // A stopped pod's address went back to CNI: another pod may hold it now.
  m.requireReady(s, 'cannot forward ports');
  return streams.registerPortForward({ podSandboxId: s.id, ports });
}
