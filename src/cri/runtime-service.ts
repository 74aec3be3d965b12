// RuntimeService: wire ↔ internal mapping only. Behaviour lives in runtime/ (and pod/ later).
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Runtime } from '../runtime/runtime.js';
import { CRI_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME, RUNTIME_VERSION } from '../version.js';
import type { RuntimeServiceHandlers } from '../gen/runtime/v1/RuntimeService.js';
import type { VersionResponse } from '../gen/runtime/v1/VersionResponse.js';
import type { StatusResponse } from '../gen/runtime/v1/StatusResponse.js';
import type { RuntimeConfigResponse } from '../gen/runtime/v1/RuntimeConfigResponse.js';
import type { UpdateRuntimeConfigResponse } from '../gen/runtime/v1/UpdateRuntimeConfigResponse.js';
import { unary, withUnimplemented } from './rpc.js';
import { failedPrecondition, invalidArgument, notFound } from '../errors.js';
import type { PodManager } from '../pod/manager.js';
import type { StreamServer } from '../stream/server.js';
import { runPodSandbox } from '../pod/sandbox-run.js';
import { stopPodSandbox } from '../pod/sandbox-stop.js';
import { removePodSandbox } from '../pod/sandbox-remove.js';
import { createContainer } from '../pod/container-create.js';
import { startContainer } from '../pod/container-start.js';
import { stopContainer } from '../pod/container-stop.js';
import { removeContainer } from '../pod/container-remove.js';
import { containerVerboseInfo } from '../pod/container-info.js';
import { containerStats, listContainerStats, listPodSandboxStats, podSandboxStats } from '../pod/stats.js';
import { execSync } from '../pod/container-exec.js';
import { updateContainerResources } from '../pod/container-update.js';
import { containerMatches, sandboxMatches, wireContainer, wireContainerStatus, wirePodSandbox, wirePodSandboxStatus } from './pod-wire.js';

export function runtimeService(
  log: Logger,
  runtime: Runtime,
  pods: PodManager,
  streams: StreamServer,
  definition: ServiceDefinition,
): UntypedServiceImplementation {
  const impl: Partial<RuntimeServiceHandlers> = {
    RunPodSandbox: unary(log, 'RunPodSandbox', async (req) => ({
      pod_sandbox_id: await runPodSandbox(pods, req.config, req.runtime_handler),
    })),

    StopPodSandbox: unary(log, 'StopPodSandbox', async (req) => {
      await stopPodSandbox(pods, req.pod_sandbox_id);
      return {};
    }),

    RemovePodSandbox: unary(log, 'RemovePodSandbox', async (req) => {
      await removePodSandbox(pods, req.pod_sandbox_id);
      return {};
    }),

    PodSandboxStatus: unary(log, 'PodSandboxStatus', async (req) => {
      const s = pods.mustSandbox(req.pod_sandbox_id);
      const info: Record<string, string> = {};
      if (req.verbose) info.info = JSON.stringify({ netns: s.netns ?? null, runtimeHandler: s.runtimeHandler, network: pods.networks.get(s.id) ?? null, config: s.config });
      return {
        status: wirePodSandboxStatus(s, pods.networks.get(s.id)),
        info,
        containers_statuses: pods.containersOf(s.id).map(wireContainerStatus),
        timestamp: (BigInt(Date.now()) * 1_000_000n).toString(),
      };
    }),

    ListPodSandbox: unary(log, 'ListPodSandbox', async (req) => ({
      items: [...pods.sandboxes.values()].filter((s) => sandboxMatches(s, req.filter)).map(wirePodSandbox),
    })),

    CreateContainer: unary(log, 'CreateContainer', async (req) => ({
      container_id: await createContainer(pods, req.pod_sandbox_id, req.config, req.sandbox_config),
    })),

    StartContainer: unary(log, 'StartContainer', async (req) => {
      await startContainer(pods, req.container_id);
      return {};
    }),

    StopContainer: unary(log, 'StopContainer', async (req) => {
      await stopContainer(pods, req.container_id, Number(req.timeout));
      return {};
    }),

    RemoveContainer: unary(log, 'RemoveContainer', async (req) => {
      await removeContainer(pods, req.container_id);
      return {};
    }),

    ListContainers: unary(log, 'ListContainers', async (req) => ({
      containers: [...pods.containers.values()].filter((c) => containerMatches(c, req.filter)).map(wireContainer),
    })),

    ContainerStatus: unary(log, 'ContainerStatus', async (req) => {
      const c = pods.mustContainer(req.container_id);
      const info: Record<string, string> = {};
      if (req.verbose) info.info = JSON.stringify(await containerVerboseInfo(pods, c));
      return { status: wireContainerStatus(c), info };
    }),

    // Through qemu-guest-agent (ExecSync: exec probes; Exec: crictl/kubectl exec without a TTY).
    ExecSync: unary(log, 'ExecSync', async (req) => {
      const r = await execSync(pods, req.container_id, req.cmd, Number(req.timeout));
      return { stdout: r.stdout, stderr: r.stderr, exit_code: r.exitCode };
    }),

    Exec: unary(log, 'Exec', async (req) => {
      const c = pods.mustContainer(req.container_id);
      if (req.cmd.length === 0 || !req.cmd[0]) throw invalidArgument('cmd is required: cmd[0] is the command to run in the guest');
      if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}; exec needs a running VM`);
      if (req.tty) {
        throw failedPrecondition('exec with a TTY (-t) needs a terminal in the guest, and qemu-guest-agent cannot provide one: run the command without -t, or use attach for the serial console');
      }
      return { url: streams.registerExec({ containerId: c.id, cmd: req.cmd, tty: false, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
    }),

    UpdateContainerResources: unary(log, 'UpdateContainerResources', async (req) => {
      await updateContainerResources(pods, req.container_id, req.linux);
      return {};
    }),

    Attach: unary(log, 'Attach', async (req) => {
      const c = pods.mustContainer(req.container_id);
      if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}; attach needs a running VM`);
      return { url: streams.registerAttach({ containerId: c.id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
    }),

    PortForward: unary(log, 'PortForward', async (req) => {
      const s = pods.mustSandbox(req.pod_sandbox_id);
      return { url: streams.registerPortForward({ podSandboxId: s.id, ports: req.port }) };
    }),

    ContainerStats: unary(log, 'ContainerStats', async (req) => ({ stats: await containerStats(pods, req.container_id) })),
    ListContainerStats: unary(log, 'ListContainerStats', async (req) => ({ stats: await listContainerStats(pods, req.filter) })),
    PodSandboxStats: unary(log, 'PodSandboxStats', async (req) => ({ stats: await podSandboxStats(pods, req.pod_sandbox_id) })),
    ListPodSandboxStats: unary(log, 'ListPodSandboxStats', async (req) => ({ stats: await listPodSandboxStats(pods, req.filter) })),


    ReopenContainerLog: unary(log, 'ReopenContainerLog', async (req) => {
      const c = pods.container(req.container_id);
      if (!c) throw notFound(`container ${req.container_id} not found`);
      // The console copier opens the log by path for every write, so a rotated file is picked up as is.
      if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}; only a running container's log can be reopened`);
      return {};
    }),

    Version: unary(log, 'Version', async (): Promise<VersionResponse> => ({
      version: CRI_VERSION,
      runtime_name: RUNTIME_NAME,
      runtime_version: RUNTIME_VERSION,
      runtime_api_version: RUNTIME_API_VERSION,
    })),

    Status: unary(log, 'Status', async (req): Promise<StatusResponse> => {
      const s = await runtime.status(req.verbose);
      return {
        status: { conditions: s.conditions.map((c) => ({ ...c })) },
        runtime_handlers: s.handlers.map((name) => ({
          name,
          features: { recursive_read_only_mounts: false, user_namespaces: false },
        })),
        features: { supplemental_groups_policy: false },
        info: s.info ?? {},
      };
    }),

    RuntimeConfig: unary(log, 'RuntimeConfig', async (): Promise<RuntimeConfigResponse> => ({
      linux: { cgroup_driver: runtime.cgroupDriver() === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' },
    })),

    UpdateRuntimeConfig: unary(log, 'UpdateRuntimeConfig', async (req): Promise<UpdateRuntimeConfigResponse> => {
      const cidr = req.runtime_config?.network_config?.pod_cidr;
      if (cidr !== undefined) await runtime.updatePodCidr(cidr);
      return {};
    }),
  };
  return withUnimplemented(log, 'RuntimeService', definition, impl as UntypedServiceImplementation);
}
