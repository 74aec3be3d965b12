// The gRPC server on a unix socket, with both CRI services registered.
import { chmod, rm } from 'node:fs/promises';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Runtime } from '../runtime/runtime.js';
import type { ImageStore } from '../image/store.js';
import type { PodManager } from '../pod/manager.js';
import type { StreamServer } from '../stream/server.js';
import { loadCri } from '../grpc/cri-proto.js';
import { imageService } from './image-service.js';
import { adminService } from './admin-service.js';
import { adminDefinition } from '../grpc/admin-proto.js';
import { runtimeService } from './runtime-service.js';
import { prepareSocketPath } from './socket.js';
import { converge } from '../proxy/router.js';

export interface CriServer {
  /** Stops accepting calls, lets in-flight calls finish (up to graceMs), then removes the socket. */
  shutdown(graceMs?: number): Promise<void>;
}

// Kubelet sends up to 16 MiB messages (e.g. big ListContainers answers); match it.
const MAX_MESSAGE = 16 * 1024 * 1024;

export interface Services {
  runtime: Runtime;
  images: ImageStore;
  pods: PodManager;
  streams: StreamServer;
  /** Where containers' writable state lives (reported by ImageFsInfo as container_filesystems). */
  containerDir: string;
}

export async function startCriServer(socket: string, services: Services, log: Logger): Promise<CriServer> {
  const { replacedStale } = await prepareSocketPath(socket);
  if (replacedStale) log.warn({ socket }, 'removed stale socket left by an earlier run');
  const cri = loadCri().runtime.v1;
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  });
  // With a downstream CRI configured, pods of other handlers go there (src/proxy/).
  const routed = converge(log, services.runtime.config, services.pods, {
    runtime: runtimeService(log, services.runtime, services.pods, services.streams, cri.RuntimeService.service),
    image: imageService(log, services.images, services.containerDir, cri.ImageService.service),
  });
  server.addService(cri.RuntimeService.service, routed.runtime);
  server.addService(cri.ImageService.service, routed.image);
  // vmlet's own calls (vmlet pull): always vmlet's store, whatever a downstream CRI holds.
  server.addService(adminDefinition, adminService(log, services.images));
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  await chmod(socket, 0o660);
  log.info({ socket }, 'CRI server listening');

  let closing: Promise<void> | undefined;
  return {
    shutdown(graceMs = 10_000) {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            log.warn({ graceMs }, 'in-flight calls did not finish in time; closing them');
            server.forceShutdown();
            resolve();
          }, graceMs);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        routed.close();
        await rm(socket, { force: true });
      })();
      return closing;
    },
  };
}
