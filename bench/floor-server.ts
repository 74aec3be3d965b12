// The floor any Node.js CRI server starts from: a bare grpc-js server (same proto loader as
// vmlet, its own process) answering each RuntimeService method it is given with a constant.
// cri-latency.ts asks it Version; density.ts gives it vmlet's own List*/Status answers, so the
// same polling under the same load has a reference.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clients, ROOT, tempDir } from '../test/helpers/vmlet.js';

/** Run with node --input-type=module -e, cwd the repository; argv[1] its socket, argv[2] a JSON file of answers by method. */
const SERVER = `
import { readFileSync } from 'node:fs';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadCri } from './dist/grpc/cri-proto.js';
const cri = loadCri().runtime.v1;
const answers = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const server = new Server({ 'grpc.max_send_message_length': 16 * 1024 * 1024 });
server.addService(cri.RuntimeService.service, Object.fromEntries(Object.entries(answers).map(([m, a]) => [m, (_call, cb) => cb(null, a)])));
server.bindAsync('unix:' + process.argv[1], ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  console.log('listening');
});
`;

export interface FloorServer {
  proc: ChildProcess;
  /** A grpc-js RuntimeService client of it. */
  runtime: unknown;
  stop(): void;
}

export const VERSION_ANSWER = { version: '0.1.0', runtime_name: 'grpc-js', runtime_version: '0', runtime_api_version: 'v1' };

/** Starts the bare server answering `answers` (method → response object); resolves once it listens. */
export async function startFloorServer(answers: Record<string, unknown>): Promise<FloorServer> {
  const dir = tempDir('vmlet-bench-floor-');
  const socket = join(dir, 'grpc.sock');
  writeFileSync(join(dir, 'answers.json'), JSON.stringify(answers));
  const proc = spawn(process.execPath, ['--input-type=module', '-e', SERVER, socket, join(dir, 'answers.json')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`the bare grpc-js server exited (${code}) before listening`)));
  });
  return {
    proc,
    runtime: clients(socket).runtime,
    stop() {
      proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
