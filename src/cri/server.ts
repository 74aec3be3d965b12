// The gRPC server on a unix socket, with both CRI services registered.
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
import { discardBindDir, prepareSocketPath, publishSocket, removeSocket, resolveGroup, SOCKET_MODE } from './socket.js';
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

export interface SocketOptions {
  /** Group of the socket (config socketGroup): a name or a gid; default 0 (root). */
  group?: string | number;
}

export async function startCriServer(socket: string, services: Services, log: Logger, opts: SocketOptions = {}): Promise<CriServer> {
  const gid = await resolveGroup(opts.group ?? 0);
  const { replacedStale, bindPath, unsafeDir } = await prepareSocketPath(socket);
  if (replacedStale) log.warn({ socket }, 'removed stale socket left by an earlier run');
  if (unsafeDir) log.warn({ socket, problem: unsafeDir }, 'the CRI socket directory is writable by other users');
  const cri = loadCri().runtime.v1;
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  });
  // With a downstream CRI configured, pods of other handlers go there (src/proxy/).
  const routed = converge(log, services.runtime.config, services.pods, {
    runtime: runtimeService(log, services.runtime, services.pods, services.streams, cri.RuntimeService.service),
    image: imageService(log, services.images, services.pods, services.containerDir, cri.ImageService.service),
  });
  server.addService(cri.RuntimeService.service, routed.runtime);
  server.addService(cri.ImageService.service, routed.image);
  // vmlet's own calls (vmlet pull): always vmlet's store, whatever a downstream CRI holds.
  server.addService(adminDefinition, adminService(log, services.images));
  let published;
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${bindPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    // Reachable only once it has its mode and group (socket.ts says why this way).
    published = await publishSocket(bindPath, socket, gid);
  } catch (err) {
    server.forceShutdown();
    routed.close();
    await discardBindDir(bindPath);
    throw err;
  }
  log.info({ socket, mode: SOCKET_MODE.toString(8), gid }, 'CRI server listening');

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
        await removeSocket(published);
      })();
      return closing;
    },
  };
}
