// `vmlet vnc <pod> [--listen ADDR]`: a VM-image pod's VNC display (annotation vmlet.io/vnc) on a
// local TCP port, for a VNC client. The display is a unix socket QEMU listens on in the pod's
// root-only state dir (src/vm/vnc-socket.ts); this finds the pod in the state dir's records and
// relays each TCP connection to that socket, byte for byte. Loopback only unless --allow-remote:
// the display has no password or encryption of its own. docs/vnc.md.
import { existsSync } from 'node:fs';
import { createServer, connect, isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from './log.js';
import { PodStateStore, type ContainerRecord, type SandboxRecord } from './pod/records.js';
import { ANNOTATIONS } from './vm/annotations.js';
import { existingVncSocket } from './vm/vnc-socket.js';
import { stopSignal } from './util/stop-signal.js';

/** What the command's user did wrong or what is missing: a message for them and the exit code. */
export class VncError extends Error {
  override name = 'VncError';
  constructor(
    message: string,
    /** 2: usage (a bad flag); 1: the pod, its display or the port. */
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export const DEFAULT_LISTEN = '127.0.0.1:5900';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `PORT` (on 127.0.0.1); HOST an IP address or `localhost`. Port 0: any free port. */
export function parseListen(value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  const raw = m ? (m[1] ?? m[2] ?? '127.0.0.1') : '';
  const host = raw === 'localhost' ? '127.0.0.1' : raw;
  const ipOk = m?.[1] !== undefined ? isIPv6(host) : isIPv4(host);
  if (!m || !(port <= 65535) || !ipOk) {
    throw new VncError(`--listen ${JSON.stringify(value)}: expected HOST:PORT (e.g. ${DEFAULT_LISTEN}), [IPv6]:PORT or PORT, HOST an IP address or localhost, PORT 0–65535`, 2);
  }
  return { host, port };
}

export function isLoopback(host: string): boolean {
  if (isIPv4(host)) return host.startsWith('127.');
  const v6 = host.toLowerCase();
  return v6 === '::1' || /^::ffff:127\./.test(v6);
}

/** The listen address, refused off loopback unless the user also says --allow-remote. */
export function checkListen(value: string, allowRemote: boolean): ListenAddress {
  const a = parseListen(value);
  if (!isLoopback(a.host) && !allowRemote) {
    throw new VncError(
      `--listen ${value}: ${a.host} is not a loopback address, and the VNC display has no password or encryption: anyone who reaches the port gets the VM's console. ` +
        'Keep the default (loopback) and reach it through an SSH tunnel, or add --allow-remote to listen there anyway',
      2,
    );
  }
  return a;
}

export interface VncTarget {
  sandbox: SandboxRecord;
  container: ContainerRecord;
  socket: string;
}

const label = (s: SandboxRecord) => `${s.config.metadata?.namespace ?? '?'}/${s.config.metadata?.name ?? '?'} (${s.id.slice(0, 13)})`;

/**
 * The pod `query` names (its id, an id prefix as crictl takes, its name, or namespace/name; of
 * several pods by that name only the ready ones count: the kubelet's new pod, not the one it
 * replaced) and the VNC socket of its VM.
 * VncError says what is missing: the pod, its VM, the annotation, a running VM.
 */
export async function findVncTarget(stateDir: string, query: string, log: Logger): Promise<VncTarget> {
  const root = join(stateDir, 'pods');
  // loadAll would make the dir: a mistyped --state-dir is an error here, not a new empty dir.
  if (!existsSync(root)) throw new VncError(`no pods: ${root} does not exist (is --state-dir, or the config's stateDir, right?)`);
  const store = new PodStateStore(root, log.child({}, { level: 'silent' })); // set-aside pods are doctor's to report
  let all;
  try {
    all = await store.loadAll();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VncError(`cannot read the pod records in ${root}: ${(err as Error).message}${code === 'EACCES' || code === 'EPERM' ? ' (they are root\'s, as is the VNC socket: run vmlet vnc as root)' : ''}`);
  }
  const q = query.toLowerCase();
  let found = all.sandboxes.filter((s) => {
    const md = s.config.metadata;
    return s.id === q || (/^[0-9a-f]+$/.test(q) && s.id.startsWith(q)) || md?.name === query || `${md?.namespace}/${md?.name}` === query;
  });
  if (found.length > 1) {
    const exact = found.filter((s) => s.id === q);
    const ready = found.filter((s) => s.state === 'ready');
    if (exact.length === 1) found = exact;
    else if (ready.length > 0) found = ready;
  }
  if (found.length === 0) throw new VncError(`no pod ${JSON.stringify(query)} in ${root} (by id, id prefix, name or namespace/name)`);
  if (found.length > 1) throw new VncError(`${JSON.stringify(query)} names ${found.length} pods: ${found.map(label).join(', ')}; give its id`);
  const sandbox = found[0]!;
  const pod = label(sandbox);
  if (sandbox.kind === 'sandboxed') {
    throw new VncError(`pod ${pod} is a sandboxed pod (its containers are processes in vmlet's own VM, which has no display): ${ANNOTATIONS.vnc} is for VM-image pods`);
  }
  const containers = all.containers.filter((c) => c.sandboxId === sandbox.id && c.kind !== 'sandboxed').sort((a, b) => (BigInt(a.createdAt) < BigInt(b.createdAt) ? 1 : -1));
  const container = containers[0];
  if (!container) throw new VncError(`pod ${pod} has no VM yet: its container is created by CreateContainer`);
  if (container.settings?.vnc !== true) {
    throw new VncError(`pod ${pod} has no VNC display: its VM (container ${container.id.slice(0, 13)}) was created without the annotation ${ANNOTATIONS.vnc}: "true" (read at CreateContainer: recreate the pod with it)`);
  }
  if (container.state !== 'running') {
    throw new VncError(`pod ${pod}: its VM is not running (container ${container.id.slice(0, 13)} is ${container.state}), so its VNC display is not there`);
  }
  return { sandbox, container, socket: existingVncSocket(store.sandboxDir(sandbox.id), sandbox.id) };
}

/** One connection to the display, to check it answers before a port is opened for it. */
function probe(socket: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
}

export interface VncProxy {
  server: Server;
  address: ListenAddress;
  close(): Promise<void>;
}

/** Listens on `listen` and relays every connection to the unix socket, each to a connection of its own. */
export async function startVncProxy(socket: string, listen: ListenAddress, log: Logger): Promise<VncProxy> {
  try {
    await probe(socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'nothing listens there: the VM has stopped (or is not started yet)' : (err as Error).message;
    throw new VncError(`VNC socket ${socket}: ${why}`);
  }
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const peer = `${client.remoteAddress}:${client.remotePort}`;
    const up = connect(socket);
    open.add(client).add(up);
    client.setNoDelay(true);
    log.info({ peer, socket }, 'vnc client connected');
    let ended = false;
    const end = (err?: Error) => {
      if (ended) return;
      ended = true;
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
      const fields = { peer, bytesToDisplay: up.bytesWritten, bytesToClient: client.bytesWritten };
      if (err) log.warn({ ...fields, err: err.message }, 'vnc client disconnected on an error');
      else log.info(fields, 'vnc client disconnected');
    };
    client.pipe(up);
    up.pipe(client);
    for (const s of [client, up]) {
      s.on('error', end);
      s.on('close', () => end());
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const addr = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
      reject(new VncError(err.code === 'EADDRINUSE' ? `${addr} is in use (another vmlet vnc?): choose another port with --listen` : `cannot listen on ${addr}: ${err.message}`));
    });
    server.listen({ host: listen.host, port: listen.port }, resolve);
  });
  const bound = server.address();
  const address = typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : listen;
  return {
    server,
    address,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface VncCommand {
  stateDir: string;
  pod: string;
  listen: string;
  allowRemote: boolean;
}

/** The command: finds the display, relays it until SIGINT or SIGTERM; the exit code. */
export async function runVnc(cmd: VncCommand, log: Logger, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const listen = checkListen(cmd.listen, cmd.allowRemote);
  const t = await findVncTarget(cmd.stateDir, cmd.pod, log);
  const proxy = await startVncProxy(t.socket, listen, log.child({ podSandboxId: t.sandbox.id, containerId: t.container.id }));
  const a = proxy.address;
  const shown = a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  out.write(`vmlet vnc: pod ${label(t.sandbox)}, domain ${t.container.domainName}: VNC display on ${shown} (e.g. vncviewer ${a.host.includes(':') ? `[${a.host}]` : a.host}::${a.port}); Ctrl-C ends it\n`);
  if (!isLoopback(a.host)) out.write('vmlet vnc: warning: not loopback, and the display has no password: anyone who reaches this port gets the console\n');
  await stopSignal(log);
  await proxy.close();
  return 0;
}
