// Start-up recovery of a pod network vmlet cannot trust: a RunPodSandbox that never answered (its
// record still says `creating`), or a ready pod whose network.json is missing, corrupt or written
// before CNI ADD answered. Its lease would leak and its dnsmasq run with nothing tracking it, so
// the network is released (CNI DEL with what is known, dnsmasq stopped by its pid file) and the
// pod reported NOTREADY: the kubelet stops its containers, makes a new pod and removes this one
// (RemovePodSandbox then deletes its netns, VM and state). VMs are not stopped here.
import { releasePodNetwork, type PodNetworkState } from '../net/index.js';
import { NETNS_DIR, netnsName } from '../net/netns.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { PodStateStore, SandboxRecord } from './records.js';

/** What of the PodManager this needs (manager.ts calls it: no import back, no cycle). */
export interface RecoveryDeps {
  deps: { config: Pick<Config, 'cni'> };
  log: Logger;
  store: PodStateStore;
}

export async function releaseUnfinishedNetwork(m: RecoveryDeps, s: SandboxRecord, net: { state: PodNetworkState } | { problem: string }): Promise<void> {
  const md = s.config.metadata!;
  const why = s.creating ? 'RunPodSandbox did not finish (vmlet stopped during it)' : 'problem' in net ? net.problem : 'network.json has no CNI ADD result';
  const { cni } = m.deps.config;
  try {
    await releasePodNetwork(
      {
        sandboxId: s.id,
        // RunPodSandbox records the netns before anything else; its name follows from the id anyway.
        netnsName: s.netns?.name ?? netnsName(s.id),
        netnsPath: s.netns?.path ?? `${NETNS_DIR}/${netnsName(s.id)}`,
        podName: md.name,
        namespace: md.namespace,
        podUid: md.uid,
        confDir: cni.confDir,
        binDirs: cni.binDirs,
        stateDir: m.store.sandboxDir(s.id),
        log: m.log,
      },
      'state' in net ? net.state : undefined,
    );
  } catch (err) {
    // The record keeps its mark, so the next start tries again; StopPodSandbox has nothing to tear.
    s.state = 'notready';
    m.log.error({ podSandboxId: s.id, why, err: (err as Error).message }, 'cannot release the pod network of an unfinished pod; pod is NOTREADY, will retry at next start');
    return;
  }
  s.state = 'notready';
  delete s.creating;
  // Stopped between making the netns and recording it: RemovePodSandbox deletes it by this.
  s.netns ??= { name: netnsName(s.id), path: `${NETNS_DIR}/${netnsName(s.id)}` };
  await m.store.saveSandbox(s);
  m.log.warn({ podSandboxId: s.id, pod: `${md.namespace}/${md.name}`, why }, 'pod network released at start (CNI DEL, DHCP server stopped); pod is NOTREADY');
}
