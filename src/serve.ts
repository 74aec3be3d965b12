// `vmlet serve`: start the runtime and the CRI server; stop both cleanly on SIGTERM/SIGINT.
// VMs are never stopped here: restarting vmlet must leave them running.
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { startCriServer } from './cri/server.js';
import { Runtime } from './runtime/runtime.js';
import { ImageStore } from './image/store.js';
import { join } from 'node:path';
import { RUNTIME_VERSION } from './version.js';

export async function serve(config: Config, configFile: string | undefined, log: Logger): Promise<number> {
  log.info({ version: RUNTIME_VERSION, configFile: configFile ?? null, pid: process.pid }, 'vmlet starting');
  const runtime = new Runtime(config, log);
  await runtime.start();
  const images = new ImageStore(join(config.stateDir, 'images'), config.registries, log);
  let server;
  try {
    await images.init();
    server = await startCriServer(config.socket, { runtime, images, containerDir: join(config.stateDir, 'pods') }, log);
  } catch (err) {
    log.fatal({ socket: config.socket, err: (err as Error).message }, 'cannot serve CRI');
    await runtime.stop();
    return 1;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({ signal }, 'shutting down: finishing in-flight calls');
  await server.shutdown();
  await runtime.stop();
  log.info('vmlet stopped');
  return 0;
}
