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

export function runtimeService(
  log: Logger,
  runtime: Runtime,
  definition: ServiceDefinition,
): UntypedServiceImplementation {
  const impl: Partial<RuntimeServiceHandlers> = {
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
