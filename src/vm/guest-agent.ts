// A client of qemu-guest-agent's JSON protocol on the unix socket QEMU listens on for the VM's
// org.qemu.guest_agent.0 port (domain-xml.ts renders the channel; libvirt does not know about it,
// so nothing else holds the socket).
//
// The protocol: one JSON object per request ({"execute": …, "arguments": …}), one JSON object per
// reply ({"return": …} or {"error": {"class", "desc"}}), in order, with no request ids. So:
//  - one request at a time per connection, and one connection per VM: QEMU serves a single client
//    and listens with a backlog of 1, so a second connect gets EAGAIN or waits until the first
//    client leaves. Requests to one VM are queued here; guest-exec is asynchronous in the guest,
//    so concurrent execs still run concurrently there (only their short requests are serialised).
//  - after every (re)connect, resynchronise: send 0xFF (the agent drops any half-read request and
//    answers the byte with a parse error), then guest-sync-delimited with a random id. The agent
//    answers with a 0xFF byte and then the id; everything before that byte is stale: that parse
//    error, or replies meant for an earlier client (one that left, or a vmlet that was killed,
//    before reading them).
//  - a reply that does not come within the reply timeout desynchronises the connection: it is
//    closed, and the next request reconnects and resynchronises.
// The connection is closed after a while without requests, so it does not hold QEMU's only client
// slot (or vmlet's event loop) forever.
// The guest is not trusted: a reply longer than MAX_AGENT_FRAME_BYTES is dropped as it streams
// in (the request waiting for it fails, the connection is closed and resynchronised on the next
// request), and replies nobody asked for are not kept.
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { VmletError, failedPrecondition } from '../errors.js';
import { AgentFrameParser, MAX_AGENT_FRAME_BYTES, type AgentFrame } from './guest-agent-frames.js';
import type { Logger } from '../log.js';
import { searchableDir, socketDirFor, type QemuIdentity } from './qemu-user.js';

/** Longest unix socket path: sun_path is 108 bytes including the terminating NUL. */
export const UNIX_PATH_MAX = 107;
/** Where agent sockets go when the container's state dir is too deep for a socket path. */
export const AGENT_SOCKET_FALLBACK_DIR = '/run/vmlet/qga';

/** A socket QEMU creates: its path, the directory of its own it goes in, and whether that is the fallback under /run/vmlet. */
export interface QemuSocket {
  path: string;
  dir: string;
  fallback: boolean;
}

/**
 * The agent socket of a container: `<container dir>/qemu/qga.sock` when that fits in a unix
 * socket path, else `/run/vmlet/qga/<container id>/qga.sock`. Each in a directory of QEMU's own
 * (qemu-user.ts socketDirFor): QEMU creates the socket, and may run unprivileged. With 64-hex
 * sandbox and container ids the container dir (`<stateDir>/pods/<64>/containers/<64>`) is at
 * least 148 bytes, so in practice the fallback is taken; the rule stays in case ids or the layout
 * get shorter. A pure function of the container's dir and id, so exec finds the socket create chose.
 */
export function agentSocketPath(containerDir: string, containerId: string): QemuSocket {
  return qemuSocketPath(containerDir, 'qga.sock', AGENT_SOCKET_FALLBACK_DIR, containerId);
}

/** The socket exec dials: agentSocketPath's, or where a VM started while QEMU ran as root still has it. */
export function existingAgentSocket(containerDir: string, containerId: string): string {
  return existingSocket(agentSocketPath(containerDir, containerId).path, legacySocketPath(containerDir, 'qga.sock', AGENT_SOCKET_FALLBACK_DIR, containerId));
}

/**
 * A socket QEMU creates (the agent's, VNC's): `<dir>/qemu/<file>` when that fits in a unix
 * socket path, else `<fallbackRoot>/<id>/<file>`; a directory of QEMU's own either way.
 */
export function qemuSocketPath(dir: string, file: string, fallbackRoot: string, id: string): QemuSocket {
  const own = join(dir, 'qemu');
  if (Buffer.byteLength(join(own, file)) <= UNIX_PATH_MAX) return { path: join(own, file), dir: own, fallback: false };
  const fallback = join(fallbackRoot, id);
  return { path: join(fallback, file), dir: fallback, fallback: true };
}

/** Where vmlet put such a socket while QEMU ran as root: `<dir>/<file>` when it fits, else `<fallbackRoot>/<id>.sock`. */
export function legacySocketPath(dir: string, file: string, fallbackRoot: string, id: string): string {
  const inDir = join(dir, file);
  return Buffer.byteLength(inDir) <= UNIX_PATH_MAX ? inDir : join(fallbackRoot, `${id}.sock`);
}

/** `now` if it is there, else `legacy` if that is (a VM still running from before), else `now`. */
export function existingSocket(now: string, legacy: string): string {
  if (existsSync(now)) return now;
  return existsSync(legacy) ? legacy : now;
}

let noted = false;

/**
 * Makes the socket's dir, QEMU's user's (QEMU creates the socket at start), and says once per
 * process how the channel is made, so the libvirt log's "tainted: custom-argv" is explained.
 */
export async function prepareAgentSocketDir(socket: QemuSocket, owner: QemuIdentity, log: Logger): Promise<void> {
  if (socket.fallback) await searchableDir(AGENT_SOCKET_FALLBACK_DIR);
  await socketDirFor(socket.dir, owner);
  if (noted) return;
  noted = true;
  log.info(
    { socketDir: socket.fallback ? AGENT_SOCKET_FALLBACK_DIR : '<container dir>/qemu' },
    'guest-agent channels are QEMU arguments libvirt does not manage (libvirt logs each domain as tainted: custom-argv)' +
      (socket.fallback ? `; sockets go to ${AGENT_SOCKET_FALLBACK_DIR}: container state dir paths exceed the ${UNIX_PATH_MAX}-byte unix socket limit` : ''),
  );
}

/** An `{"error": …}` reply: the agent understood the request and refused or failed it. */
export class GuestAgentError extends VmletError {
  override name = 'GuestAgentError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super('failed-precondition', `qemu-guest-agent: ${command} failed: ${desc} (${errorClass})`);
  }
}

/** Process-wide counts of hostile or broken agent output (for figures and tests). */
export const guestAgentCounters = { oversizedReplies: 0 };

export interface GuestAgentOptions {
  /** Giving up on connect() (ms). A unix connect either succeeds or fails at once; this is a backstop. */
  connectTimeoutMs?: number;
  /** Longest silence while waiting for a reply, the resynchronisation's included (ms). */
  replyTimeoutMs?: number;
  /** Close the connection after this long without requests (ms). */
  idleMs?: number;
  /** Largest reply kept (bytes); default MAX_AGENT_FRAME_BYTES. */
  maxReplyBytes?: number;
  log?: Logger;
}

/** One VM's agent: a lazily (re)opened connection and a queue of requests. */
export class GuestAgent {
  private sock: Socket | undefined;
  private parser: AgentFrameParser;
  /** Frames read but not yet asked for, and the one reader waiting for the next frame. */
  private inbox: AgentFrame[] = [];
  private reader: { resolve(f: AgentFrame): void; reject(e: Error): void } | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private failures = 0;
  private lastFailure: Error | undefined;
  private lastDataAt = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly connectTimeoutMs: number;
  private readonly replyTimeoutMs: number;
  private readonly idleMs: number;
  private readonly maxReplyBytes: number;
  /** Replies of this agent dropped for being longer than the cap. */
  oversizedReplies = 0;
  /** Called when the agent is idle and disconnected (the pool forgets it). */
  onIdleClose: (() => void) | undefined;

  constructor(
    readonly socketPath: string,
    private readonly opts: GuestAgentOptions = {},
  ) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
    this.replyTimeoutMs = opts.replyTimeoutMs ?? 5000;
    this.idleMs = opts.idleMs ?? 30_000;
    this.maxReplyBytes = opts.maxReplyBytes ?? MAX_AGENT_FRAME_BYTES;
    this.parser = new AgentFrameParser(this.maxReplyBytes);
  }

  /** Sends one command and returns its `return` value; queued behind earlier requests. */
  request<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    this.pending++;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.sock?.ref();
    // Requests queued behind one that found no agent (or no reply) fail with it, at once,
    // rather than each waiting out its own timeout: 20 piled-up probes would take 100 s.
    const epoch = this.failures;
    const run = this.tail.then(() => {
      if (this.failures !== epoch && this.lastFailure) throw this.lastFailure;
      return this.send(command, args);
    });
    this.tail = run.catch(() => undefined);
    return run.finally(() => {
      if (--this.pending === 0) this.idle();
    }) as Promise<T>;
  }

  async ping(): Promise<void> {
    await this.request('guest-ping');
  }

  close(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.drop(failedPrecondition(`qemu-guest-agent connection on ${this.socketPath} closed`));
  }

  private idle(): void {
    this.sock?.unref();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.pending > 0) return;
      this.drop(failedPrecondition(`qemu-guest-agent connection on ${this.socketPath} closed (idle)`));
      this.onIdleClose?.();
    }, this.idleMs);
    this.idleTimer.unref();
  }

  private async send(command: string, args: Record<string, unknown> | undefined): Promise<unknown> {
    if (!this.sock) {
      try {
        await this.open();
      } catch (err) {
        this.failed(err as Error);
        throw err;
      }
    }
    this.sock!.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const msg = `qemu-guest-agent on ${this.socketPath} stopped answering (no reply to ${command} within ${this.replyTimeoutMs / 1000} s)`;
    for (;;) {
      const f = await this.nextFrame(msg);
      if (f.kind === 'reply') return unwrap(command, f.value);
    }
  }

  private async open(): Promise<void> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ path: this.socketPath });
      const timer = setTimeout(() => {
        s.destroy();
        reject(noAgent(this.socketPath, `connect took longer than ${this.connectTimeoutMs / 1000} s`));
      }, this.connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(connectError(this.socketPath, err));
      });
    });
    this.sock = sock;
    this.inbox = [];
    this.parser = new AgentFrameParser(this.maxReplyBytes);
    this.parser.expectDelimiter();
    sock.on('data', (chunk: Buffer) => this.onData(sock, chunk));
    sock.on('error', (err) => this.opts.log?.debug({ socket: this.socketPath, err: err.message }, 'guest-agent connection error'));
    sock.on('close', () => {
      if (this.sock === sock) this.drop(failedPrecondition(`qemu-guest-agent connection on ${this.socketPath} closed (VM stopped?)`));
    });
    // Resynchronise: 0xFF makes the agent drop a half-read request; our reply is the first one
    // right after a delimiter carrying our id. Anything else is stale (an earlier client's).
    const id = randomInt(1, 2 ** 31);
    sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } }) + '\n')]));
    const msg = `guest runs no qemu-guest-agent (no answer on ${this.socketPath} within ${this.replyTimeoutMs / 1000} s)`;
    let delimited = false;
    for (;;) {
      const f = await this.nextFrame(msg);
      if (f.kind === 'delimiter') delimited = true;
      else if (f.kind === 'reply' && delimited && (f.value as { return?: unknown } | null)?.return === id) return;
      else {
        delimited = false;
        this.opts.log?.debug({ socket: this.socketPath }, 'guest-agent: stale reply dropped');
      }
    }
  }

  /**
   * The next delimiter or reply. When the agent sends nothing for the reply timeout the
   * connection is closed (it is out of step). Bytes arriving count: a 16 MiB output takes
   * seconds to cross virtio-serial under TCG (~5 MB/s measured).
   */
  private nextFrame(timeoutMsg: string): Promise<AgentFrame> {
    const f = this.inbox.shift();
    if (f) return Promise.resolve(f);
    if (!this.sock) return Promise.reject(failedPrecondition(`qemu-guest-agent connection on ${this.socketPath} closed`));
    const since = Date.now();
    return new Promise<AgentFrame>((resolve, reject) => {
      let timer: NodeJS.Timeout;
      const arm = (ms: number) => {
        timer = setTimeout(() => {
          const quiet = Date.now() - Math.max(since, this.lastDataAt);
          if (quiet < this.replyTimeoutMs) return arm(this.replyTimeoutMs - quiet);
          const err = failedPrecondition(timeoutMsg);
          this.failed(err);
          this.drop(err);
        }, ms);
      };
      arm(this.replyTimeoutMs);
      this.reader = {
        resolve: (fr) => {
          clearTimeout(timer);
          resolve(fr);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  private onData(sock: Socket, chunk: Buffer): void {
    if (this.sock !== sock) return;
    this.lastDataAt = Date.now();
    for (const f of this.parser.push(chunk)) {
      if (f.kind === 'garbage') {
        this.opts.log?.debug({ socket: this.socketPath, text: f.text.slice(0, 200) }, 'guest-agent: unparsable bytes dropped');
        continue;
      }
      if (f.kind === 'oversized') {
        // The rest of that reply may never end: stop reading it here; the next request resyncs.
        this.oversizedReplies++;
        guestAgentCounters.oversizedReplies++;
        this.opts.log?.warn(
          { socket: this.socketPath, limitBytes: f.limit, oversizedReplies: this.oversizedReplies },
          'guest-agent: reply longer than the limit dropped, connection closed',
        );
        const err = failedPrecondition(`qemu-guest-agent on ${this.socketPath} sent a reply longer than ${f.limit} bytes (the most vmlet reads); it was dropped`);
        this.failed(err);
        this.drop(err);
        return;
      }
      if (this.pending === 0) {
        this.opts.log?.debug({ socket: this.socketPath }, 'guest-agent: reply nobody asked for dropped');
        continue;
      }
      const r = this.reader;
      this.reader = undefined;
      if (r) r.resolve(f);
      else this.inbox.push(f);
    }
  }

  private failed(err: Error): void {
    this.failures++;
    this.lastFailure = err;
  }

  /** Closes the connection; the waiting reader, if any, fails with `err`. */
  private drop(err: Error): void {
    const s = this.sock;
    this.sock = undefined;
    this.inbox = [];
    s?.destroy();
    const r = this.reader;
    this.reader = undefined;
    r?.reject(err);
  }
}

function unwrap(command: string, reply: unknown): unknown {
  if (reply && typeof reply === 'object') {
    const r = reply as { return?: unknown; error?: { class?: string; desc?: string } }; // QMP's error: two strings
    if ('return' in r) return r.return;
    if (r.error) return Promise.reject(new GuestAgentError(command, String(r.error.class ?? 'Error'), String(r.error.desc ?? 'no description')));
  }
  return Promise.reject(new VmletError('internal', `qemu-guest-agent: unexpected reply to ${command}: ${JSON.stringify(reply).slice(0, 200)}`));
}

function noAgent(socket: string, why: string): VmletError {
  return failedPrecondition(`guest runs no qemu-guest-agent (no answer on ${socket}: ${why})`);
}

function connectError(socket: string, err: NodeJS.ErrnoException): VmletError {
  switch (err.code) {
    case 'ENOENT':
      return failedPrecondition(`no guest-agent channel: ${socket} does not exist (the VM is not running, or was created by a vmlet without exec support)`);
    case 'ECONNREFUSED':
      return failedPrecondition(`no guest-agent channel: nothing listens on ${socket} (the VM is not running)`);
    case 'EAGAIN':
      return failedPrecondition(`guest-agent channel ${socket} is busy: another client holds QEMU's only connection`);
    default:
      return failedPrecondition(`cannot connect to the guest-agent channel ${socket}: ${err.message}`);
  }
}

const pool = new Map<string, GuestAgent>();

/** The shared agent client of a socket (one connection per VM in the whole process). */
export function guestAgentFor(socketPath: string, opts: GuestAgentOptions = {}): GuestAgent {
  let a = pool.get(socketPath);
  if (!a) {
    const agent = new GuestAgent(socketPath, opts);
    agent.onIdleClose = () => {
      if (pool.get(socketPath) === agent) pool.delete(socketPath);
    };
    pool.set(socketPath, agent);
    a = agent;
  }
  return a;
}
