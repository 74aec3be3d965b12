// CreateContainer in a sandboxed pod: the image's rootfs (unpacked once per image, shared into the
// pod VM read-only), what runs (the image's Entrypoint/Cmd/Env/WorkingDir/User with the kubelet's
// overrides, as containerd combines them) and the agent making the container in the guest. Nothing
// runs yet. The caller holds the sandbox's lock and has booted the pod's VM.
import { isAbsolute, join } from 'node:path';
import { invalidArgument } from '../errors.js';
import type { CreateContainerParams } from '../guest/agent-client.js';
import { attachBlockVolumes, detachBlockVolumes, type AgentDevice } from './sandboxed-devices.js';
import { blockVolumes, checkSandboxedMounts } from './volumes.js';
import { bindContainerMounts, unbindContainerMounts } from '../guest/shared-mounts.js';
import type { ImageRecord } from '../image/image-index.js';
import { containerArgs, containerEnv } from '../image/image-config.js';
import { resolveUser } from '../image/users.js';
import { parseCpuTune } from '../vm/cputune.js';
import type { ContainerConfig } from './configs.js';
import { newId } from './ids.js';
import type { PodManager } from './manager.js';
import type { PodVm } from './podvm.js';
import { createdContainer, type SandboxRecord } from './records.js';
import { signalNumber } from './signals.js';
import { containerCapabilities, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from '../guest/capabilities.js';
import { seccompFor } from '../guest/seccomp-profile.js';
import { growPodVm } from './podvm-grow.js';
import { podShareDir } from './podvm-boot.js';

export async function createSandboxedContainer(m: PodManager, s: SandboxRecord, p: PodVm, config: ContainerConfig, image: ImageRecord, imageName: string): Promise<string> {
  const sc = config.linux?.security_context;
  // As containerd (and runc) refuse it: a group with no user to go with it.
  if (sc?.run_as_group && !sc.run_as_user && !sc.run_as_username) {
    throw invalidArgument('config.linux.security_context.run_as_group is set without run_as_user or run_as_username: user group is specified without user');
  }
  // Privileged means the pod VM's own devices, /sys and every capability: the VM, not the node.
  const privileged = !!sc?.privileged;
  const capabilities = containerCapabilities(sc?.capabilities?.add_capabilities ?? [], sc?.capabilities?.drop_capabilities ?? [], privileged);
  const maskedPaths = privileged ? [] : sc?.masked_paths?.length ? sc.masked_paths : DEFAULT_MASKED_PATHS;
  const readonlyPaths = privileged ? [] : sc?.readonly_paths?.length ? sc.readonly_paths : DEFAULT_READONLY_PATHS;
  const seccomp = await seccompFor(sc, privileged);
  for (const ns of ['pid', 'ipc'] as const) {
    if (sc?.namespace_options?.[ns] === 'NODE') {
      throw invalidArgument(`config.linux.security_context.namespace_options.${ns} is NODE: a sandboxed pod's containers run in their own VM and cannot share the node's ${ns.toUpperCase()} namespace`);
    }
  }
  await checkSandboxedMounts(config);
  const blocks = await blockVolumes(config);
  const rootfs = await m.deps.images.ensureRootfs(image.id);
  const rc = await m.deps.images.runConfig(image.id);
  const args = containerArgs(rc, config.command ?? [], config.args ?? []);
  const env = containerEnv(rc.env, config.envs ?? []);
  const user = await resolveUser(rootfs.dir, {
    imageUser: rc.user,
    ...(sc?.run_as_user ? { runAsUser: Number(sc.run_as_user.value) } : {}),
    ...(sc?.run_as_username ? { runAsUsername: sc.run_as_username } : {}),
    ...(sc?.run_as_group ? { runAsGroup: Number(sc.run_as_group.value) } : {}),
    supplementalGroups: (sc?.supplemental_groups ?? []).map(Number),
  });
  const cputune = parseCpuTune(config.linux?.resources, 'config.linux.resources');
  const memLimit = Number(config.linux?.resources?.memory_limit_in_bytes || 0);
  const cwd = config.working_dir || rc.workingDir || '/';
  if (!isAbsolute(cwd)) throw invalidArgument(`config.working_dir ${JSON.stringify(cwd)} must be an absolute path`);

  const id = newId();
  const logDir = s.config.log_directory ?? '';
  const logPath = !config.log_path ? '' : isAbsolute(config.log_path) || !logDir ? config.log_path : join(logDir, config.log_path);
  const agent = await p.agent();
  await growPodVm(m, s, p, config.linux?.resources);
  const share = podShareDir(m, s);
  const mounts = config.mounts ?? [];
  const sources = await bindContainerMounts(share, id, mounts.map((mt) => ({ hostPath: mt.host_path, readonly: !!mt.readonly })));
  let attached: string[] = [];
  try {
    attached = await attachBlockVolumes(m, s, id, blocks);
    const params: CreateContainerParams & { devices: AgentDevice[] } = {
      id,
      image: rootfs.name,
      args,
      env,
      cwd,
      user,
      tty: !!config.tty,
      stdin: !!config.stdin,
      stdinOnce: !!config.stdin_once,
      readonlyRootfs: !!sc?.readonly_rootfs,
      mounts: mounts.map((mt, i) => ({ source: sources[i]!, target: mt.container_path, readonly: !!mt.readonly })),
      memoryLimitBytes: memLimit,
      cpuQuotaUs: cputune.quotaUs ?? 0,
      cpuPeriodUs: cputune.quotaUs ? (cputune.periodUs ?? 100_000) : 0,
      privileged,
      capabilities,
      noNewPrivs: !!sc?.no_new_privs,
      maskedPaths,
      readonlyPaths,
      // The kubelet's default is CONTAINER; POD (shareProcessNamespace) shares the pod VM's.
      pidNamespace: sc?.namespace_options?.pid === 'CONTAINER' ? 'container' : 'pod',
      ...(seccomp.kind === 'runtime-default' ? { seccompRuntimeDefault: true } : seccomp.kind === 'localhost' ? { seccompProfile: seccomp.profile } : {}),
      devices: blocks.map((b) => ({ serial: b.serial, target: b.containerPath, mode: b.mode, uid: b.uid, gid: b.gid })),
    };
    await agent.createContainer(params);
  } catch (err) {
    await detachBlockVolumes(m, s, id, attached);
    await unbindContainerMounts(share, id).catch((e: unknown) => m.log.error({ containerId: id, err: (e as Error).message }, "cannot unbind the container's mounts"));
    throw err;
  }
  const rec = createdContainer({
    id,
    sandboxId: s.id,
    kind: 'sandboxed',
    config,
    image: imageName,
    imageId: image.id,
    domainName: s.podVm!.domainName,
    logPath,
    consoleLog: '',
    files: [],
    stopSignal: signalNumber(rc.stopSignal) ?? 15,
  });
  try {
    await m.store.saveContainer(rec);
  } catch (err) {
    await agent.removeContainer(id).catch(() => undefined);
    await detachBlockVolumes(m, s, id, attached);
    await unbindContainerMounts(share, id).catch(() => undefined);
    throw err;
  }
  m.containers.set(id, rec);
  m.log.info({ containerId: id, podSandboxId: s.id, image: image.id, command: args[0], uid: user.uid }, 'container created in the pod VM');
  return id;
}
