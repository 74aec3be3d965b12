// CreateContainer: the pod's VM. Resolves the image, turns annotations, image labels and resources
// into the VM's settings (parsed once), checks them against the image and the node, then makes the
// root disk (a qcow2 overlay on the containerDisk) and the cloud-init seed, and defines the
// libvirt domain with the CRI metadata inside it. Nothing runs yet. A failure leaves nothing behind.
import { phases } from '../util/phases.js';
import { removeUnmounted } from '../guest/shared-mounts.js';
import { bindReadOnlyShares } from './share-binds.js';
import { isAbsolute, join } from 'node:path';
import { alreadyExists, failedPrecondition, invalidArgument, isNoSpace, noSpace, notFound } from '../errors.js';
import type { ContainerConfig, PodSandboxConfig } from './configs.js';
import { createOverlay } from '../image/qemu-img.js';
import { ANNOTATIONS, NODE_DEFAULTS, parsePodAnnotations, parseVmSettings, POD_KIND_ANNOTATION } from '../vm/annotations.js';
import { checkContainerAnnotations } from '../vm/annotation-policy.js';
import type { BootInfo } from '../image/image-index.js';
import { ensurePodVm } from './podvm-boot.js';
import { undoGuessedPodVm } from './podvm-ahead.js';
import { podVmGuessed } from '../metrics/vmlet.js';
import { createSandboxedContainer } from './sandboxed-create.js';
import { hostShares, parseCpuTune } from '../vm/cputune.js';
import { buildVmSpec, domainName, runAs, type BuildVmSpecInput } from '../vm/spec.js';
import { checkVmPrerequisites } from '../vm/spec-checks.js';
import { buildSeed, type PodNetworkInfo } from '../vm/cloud-init.js';
import { writeSeedIso } from '../vm/seed-iso.js';
import { agentSocketPath, prepareAgentSocketDir } from '../vm/guest-agent.js';
import { monitorSocketBeside } from '../vm/qmp-watch.js';
import { prepareVncSocketDir, vncSocketPath } from '../vm/vnc-socket.js';
import type { PodNetworkState } from '../net/index.js';
import { newId } from './ids.js';
import type { PodManager } from './manager.js';
import { createdContainer, type SandboxRecord } from './records.js';
import { blockVolumes, checkSandboxedMounts, vmMounts, type BlockVolume } from './volumes.js';
import { prepareRootDevice } from './root-device.js';
import { podEmulator } from './qemu-cgroup.js';

export async function createContainer(
  m: PodManager,
  sandboxId: string,
  config: ContainerConfig | null,
  _sandboxConfig: PodSandboxConfig | null,
): Promise<string> {
  const { lap, fields } = phases(); // where the call's time goes, for its log line
  const s = m.mustSandbox(sandboxId);
  if (!config?.metadata?.name) throw invalidArgument('config.metadata.name is required');
  const imageName = config.image?.image ?? '';
  if (!imageName) throw invalidArgument('config.image.image is required');
  // Under the pod's lock, which Stop/RemovePodSandbox take before listing its containers: a pod
  // stopped or removed meanwhile is refused here, never given a VM they would not see.
  return m.lock.run(s.id, () => m.holdingImages(async (holdImage) => {
    m.requireReady(s, `container ${config.metadata!.name} cannot be created`);
    const existing = m.containersOf(s.id);
    const same = existing.find((c) => c.config.metadata?.name === config.metadata!.name && c.config.metadata?.attempt === config.metadata!.attempt);
    if (same) throw alreadyExists(`container ${config.metadata!.name} (attempt ${config.metadata!.attempt}) already exists in pod ${s.id} as ${same.id}`);
    const image = m.deps.images.status(imageName);
    if (!image) throw notFound(`image ${imageName} not found: pull it first`);
    holdImage(image.id); // in use from here: RemoveImage refuses it until the record holds it
    if (s.guessed && image.boot.kind !== 'rootfs') await undoGuessedPodVm(m, s, imageName);
    const kind = podKindFor(s, image.boot.kind, imageName);
    if (kind === 'sandboxed') {
      // Bad mounts and devices are refused before the pod's VM boots for them.
      await checkSandboxedMounts(config);
      await blockVolumes(config);
      // The image's tree unpacks while the pod's VM boots: an image's first container waits for
      // the longer of the two, not both. createSandboxedContainer joins this unpack; one that
      // fails there is reported there (a boot that fails first leaves it to finish for the next).
      m.deps.images.ensureRootfs(image.id).catch(() => undefined);
      const p = await ensurePodVm(m, s);
      const id = await createSandboxedContainer(m, s, p, config, image, imageName);
      if (s.guessed) {
        delete s.guessed; // the guess held: the pod's kind is fixed
        await m.store.saveSandbox(s);
        podVmGuessed('held');
      }
      return id;
    }
    // The kubelet restarts a dead container with the next attempt and removes the dead one later
    // (its GC keeps it for `logs --previous`): only a VM that may still run is in the way.
    const live = existing.find((c) => c.state !== 'exited');
    if (live) {
      throw failedPrecondition(`pod ${s.id} already has container ${live.id} (${live.state}): a VM-image pod runs one VM; remove it first, or create the next once it has exited`);
    }
    // Everything is checked before anything is made: a bad annotation leaves nothing behind.
    const settings = parseVmSettings({
      sandboxAnnotations: s.config.annotations ?? {},
      containerAnnotations: config.annotations ?? {},
      imageLabels: image.labels,
      containerResources: config.linux?.resources ?? null,
      sandboxResources: s.config.linux?.resources ?? null,
      defaults: NODE_DEFAULTS,
    });
    checkContainerAnnotations({ allowed: m.deps.config.allowedAnnotations, handler: s.runtimeHandler, podAnnotations: s.config.annotations ?? {}, containerAnnotations: config.annotations ?? {}, containerResources: config.linux?.resources, sandboxResources: s.config.linux?.resources });
    const cputune = parseCpuTune(config.linux?.resources, 'config.linux.resources');
    if (cputune.shares !== undefined) cputune.shares = hostShares(cputune.shares);
    const id = newId();
    // Mounts and devices are checked (and config files read) before anything is made.
    const vols = await vmMounts(config, m.log, { containerId: id, podSandboxId: s.id }, m.deps.virtiofsd);
    const blocks = await blockVolumes(config);
    const root = rootDeviceOf(settings.rootDevice, blocks);
    const net = m.networks.get(s.id);
    const seed = buildSeed({
      podUid: s.config.metadata!.uid,
      podName: s.config.metadata!.name,
      hostname: s.config.hostname ?? '',
      cloudInit: settings.cloudInit,
      envs: (config.envs ?? []).map((e) => ({ key: e.key, value: e.value })),
      command: config.command ?? [],
      args: config.args ?? [],
      ...(net ? { network: networkInfo(net) } : {}),
      mounts: vols.guestMounts,
      files: vols.files,
    });
    await checkVmPrerequisites({
      settings,
      bootKind: image.boot.kind === 'kernel' ? 'kernel' : 'disk',
      ...(image.boot.disk ? { imageDiskBytes: image.boot.disk.virtualSize } : {}),
    });
    const { cloudInit: _, ...machine } = settings; // what UpdateContainerResources needs back
    lap('checkMs');

    const dir = m.store.containerDir(s.id, id);
    // A restart's VM has a domain of its own: the dead container's is undefined with it, by its RemoveContainer.
    const name = domainName(s.config.metadata!.name, s.config.metadata!.namespace, s.id, existing.length > 0 ? id : undefined);
    const logDir = s.config.log_directory ?? '';
    const logPath = !config.log_path ? '' : isAbsolute(config.log_path) || !logDir ? config.log_path : join(logDir, config.log_path);
    const files: string[] = [];
    let defined = false;
    let seedWritten: Promise<void> | undefined;
    try {
      await m.store.makeContainerDir(s.id, id);
      const shares = await bindReadOnlyShares(dir, vols.shares);
      let disks: BuildVmSpecInput['disks'] = [];
      if (root) {
        // Checked last: what it may write (the image, onto a blank device) is the pod's own data to keep.
        const imaged = await prepareRootDevice(root.hostPath, root.containerPath, image.boot.disk);
        m.log.info({ containerId: id, podSandboxId: s.id, device: root.hostPath, imaged }, imaged ? 'image copied onto the root device' : 'root device booted as it is');
        disks = [{ path: root.hostPath, format: 'raw', block: true, serial: root.serial }];
      } else if (image.boot.disk) {
        const overlay = join(dir, 'root.qcow2');
        files.push(overlay);
        await createOverlay(overlay, image.boot.disk.path, image.boot.disk.format, settings.rootDiskSizeBytes);
        disks = [{ path: overlay, format: 'qcow2' }];
      }
      for (const b of blocks) if (b !== root) disks.push({ path: b.hostPath, format: 'raw', block: true, serial: b.serial, bus: 'virtio', ...(b.readonly ? { readonly: true } : {}) });
      const nvram = settings.firmware === 'uefi' ? join(dir, 'nvram.fd') : undefined;
      if (nvram) files.push(nvram);
      lap('diskMs');
      const seedIso = join(dir, 'seed.iso');
      files.push(seedIso);
      // Written (and synced) while the domain is prepared and defined: libvirt opens it only at
      // the start.
      seedWritten = writeSeedIso(seedIso, seed.files);
      seedWritten.catch(() => undefined); // handled below; a failure before then must not go unhandled
      // Who QEMU runs as: the node's QEMU user, root for a VM with 9p shares (vm/spec.ts runAs).
      const qemuUser = runAs(m.qemuUser, shares);
      const agent = agentSocketPath(dir, id);
      await prepareAgentSocketDir(agent, qemuUser, m.log);
      files.push(agent.dir); // QEMU removes the socket when it exits cleanly; not after a kill -9
      const vnc = settings.vnc ? vncSocketPath(m.store.sandboxDir(s.id), s.id) : undefined;
      if (vnc) {
        await prepareVncSocketDir(vnc, qemuUser);
        files.push(vnc.path); // QEMU leaves it behind when the VM stops (its dir is the pod's, for the pod's next VM)
      }
      const emulator = podEmulator(m, s.config.linux?.cgroup_parent);
      const spec = buildVmSpec({
        name,
        domainType: m.deps.accel.domainType,
        settings,
        boot: image.boot.kernel
          ? {
              kind: 'kernel',
              kernel: image.boot.kernel.kernel,
              ...(image.boot.kernel.initrd ? { initrd: image.boot.kernel.initrd } : {}),
              ...(image.boot.kernel.pvh ? { pvh: image.boot.kernel.pvh } : {}),
              cmdline: settings.imageCmdline ?? '',
            }
          : { kind: 'disk' },
        disks,
        ...(settings.serialLog ? { consoleLog: join(dir, 'console.log') } : {}),
        ...(nvram ? { nvramPath: nvram } : {}),
        seedIso,
        nics: net ? [{ tap: net.tap, mac: net.mac, mtu: net.mtu }] : [],
        guestAgent: { socket: agent.path },
        monitorSocket: monitorSocketBeside(agent.path),
        ...(vnc ? { vncSocket: vnc.path } : {}),
        shares,
        tcgTbCacheMiB: m.deps.config.tcgTbCacheMiB,
        ...(emulator ? { emulator } : {}),
        qemuUser: m.qemuUser,
        cputune,
        metadata: {
          v: 1,
          containerId: id,
          sandboxId: s.id,
          name: config.metadata!.name,
          attempt: config.metadata!.attempt,
          image: imageName,
          imageId: image.id,
          // For operators: which 9p tag and disk serial is which volume.
          ...(vols.guestMounts.length ? { mountTags: Object.fromEntries(vols.guestMounts.map((g) => [g.tag, g.path])) } : {}),
          ...(blocks.length ? { deviceSerials: Object.fromEntries(blocks.map((b) => [b.serial, b.containerPath])) } : {}),
        },
      });
      const rec = createdContainer({
        id,
        sandboxId: s.id,
        config,
        image: imageName,
        imageId: image.id,
        domainName: name,
        logPath,
        consoleLog: settings.serialLog ? join(dir, 'console.log') : '',
        files,
        settingSources: settings.sources,
        settings: machine,
      });
      lap('specMs');
      const [seedDone, defineDone] = await Promise.allSettled([seedWritten, m.deps.vm.define(spec)]);
      defined = defineDone.status === 'fulfilled';
      for (const r of [seedDone, defineDone]) if (r.status === 'rejected') throw r.reason;
      lap('seedAndDefineMs');
      // Side by side: the file system syncs both in one commit. The pod becomes a VM pod in
      // memory only once both are saved (a failed create leaves its kind undecided).
      await Promise.all([m.store.saveContainer(rec), s.kind !== 'vm' ? m.store.saveSandbox({ ...s, kind: 'vm' }) : undefined]);
      s.kind = 'vm';
      m.containers.set(id, rec);
      lap('saveMs');
      m.log.info({ containerId: id, podSandboxId: s.id, domain: name, image: image.id, boot: image.boot.kind, vcpus: settings.vcpus, memoryMiB: settings.memoryMiB, maxVcpus: settings.maxVcpus, maxMemoryMiB: settings.maxMemoryMiB, ...fields() }, 'container created');
      return id;
    } catch (err) {
      await seedWritten?.catch(() => undefined); // not into a dir being removed
      if (defined) await m.deps.vm.remove(name).catch(() => undefined);
      await removeUnmounted(dir);
      if (isNoSpace(err)) throw noSpace(`container ${config.metadata!.name} in pod ${s.id} cannot be created`, m.deps.config.stateDir, err);
      throw err;
    }
  }));
}

/** The device vmlet.io/root-device names, which must be one of the container's and writable. */
function rootDeviceOf(rootDevice: string | undefined, blocks: BlockVolume[]): BlockVolume | undefined {
  if (rootDevice === undefined) return undefined;
  const b = blocks.find((d) => d.containerPath === rootDevice);
  if (!b) {
    const have = blocks.map((d) => d.containerPath);
    throw invalidArgument(`annotation ${ANNOTATIONS.rootDevice}=${JSON.stringify(rootDevice)} names no device of the container: allowed the container_path of one of its devices (${have.length ? have.join(', ') : 'it has none: add a volumeDevice of a block PVC'})`);
  }
  if (b.readonly) throw invalidArgument(`annotation ${ANNOTATIONS.rootDevice}: device ${JSON.stringify(rootDevice)} is read-only (permissions without w): allowed a writable device`);
  return b;
}

/**
 * What the pod is: fixed by its first container's image unless vmlet.io/pod-kind says, and a later
 * container must be of the same kind (a VM image cannot run inside a sandboxed pod's VM, nor a
 * container image as a VM).
 */
function podKindFor(s: SandboxRecord, boot: BootInfo['kind'], imageName: string): 'vm' | 'sandboxed' {
  const asked = parsePodAnnotations(s.config.annotations ?? {}).podKind;
  const kind = s.kind ?? (asked !== 'auto' ? asked : boot === 'rootfs' ? 'sandboxed' : 'vm');
  const imageKind = boot === 'rootfs' ? 'sandboxed' : 'vm';
  if (kind !== imageKind) {
    const what = boot === 'rootfs' ? 'a container image (no containerDisk, no kernel)' : `a VM image (${boot === 'kernel' ? 'kernel boot' : 'containerDisk'})`;
    const pod = kind === 'sandboxed' ? 'a sandboxed pod (its containers are processes in one VM)' : 'a VM-image pod (its container is the VM)';
    throw invalidArgument(`image ${imageName} is ${what}, and pod ${s.id} is ${pod}${s.kind ? '' : ` (${POD_KIND_ANNOTATION}: ${asked})`}: run it in a pod of its own kind`);
  }
  return kind;
}

/** What the guest's static network-config says; the same the pod's DHCP server answers. */
function networkInfo(n: PodNetworkState): PodNetworkInfo {
  return {
    mac: n.mac,
    ips: n.ips.map((ip) => ({ address: ip.address, prefix: ip.prefix, family: ip.family, ...(ip.gateway ? { gateway: ip.gateway } : {}) })),
    routes: n.routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
    dns: { nameservers: n.dns.servers, search: n.dns.searches, options: n.dns.options },
    mtu: n.mtu,
  };
}
