// The floor any Node.js CRI server starts from: a bare grpc-js server (same proto loader as
// vmlet, its own process) answering each RuntimeService or ImageService method it is given with
// a constant.
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
for (const svc of [cri.RuntimeService.service, cri.ImageService.service]) {
  server.addService(svc, Object.fromEntries(Object.entries(answers).filter(([m]) => m in svc).map(([m, a]) => [m, (_call, cb) => cb(null, a)])));
}
server.bindAsync('unix:' + process.argv[1], ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  console.log('listening');
});
`;

/**
 * The same answers from node:http2 alone, no gRPC library: each call's one message read, decoded
 * and answered with its constant, status 0 in the trailers. What is left of a call in Node.js
 * (its HTTP/2 and the two processes' event loops) once grpc-js's server is taken away.
 */
const HTTP2_SERVER = `
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http2';
import { loadCri } from './dist/grpc/cri-proto.js';
const defs = loadCri().runtime.v1.RuntimeService.service;
const answers = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const server = createServer();
server.on('stream', (stream, headers) => {
  const name = headers[':path'].split('/').pop();
  const def = defs[name];
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    if (!def || !(name in answers)) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
      return;
    }
    def.requestDeserialize(Buffer.concat(chunks).subarray(5));
    const msg = def.responseSerialize(answers[name]);
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    msg.copy(frame, 5);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame);
  });
});
server.listen(process.argv[1], () => console.log('listening'));
`;

export interface FloorServer {
  proc: ChildProcess;
  /** grpc-js RuntimeService and ImageService clients of it. */
  runtime: unknown;
  image: unknown;
  stop(): void;
}

export const VERSION_ANSWER = { version: '0.1.0', runtime_name: 'grpc-js', runtime_version: '0', runtime_api_version: 'v1' };

/**
 * Starts the bare server answering `answers` (method → response object); resolves once it listens.
 * `http2`: the node:http2 one (HTTP2_SERVER) instead of grpc-js's.
 */
export async function startFloorServer(answers: Record<string, unknown>, kind: 'grpc-js' | 'http2' = 'grpc-js'): Promise<FloorServer> {
  const dir = tempDir('vmlet-bench-floor-');
  const socket = join(dir, 'grpc.sock');
  writeFileSync(join(dir, 'answers.json'), JSON.stringify(answers));
  const proc = spawn(process.execPath, ['--input-type=module', '-e', kind === 'http2' ? HTTP2_SERVER : SERVER, socket, join(dir, 'answers.json')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`the bare ${kind} server exited (${code}) before listening`)));
  });
  return {
    proc,
    ...clients(socket),
    stop() {
      proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
