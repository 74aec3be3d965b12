// `vmlet serve`: start the runtime and the CRI server; stop both cleanly on SIGTERM/SIGINT.
// VMs are never stopped here: restarting vmlet must leave them running.
import { join } from 'node:path';
import type { Config } from './config.js';
import { decideQemuUser, KVM_DEVICE_FIX, kvmDeviceProblem, type QemuIdentity } from './vm/qemu-user.js';
import { findVirtiofsd } from './vm/virtiofs.js';
import { NO_QBOOT_FIX, podVmBiosRom } from './guest/pod-vm-bios.js';
import { imageRootfsFormat } from './guest/kit.js';
import type { Logger } from './log.js';
import { startCriServer } from './cri/server.js';
import { observeRpcs } from './cri/rpc.js';
import { countPodsWith, countPoolWith, observeRpc } from './metrics/vmlet.js';
import { startMetricsServer, type MetricsServer } from './metrics/server.js';
import { podCounts } from './pod/pod-counts.js';
import { Runtime } from './runtime/runtime.js';
import { ImageStore, imageLimitsOf } from './image/store.js';
import { WITHOUT_ZSTD, ZSTD, zstdProgram } from './image/zstd.js';
import { PodManager } from './pod/manager.js';
import { LibvirtDriver } from './vm/libvirt-driver.js';
import { EmulatorWrapper } from './vm/emulator-wrapper.js';
import { QEMU_SYSTEM, which } from './util/binaries.js';
import { podStreamBackend } from './pod/streams.js';
import { reconnectPodVms } from './pod/podvm-boot.js';
import { PodVmPool } from './pod/podvm-pool.js';
import { StreamServer, streamingListenOptions } from './stream/server.js';
import { RUNTIME_VERSION } from './version.js';
import { LOW_OPEN_FILES, openFilesLimit } from './util/open-files.js';
import { stopSignal } from './util/stop-signal.js';

export async function serve(config: Config, configFile: string | undefined, log: Logger): Promise<number> {
  // From the first line: a signal during the start is kept, and the stop follows the start.
  const stopping = stopSignal(log);
  log.info({ version: RUNTIME_VERSION, configFile: configFile ?? null, pid: process.pid }, 'vmlet starting');
  const files = openFilesLimit();
  if (files && files.soft < LOW_OPEN_FILES) {
    log.warn({ soft: files.soft, hard: files.hard, wanted: LOW_OPEN_FILES }, 'open files limit is low for a runtime: each VM pod and stream holds descriptors (vmlet.service and node-install/vmlet-service.sh raise it; ulimit -Hn before starting vmlet otherwise)');
  }
  const runtime = new Runtime(config, log);
  await runtime.start();
  let pods: PodManager | undefined;
  let qemuUser: QemuIdentity;
  try {
    const d = await decideQemuUser(config);
    qemuUser = d.id;
    if (d.fallback) log.warn({ qemuUser: config.qemuUser, err: d.fallback }, 'VMs\' QEMU runs as root: the default QEMU user cannot run them (node-install/install.sh makes the user)');
    else log.info({ qemuUser: qemuUser.user, uid: qemuUser.uid, gid: qemuUser.gid }, qemuUser.uid === 0 ? 'VMs\' QEMU runs as root (config qemuUser)' : 'VMs\' QEMU runs unprivileged, as root only for VMs with 9p shares');
    const kvm = await kvmDeviceProblem(qemuUser);
    if (kvm) log.warn({ err: kvm, fix: KVM_DEVICE_FIX }, 'QEMU cannot open /dev/kvm: VMs run without KVM and every CreateContainer waits for libvirt to probe QEMU again');
  } catch (err) {
    log.fatal({ qemuUser: config.qemuUser, err: (err as Error).message }, 'cannot serve CRI');
    await runtime.stop();
    return 1;
  }
  const rootfs = await imageRootfsFormat(config.imageRootfs, config.guestKitDir);
  if (rootfs.fallback) log.warn({ imageRootfs: config.imageRootfs, guestKitDir: config.guestKitDir }, rootfs.fallback);
  const images = new ImageStore(join(config.stateDir, 'images'), config.registries, log, {
    inUse: (id) => pods?.imageInUse(id) ?? false,
    ...imageLimitsOf(config),
    qemuUser,
    rootfsFormat: rootfs.format,
    rootfsAtPull: config.imageRootfsAtPull,
  });
  const virtiofsd = config.shareDriver === '9p' ? undefined : findVirtiofsd();
  if (config.shareDriver === 'virtiofs' && !virtiofsd) {
    log.fatal({ shareDriver: config.shareDriver }, 'cannot serve CRI: config shareDriver is virtiofs and no virtiofsd was found (Debian 12: qemu-system-common\'s /usr/lib/qemu/virtiofsd; elsewhere the virtiofsd package)');
    await runtime.stop();
    return 1;
  }
  log.info({ shareDriver: virtiofsd ? 'virtiofs' : '9p', virtiofsd: virtiofsd ?? null }, virtiofsd ? 'VM-image pods\' directory volumes are shared over virtiofs' : 'VM-image pods\' directory volumes are shared over 9p: their VMs\' QEMU runs as root');
  if (!zstdProgram()) log.warn({ program: ZSTD }, `${WITHOUT_ZSTD} (apt-get install zstd)`);
  const qemu = which(QEMU_SYSTEM);
  const emulator = qemu ? await EmulatorWrapper.install(config.stateDir, qemu) : undefined;
  const bios = podVmBiosRom(config.podVmBios);
  if (bios.missing) log.warn({ rom: bios.missing, fix: NO_QBOOT_FIX }, 'config podVmBios is qboot and this node has no qboot ROM: sandboxed pods\' VMs start SeaBIOS, a slower boot');
  pods = new PodManager({ config, log, vm: new LibvirtDriver(runtime.libvirt), images, accel: runtime.accel, qemuUser, ...(virtiofsd ? { virtiofsd } : {}), ...(emulator ? { emulator } : {}), ...(bios.rom ? { podVmBiosRom: bios.rom } : {}) });
  const podManager = pods;
  pods.reconnectPodVms = () => reconnectPodVms(podManager);
  const pool = new PodVmPool(pods, config.podVmPool);
  pods.pool = pool;
  countPoolWith(() => ({ idle: pool.idleNames.length, size: pool.size }));
  observeRpcs(observeRpc);
  countPodsWith(() => podCounts(podManager));
  let server;
  let streams: StreamServer | undefined;
  let metrics: MetricsServer | undefined;
  try {
    await images.init();
    await pods.start();
    streams = await StreamServer.start({ log, backend: podStreamBackend(pods), ...(await streamingListenOptions(config.streaming)) });
    // Before the CRI socket: an address that cannot be bound stops the start, as a bad socket does.
    if (config.metricsAddress) metrics = await startMetricsServer(config.metricsAddress, log);
    server = await startCriServer(config.socket, { runtime, images, pods, streams, containerDir: pods.store.root }, log, { group: config.socketGroup });
  } catch (err) {
    log.fatal({ socket: config.socket, metricsAddress: config.metricsAddress || undefined, streaming: config.streaming.address, err: (err as Error).message }, 'cannot serve CRI');
    await metrics?.close();
    await streams?.close();
    await pods.stop();
    await runtime.stop();
    return 1;
  }
  const signal = await stopping;
  log.info({ signal }, 'shutting down: finishing in-flight calls');
  await server.shutdown();
  await metrics?.close();
  await streams.close();
  await pods.stop();
  await runtime.stop();
  log.info('vmlet stopped');
  return 0;
}
