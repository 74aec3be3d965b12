// RuntimeService: wire ↔ internal mapping only. Each handler maps the request to vmlet's types,
// makes one call and maps the answer back; rpc.ts wraps them all the same way (timing, one log
// line, error → status). The behaviour of each RPC lives in src/pod/<noun>-<verb>.ts, or in
// src/runtime/ for the node-wide Status, RuntimeConfig and UpdateRuntimeConfig; docs/design.md
// ("RPC → file") names the file for every RPC. Records → messages: pod-wire.ts, stats-wire.ts.
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Runtime } from '../runtime/runtime.js';
import { CRI_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME, RUNTIME_VERSION } from '../version.js';
import type { RuntimeServiceHandlers } from '../gen/runtime/v1/RuntimeService.js';
import type { VersionResponse } from '../gen/runtime/v1/VersionResponse.js';
import type { StatusResponse } from '../gen/runtime/v1/StatusResponse.js';
import type { RuntimeConfigResponse } from '../gen/runtime/v1/RuntimeConfigResponse.js';
import type { UpdateRuntimeConfigResponse } from '../gen/runtime/v1/UpdateRuntimeConfigResponse.js';
import { listStream, unary, withUnimplemented } from './rpc.js';
import type { PodManager } from '../pod/manager.js';
import type { StreamServer } from '../stream/server.js';
import { runPodSandbox } from '../pod/sandbox-run.js';
import { stopPodSandbox } from '../pod/sandbox-stop.js';
import { removePodSandbox } from '../pod/sandbox-remove.js';
import { podSandboxStatus } from '../pod/sandbox-status.js';
import { listPodSandboxes } from '../pod/sandbox-list.js';
import { portForward } from '../pod/sandbox-port-forward.js';
import { podSandboxStats } from '../pod/sandbox-stats.js';
import { listPodSandboxStats } from '../pod/sandbox-stats-list.js';
import { createContainer } from '../pod/container-create.js';
import { startContainer } from '../pod/container-start.js';
import { stopContainer } from '../pod/container-stop.js';
import { removeContainer } from '../pod/container-remove.js';
import { containerStatus } from '../pod/container-status.js';
import { listContainers } from '../pod/container-list.js';
import { execContainer, execSync } from '../pod/container-exec.js';
import { attachContainer } from '../pod/container-attach.js';
import { updateContainerResources } from '../pod/container-update.js';
import { updatePodSandboxResources } from '../pod/sandbox-update-resources.js';
import { containerEventsHandler } from './container-events.js';
import { reopenContainerLog } from '../pod/container-reopen-log.js';
import { containerStats } from '../pod/container-stats.js';
import { listContainerStats } from '../pod/container-stats-list.js';
import { containerFilter, NO_MATCH, sandboxFilter, wireContainer, wireContainerStatus, wirePodSandbox, wirePodSandboxStatus } from './pod-wire.js';
import { containerStatsFilter, nsString, sandboxStatsFilter, wireContainerStats, wirePodSandboxStats } from './stats-wire.js';
import { listPodSandboxMetrics, metricDescriptors, type CriMetric } from '../pod/sandbox-metrics.js';
import type { Metric } from '../gen/runtime/v1/Metric.js';

/** pod/sandbox-metrics.ts's metric → the wire's (uint64 and int64 as decimal strings). */
function wireMetric(x: CriMetric): Metric {
  return {
    name: x.name,
    timestamp: nsString(x.atMs),
    metric_type: x.type === 'counter' ? 'COUNTER' : 'GAUGE',
    label_values: x.labelValues,
    value: { value: String(x.value) },
  };
}

export function runtimeService(
  log: Logger,
  runtime: Runtime,
  pods: PodManager,
  streams: StreamServer,
  definition: ServiceDefinition,
): UntypedServiceImplementation {
  // Each list once, for its List* call and its Stream* sibling.
  type Filtered<F extends (f: never) => unknown> = { filter?: Parameters<F>[0] };
  const sandboxItems = async (req: Filtered<typeof sandboxFilter>) => {
    const filter = sandboxFilter(req.filter ?? null);
    return filter === NO_MATCH ? [] : listPodSandboxes(pods, filter).map(wirePodSandbox);
  };
  const containerItems = async (req: Filtered<typeof containerFilter>) => {
    const filter = containerFilter(req.filter ?? null);
    return filter === NO_MATCH ? [] : listContainers(pods, filter).map(wireContainer);
  };
  const containerStatsItems = async (req: Filtered<typeof containerStatsFilter>) => (await listContainerStats(pods, containerStatsFilter(req.filter ?? null))).map(wireContainerStats);
  const sandboxStatsItems = async (req: Filtered<typeof sandboxStatsFilter>) => (await listPodSandboxStats(pods, sandboxStatsFilter(req.filter ?? null))).map(wirePodSandboxStats);

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
      const st = podSandboxStatus(pods, req.pod_sandbox_id, req.verbose);
      return {
        status: wirePodSandboxStatus(st.sandbox, st.ips),
        info: st.info,
        containers_statuses: st.containers.map(wireContainerStatus),
        timestamp: st.timestamp,
      };
    }),

    ListPodSandbox: unary(log, 'ListPodSandbox', async (req) => ({ items: await sandboxItems(req) })),

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

    ListContainers: unary(log, 'ListContainers', async (req) => ({ containers: await containerItems(req) })),

    ContainerStatus: unary(log, 'ContainerStatus', async (req) => {
      const st = await containerStatus(pods, req.container_id, req.verbose);
      return { status: wireContainerStatus(st.container), info: st.info };
    }),

    ExecSync: unary(log, 'ExecSync', async (req) => {
      const r = await execSync(pods, req.container_id, req.cmd, Number(req.timeout));
      return { stdout: r.stdout, stderr: r.stderr, exit_code: r.exitCode };
    }),

    Exec: unary(log, 'Exec', async (req) => ({
      url: execContainer(pods, streams, { containerId: req.container_id, cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }),
    })),

    UpdateContainerResources: unary(log, 'UpdateContainerResources', async (req) => {
      await updateContainerResources(pods, req.container_id, req.linux);
      return {};
    }),

    GetContainerEvents: containerEventsHandler(log, pods),

    // The Stream* siblings of the List* calls: the same lists, in batches (rpc.ts listStream).
    StreamPodSandboxes: listStream(log, 'StreamPodSandboxes', 'pod_sandboxes', sandboxItems),
    StreamContainers: listStream(log, 'StreamContainers', 'containers', containerItems),
    StreamContainerStats: listStream(log, 'StreamContainerStats', 'container_stats', containerStatsItems),
    StreamPodSandboxStats: listStream(log, 'StreamPodSandboxStats', 'pod_sandbox_stats', sandboxStatsItems),

    UpdatePodSandboxResources: unary(log, 'UpdatePodSandboxResources', async (req) => {
      await updatePodSandboxResources(pods, req.pod_sandbox_id, req.overhead, req.resources);
      return {};
    }),

    Attach: unary(log, 'Attach', async (req) => ({
      url: attachContainer(pods, streams, { containerId: req.container_id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }),
    })),

    PortForward: unary(log, 'PortForward', async (req) => ({ url: portForward(pods, streams, req.pod_sandbox_id, req.port) })),

    ContainerStats: unary(log, 'ContainerStats', async (req) => ({ stats: wireContainerStats(await containerStats(pods, req.container_id)) })),
    ListContainerStats: unary(log, 'ListContainerStats', async (req) => ({ stats: await containerStatsItems(req) })),
    PodSandboxStats: unary(log, 'PodSandboxStats', async (req) => ({ stats: wirePodSandboxStats(await podSandboxStats(pods, req.pod_sandbox_id)) })),
    ListPodSandboxStats: unary(log, 'ListPodSandboxStats', async (req) => ({ stats: await sandboxStatsItems(req) })),

    // The kubelet's /metrics/cadvisor for VM pods (PodAndContainerStatsFromCRI): pod/sandbox-metrics.ts.
    ListMetricDescriptors: unary(log, 'ListMetricDescriptors', async () => ({
      descriptors: metricDescriptors().map((d) => ({ name: d.name, help: d.help, label_keys: d.labelKeys })),
    })),
    ListPodSandboxMetrics: unary(log, 'ListPodSandboxMetrics', async () => ({
      pod_metrics: (await listPodSandboxMetrics(pods)).map((p) => ({
        pod_sandbox_id: p.podSandboxId,
        metrics: p.metrics.map(wireMetric),
        container_metrics: p.containers.map((c) => ({ container_id: c.containerId, metrics: c.metrics.map(wireMetric) })),
      })),
    })),

    ReopenContainerLog: unary(log, 'ReopenContainerLog', async (req) => {
      await reopenContainerLog(pods, req.container_id);
      return {};
    }),

    Version: unary(log, 'Version', async (): Promise<VersionResponse> => ({
      version: CRI_VERSION,
      runtime_name: RUNTIME_NAME,
      runtime_version: RUNTIME_VERSION,
      runtime_api_version: RUNTIME_API_VERSION,
    })),

    // Node-wide: runtime/runtime.ts. What vmlet does not offer (user namespaces, recursive
    // read-only mounts, supplemental groups policy) is said here, as the wire asks for it.
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
