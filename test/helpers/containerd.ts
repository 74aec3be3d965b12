// A real containerd (Debian's 1.6, CRI plugin, runc) of the test's own: temp root, state,
// socket and CNI config, cgroupfs, docker.io mirrored to the test registry, a pause image
// pushed there. The downstream of a converged vmlet in tests (src/proxy/).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Client } from '@grpc/grpc-js';
import type { RuntimeServiceClient } from '../../src/gen/runtime/v1/RuntimeService.js';
import type { ImageServiceClient } from '../../src/gen/runtime/v1/ImageService.js';
import { call, clients, tempDir } from './vmlet.js';
import { testImages, type TestRegistry } from './registry.js';
import { waitFor } from './wait.js';

export const CONTAINERD_BIN = '/usr/bin/containerd';
export const RUNC_BIN = '/usr/bin/runc';
/** containerd's CRI plugin takes one CNI bin dir; Debian's plugins live here. */
export const CNI_BIN_DIR = '/usr/lib/cni';
/** What the kubelet's default sandbox image would be, served by the test registry's mirror. */
export const PAUSE_IMAGE = 'docker.io/library/pause:3.6';

export interface TestContainerd {
  dir: string;
  socket: string;
  /** unix:///…/containerd.sock, as a CRI endpoint is written. */
  endpoint: string;
  logFile: string;
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  /** The daemon's pid (changes on restartDaemon). */
  pid(): number | undefined;
  /** Stops only the daemon (SIGTERM); its shims and containers keep running, as on a real node. */
  stopDaemon(): Promise<void>;
  /** Starts the daemon again on the same root, state and socket. */
  restartDaemon(): Promise<void>;
  /** Removes every pod, stops the daemon and any shim it left, unmounts, deletes the temp dir. */
  stop(): Promise<void>;
}

export interface ContainerdOptions {
  registry: TestRegistry;
  /** 'overlayfs' (default) or 'native'. */
  snapshotter?: string;
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * A pause image for the sandbox: the test busybox rootfs image with a long-running entrypoint
 * (its own Cmd, /bin/sh, exits at once on a closed stdin, and the sandbox would go NOTREADY).
 * Written as an OCI layout next to the rootfs one, pushed as library/pause:3.6.
 */
export async function pushPauseImage(reg: TestRegistry): Promise<string> {
  const src = testImages().rootfs.layout;
  const dir = tempDir('vmlet-pause-');
  try {
    cpSync(src, dir, { recursive: true });
    const blob = (digest: string) => join(dir, 'blobs/sha256', digest.replace(/^sha256:/, ''));
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; size: number }[] };
    const entry = index.manifests[0]!;
    const manifest = JSON.parse(readFileSync(blob(entry.digest), 'utf8')) as { config: { digest: string; size: number } };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as { config: Record<string, unknown> };
    config.config = { ...config.config, Entrypoint: ['/bin/sleep', '2147483647'], Cmd: null, User: '65535' };
    const configBytes = Buffer.from(JSON.stringify(config));
    manifest.config = { ...manifest.config, digest: sha256(configBytes), size: configBytes.length };
    writeFileSync(blob(manifest.config.digest), configBytes);
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    entry.digest = sha256(manifestBytes);
    entry.size = manifestBytes.length;
    writeFileSync(blob(entry.digest), manifestBytes);
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    await execa('skopeo', ['--insecure-policy', 'copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${dir}:latest`, `docker://${reg.host}/library/pause:3.6`]);
    return PAUSE_IMAGE;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function writeConfig(dir: string, reg: TestRegistry, snapshotter: string): string {
  const cniDir = join(dir, 'cni');
  mkdirSync(cniDir, { recursive: true });
  writeFileSync(
    join(cniDir, '10-containerd-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'containerd-test',
      plugins: [
        { type: 'bridge', bridge: 'ctrtest0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.251.0.0/24' }]], dataDir: join(dir, 'ipam') } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  const q = (s: string) => JSON.stringify(s);
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  const file = join(dir, 'config.toml');
  writeFileSync(
    file,
    `version = 2
root = ${q(join(dir, 'root'))}
state = ${q(join(dir, 'state'))}
plugin_dir = ""
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(join(dir, 'containerd.sock'))}

[ttrpc]
  address = ${q(join(dir, 'containerd.sock.ttrpc'))}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(dir, 'opt'))}

[${cri}]
  sandbox_image = ${q(PAUSE_IMAGE)}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

[${cri}.containerd]
  snapshotter = ${q(snapshotter)}
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  BinaryName = ${q(RUNC_BIN)}
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = ${q(CNI_BIN_DIR)}
  conf_dir = ${q(cniDir)}

[${cri}.registry.mirrors."docker.io"]
  endpoint = [${q(reg.url)}]

[${cri}.registry.mirrors.${q(reg.host)}]
  endpoint = [${q(reg.url)}]

[${cri}.registry.configs.${q(reg.host)}.tls]
  insecure_skip_verify = true
`,
  );
  return file;
}

// Daemons still running when the test process exits are killed (a crashed test must not
// leave a containerd behind).
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** Pids of the shims serving this containerd (their command line names its socket). */
function shimPids(socket: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.includes('containerd-shim') && cmd.includes(socket)) pids.push(Number(name));
    } catch {
      // gone already
    }
  }
  return pids;
}

export async function startContainerd(opts: ContainerdOptions): Promise<TestContainerd> {
  for (const bin of [CONTAINERD_BIN, RUNC_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} missing: run node-install/install.sh --skip-vmlet --with-test-deps`);
  }
  await pushPauseImage(opts.registry);
  const dir = tempDir('vmlet-containerd-');
  const socket = join(dir, 'containerd.sock');
  const endpoint = `unix://${socket}`;
  const logFile = join(dir, 'containerd.log');
  const config = writeConfig(dir, opts.registry, opts.snapshotter ?? 'overlayfs');
  const c = clients(socket);
  let proc: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();

  async function startDaemon(): Promise<void> {
    const log = openSync(logFile, 'a');
    const p = spawn(CONTAINERD_BIN, ['--config', config, '--log-level', 'info'], { stdio: ['ignore', log, log] });
    closeSync(log);
    running.add(p);
    proc = p;
    exited = new Promise((resolve) => {
      p.once('exit', (code) => resolve(code));
      p.once('error', (err) => resolve(err.message));
    });
    await Promise.race([
      waitFor(`containerd CRI on ${socket}`, async () => {
        if (!existsSync(socket)) return false;
        return call(c.runtime, 'Version', {}).then(() => true, () => false);
      }, { timeoutMs: 30_000, intervalMs: 100 }),
      exited.then((code) => {
        throw new Error(`containerd exited (${String(code)}) before serving; log: ${readFileSync(logFile, 'utf8').slice(-3000)}`);
      }),
    ]);
  }

  async function stopDaemon(): Promise<void> {
    const p = proc;
    if (!p) return;
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    running.delete(p);
    proc = undefined;
  }

  await startDaemon();
  return {
    dir, socket, endpoint, logFile, ...c,
    pid: () => proc?.pid,
    stopDaemon,
    restartDaemon: async () => {
      await stopDaemon();
      await startDaemon();
    },
    async stop() {
      if (proc) {
        // Pods first, so their netns, CNI attachments and mounts go the ordinary way.
        const pods = await call<object, { items: { id: string }[] }>(c.runtime, 'ListPodSandbox', {}).catch(() => ({ items: [] }));
        for (const pod of pods.items) {
          await call(c.runtime, 'StopPodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
          await call(c.runtime, 'RemovePodSandbox', { pod_sandbox_id: pod.id }).catch(() => undefined);
        }
      }
      (c.runtime as unknown as Client).close();
      (c.image as unknown as Client).close();
      await stopDaemon();
      for (const pid of shimPids(socket)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
      // Whatever is still mounted under our root (snapshots, shm), deepest first.
      const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(dir));
      for (const m of mounts.sort((a, b) => b.length - a.length)) await execa('umount', ['-l', m]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
