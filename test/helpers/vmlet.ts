// Starts the real `vmlet serve` (built dist/) on a temporary socket and talks to it with a
// gRPC client generated from proto/api.proto.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadCri } from '../../src/grpc/cri-proto.js';
import type { RuntimeServiceClient } from '../../src/gen/runtime/v1/RuntimeService.js';
import type { ImageServiceClient } from '../../src/gen/runtime/v1/ImageService.js';
import { waitFor } from './wait.js';
import { mountsUnder } from '../../src/util/mountinfo.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'dist/main.js');
export const CNI_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'];

/** Writes a CNI conflist like the installer's default into `dir` (created); returns `dir`. */
export function writeCniConf(dir: string = tempDir('vmlet-cni-')): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, '10-test.conflist');
  writeFileSync(
    file,
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'vmlet-test',
      plugins: [
        { type: 'bridge', bridge: 'vmtest0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.250.0.0/24' }]] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  return dir;
}

export interface VmletProcess {
  dir: string;
  socket: string;
  stateDir: string;
  proc: ChildProcess;
  /** Every line vmlet wrote to stderr (its JSON log), in order. */
  logLines: string[];
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  /** SIGTERM, then wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  args?: string[];
  /** Omit to get a temp CNI dir with a valid config. */
  cniConfDir?: string;
  socket?: string;
  /** YAML for the config file (flags still override it). */
  config?: string;
  /** Reuse a state dir (e.g. to test a restart). */
  stateDir?: string;
  /** Gated annotations the `vmlet` handler's pods may use (config allowedAnnotations.vmlet), e.g. ['vmlet.io/max-memory']. */
  allowAnnotations?: string[];
  /** A command vmlet runs under (its argv is appended), e.g. unshare to give it a mount namespace of its own. */
  wrap?: string[];
  /** The log message startVmlet waits for (default: the CRI socket is served). */
  readyLine?: string;
}

/** The config lines that allow `names` for the vmlet handler ('' for none). */
export function allowAnnotationsConfig(names: readonly string[] | undefined): string {
  return names?.length ? `allowedAnnotations:\n  vmlet: ${JSON.stringify(names)}\n` : '';
}

/** Temp dirs made by this test file; test/setup/cleanup.ts removes them after it, pass or fail. */
export const madeTempDirs = new Set<string>();

export function tempDir(prefix = 'vmlet-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // Searchable (not listable) by others, as /var/lib is: a state dir below it must be reachable
  // for VMs' QEMU, which runs as libvirt's qemu user (vm/qemu-user.ts).
  chmodSync(dir, 0o711);
  madeTempDirs.add(dir);
  return dir;
}

/**
 * Removes the temp dirs tempDir() made (test/setup/cleanup.ts after each test file, benchmarks at
 * their end). One with a mount point under it (a pod's shared dir still bound to a host path
 * after a failure) is kept and named instead: removing through a bind mount would delete the
 * host side's files.
 */
export function removeTempDirs(who = 'test cleanup'): void {
  for (const dir of madeTempDirs) {
    // The image tree's read-only view (<stateDir>/images-ro, for virtiofs) is vmlet's, made once
    // per state dir and left for its VMs: read-only, so unmounting it here is always safe.
    for (const p of mountsUnder(dir)) if (p.endsWith('/images-ro')) spawnSync('umount', ['-l', p]);
    const mounted = mountsUnder(dir);
    if (mounted.length) {
      console.warn(`${who}: kept ${dir}: still mounted under it: ${mounted.join(', ')}`);
      continue;
    }
    rmSync(dir, { recursive: true, force: true });
    madeTempDirs.delete(dir);
  }
}

export function clients(socket: string): { runtime: RuntimeServiceClient; image: ImageServiceClient } {
  const cri = loadCri().runtime.v1;
  return {
    runtime: new cri.RuntimeService(`unix:${socket}`, credentials.createInsecure()),
    image: new cri.ImageService(`unix:${socket}`, credentials.createInsecure()),
  };
}

export async function startVmlet(opts: StartOptions = {}): Promise<VmletProcess> {
  const dir = tempDir();
  const socket = opts.socket ?? join(dir, 'run', 'vmlet.sock');
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const cniConfDir = opts.cniConfDir ?? writeCniConf(join(dir, 'cni'));
  const args = [
    MAIN, 'serve',
    '--config', join(dir, 'none.yaml'),
    '--socket', socket,
    '--state-dir', stateDir,
    '--cni-conf-dir', cniConfDir,
    ...CNI_BIN_DIRS.flatMap((d) => ['--cni-bin-dir', d]),
    '--log-level', 'debug',
    ...(opts.args ?? []),
  ];
  writeFileSync(join(dir, 'none.yaml'), (opts.config ?? '# empty: defaults and flags only\n') + allowAnnotationsConfig(opts.allowAnnotations));
  const argv = [...(opts.wrap ?? []), process.execPath, ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const logLines: string[] = [];
  let buf = '';
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    logLines.push(...parts);
  });
  proc.stdout.resume();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const died = exited.then((code) => {
    throw new Error(`vmlet exited with ${code} before listening:\n${logLines.join('\n')}`);
  });
  const ready = opts.readyLine
    ? waitFor(`vmlet to log "${opts.readyLine}"`, () => logLines.some((l) => l.includes(opts.readyLine!)), { timeoutMs: 20_000, intervalMs: 5 })
    : waitFor(`vmlet to listen on ${socket}`, () => existsSync(socket) && logLines.some((l) => l.includes('CRI server listening')), { timeoutMs: 20_000 });
  await Promise.race([died, ready]);
  died.catch(() => undefined); // it may still reject later, on a normal stop
  const c = clients(socket);
  return {
    dir, socket, stateDir, proc, logLines, ...c,
    async stop(signal = 'SIGTERM') {
      (c.runtime as unknown as Client).close();
      (c.image as unknown as Client).close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** How a vmlet process ended and its last log lines: the message of a check on its exit. */
export function exitReport(v: VmletProcess): string {
  return `vmlet exit code ${v.proc.exitCode}, signal ${v.proc.signalCode}; its last log lines:\n${v.logLines.slice(-15).join('\n')}`;
}

/** Promise form of a unary client call. */
export function call<Req, Res>(
  client: unknown,
  method: string,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as Record<string, (r: Req, cb: (err: ServiceError | null, res: Res) => void) => void>)[method]!(req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export function parseLogLines(lines: string[]): Record<string, unknown>[] {
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The error a call that must fail failed with (the test fails if it succeeds). */
export function failure(p: Promise<unknown>): Promise<ServiceError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: ServiceError) => err,
  );
}
