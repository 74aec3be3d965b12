// RunPodSandbox: a pod's state dir, record and network namespace. No VM yet: that comes with
// its container, or boots once this call has answered (vmlet.io/pod-kind: sandboxed). A failure
// leaves nothing behind.
import { phases } from '../util/phases.js';
import { alreadyExists, invalidArgument } from '../errors.js';
import { createNetns, deleteNetns, netnsName, netnsPath } from '../net/netns.js';
import { checkPortMappings, setupPodNetwork, teardownPodNetwork } from '../net/index.js';
import { podVmPlan } from './podvm-boot.js';
import { bootPodVmOfKind } from './podvm-ahead.js';
import type { PodSandboxConfig } from './configs.js';
import { newId } from './ids.js';
import { parsePodAnnotations } from '../vm/annotations.js';
import { checkPodAnnotations } from '../vm/annotation-policy.js';
import type { PodManager } from './manager.js';
import { nowNs, type SandboxRecord } from './records.js';
import { helperCgroup, podCgroupPath, procsFiles, removeCreated, resolveCgroupDriver, type Placement } from '../vm/pod-cgroup.js';

/** The handler this pod runs under, or InvalidArgument naming the handlers vmlet serves. */
export function resolveHandler(handler: string, handlers: string[], defaultRuntime: boolean): string {
  if (handler === '' && defaultRuntime) return handlers[0]!;
  if (handlers.includes(handler)) return handler;
  const hint = handler === '' ? '; vmlet is not the node default (config defaultRuntime: false), so pods need a RuntimeClass' : '';
  throw invalidArgument(`runtime_handler ${JSON.stringify(handler)} is not served by vmlet (handlers: ${handlers.join(', ')})${hint}`);
}

export async function runPodSandbox(m: PodManager, config: PodSandboxConfig | null, handler: string): Promise<string> {
  const { lap, fields } = phases(); // where the call's time goes, for its log line
  const { config: cfg } = m.deps;
  const runtimeHandler = resolveHandler(handler, cfg.handlers, cfg.defaultRuntime);
  const meta = config?.metadata;
  for (const f of ['name', 'namespace', 'uid'] as const) {
    if (!meta?.[f]) throw invalidArgument(`config.metadata.${f} is required`);
  }
  const md = meta!;
  if (Buffer.byteLength(config!.hostname ?? '') > 63) {
    throw invalidArgument(`config.hostname ${JSON.stringify(config!.hostname)} is longer than 63 bytes: a hostname is at most 63 (one DNS label)`);
  }
  checkPortMappings(config!.port_mappings ?? []);
  if (config!.linux?.security_context?.namespace_options?.network === 'NODE') {
    throw invalidArgument('config.linux.security_context.namespace_options.network is NODE (hostNetwork): a VM pod has its own network; hostNetwork is not supported by vmlet');
  }
  // The pod's annotations, checked before anything is made (netns, CNI lease, DHCP server): a
  // pod whose VM could never be created is refused here, with the annotation named.
  const { networkMode, podKind } = parsePodAnnotations(config!.annotations ?? {});
  checkPodAnnotations({ allowed: cfg.allowedAnnotations, handler: runtimeHandler, annotations: config!.annotations ?? {}, sandboxResources: config!.linux?.resources }); // the operator's allow-list
  // A cgroup_parent vmlet cannot use is refused before anything is made (docs/pod-cgroup.md).
  const cgroupParent = config!.linux?.cgroup_parent;
  podCgroupPath(cgroupParent, resolveCgroupDriver(cfg.cgroupDriver));
  // A pod VM that could not boot (no guest kit, a machine vmlet cannot make) is refused here: it
  // boots once this call has answered (podvm-ahead.ts).
  if (podKind === 'sandboxed') await podVmPlan(m, config!);
  const key = `${md.namespace}/${md.name}/${md.uid}/${md.attempt}`;
  return m.lock.run(`sandbox-name:${key}`, async () => {
    const same = m.sandboxByMetadata(md);
    if (same) throw alreadyExists(`pod sandbox ${md.namespace}/${md.name} (uid ${md.uid}, attempt ${md.attempt}) already exists as ${same.id}; remove it first`);
    const id = newId();
    const name = netnsName(id);
    // `creating` until the end: a record found with it at start-up is a create that never
    // answered, whose network is released then (network-recovery.ts).
    const rec: SandboxRecord = { id, config: config!, runtimeHandler, state: 'ready', createdAt: nowNs(), creating: true };
    let helpers: Placement | undefined;
    try {
      // The pod's helpers (dnsmasq) run in the pod cgroup; a missing cgroup_parent is made, as runc does.
      helpers = helperCgroup(cgroupParent, cfg.cgroupDriver);
      // Recorded (and synced) with its netns before the netns is made: vmlet stopped from here on
      // leaves a `creating` record, and start-up releases (and RemovePodSandbox deletes) the netns.
      rec.netns = { name, path: netnsPath(name) };
      await m.store.saveSandbox(rec);
      lap('recordMs');
      await createNetns(name);
      lap('netnsMs');
      const dns = config!.dns_config;
      const net = await setupPodNetwork({
        sandboxId: id,
        netnsName: name,
        netnsPath: rec.netns.path,
        podName: md.name,
        namespace: md.namespace,
        podUid: md.uid,
        hostname: config!.hostname || md.name,
        dnsConfig: { servers: dns?.servers ?? [], searches: dns?.searches ?? [], options: dns?.options ?? [] },
        portMappings: config!.port_mappings ?? [],
        confDir: cfg.cni.confDir,
        binDirs: cfg.cni.binDirs,
        stateDir: m.store.sandboxDir(id),
        log: m.log,
        // A sandboxed pod's guest takes its addresses from the kernel command line: no DHCP.
        dhcp: networkMode !== 'static' && podKind !== 'sandboxed',
        ...(helpers ? { cgroupProcs: procsFiles(helpers.dirs) } : {}),
      });
      m.networks.set(id, net);
      lap('networkMs');
    } catch (err) {
      await deleteNetns(name).catch(() => undefined);
      await m.store.removeSandbox(id).catch(() => undefined);
      if (helpers) removeCreated(helpers.made);
      throw err;
    }
    m.sandboxes.set(id, rec);
    try {
      delete rec.creating;
      await m.store.saveSandbox(rec);
      lap('saveMs');
    } catch (err) {
      m.sandboxes.delete(id);
      const net = m.networks.get(id);
      if (net) await teardownPodNetwork(net, { log: m.log }).catch(() => undefined);
      m.networks.delete(id);
      await deleteNetns(name).catch(() => undefined);
      await m.store.removeSandbox(id).catch(() => undefined);
      if (helpers) removeCreated(helpers.made);
      throw err;
    }
    m.log.info({ podSandboxId: id, pod: `${md.namespace}/${md.name}`, handler: runtimeHandler, netns: rec.netns.path, kind: podKind === 'auto' ? 'decided by its first container' : podKind, ...(helpers ? { cgroup: helpers.pod } : {}), ...fields() }, 'pod sandbox created');
    // Asked for: the VM boots now, while the kubelet pulls the images; its first container waits for it.
    if (podKind === 'sandboxed') bootPodVmOfKind(m, rec);
    return id;
  });
}
