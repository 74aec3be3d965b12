// `vmlet serve`: start the runtime and the CRI server; stop both cleanly on SIGTERM/SIGINT.
// VMs are never stopped here: restarting vmlet must leave them running.
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { startCriServer } from './cri/server.js';
import { Runtime } from './runtime/runtime.js';
import { RUNTIME_VERSION } from './version.js';

export async function serve(config: Config, configFile: string | undefined, log: Logger): Promise<number> {
  log.info({ version: RUNTIME_VERSION, configFile: configFile ?? null, pid: process.pid }, 'vmlet starting');
  const runtime = new Runtime(config, log);
  await runtime.start();
  let server;
  try {
    server = await startCriServer(config.socket, runtime, log);
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
