// PodSandboxStatus: a pod's record, its IPs, its containers, and (verbose) what an operator
// debugging it wants: netns, handler, network state, the config as the kubelet sent it.
import type { PodIp } from '../net/index.js';
import type { PodManager } from './manager.js';
import { nowNs, type ContainerRecord, type SandboxRecord } from './records.js';

export interface SandboxStatus {
  sandbox: SandboxRecord;
  /** The pod's IPs as CNI gave them (none without a network). */
  ips: readonly PodIp[];
  containers: ContainerRecord[];
  /** Verbose only: `info`, a JSON object; empty otherwise. */
  info: Record<string, string>;
  /** When this status was taken: ns since the epoch, as a decimal string. */
  timestamp: string;
}

export function podSandboxStatus(m: PodManager, id: string, verbose: boolean): SandboxStatus {
  const s = m.mustSandbox(id);
  const net = m.networks.get(s.id);
  const info: Record<string, string> = {};
  if (verbose) info.info = JSON.stringify({ netns: s.netns ?? null, runtimeHandler: s.runtimeHandler, network: net ?? null, config: s.config });
  return { sandbox: s, ips: net?.ips ?? [], containers: m.containersOf(s.id), info, timestamp: nowNs() };
}
