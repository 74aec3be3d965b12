// Host side of the vmlet guest agent (docs/guest-agent.md): requests with ids and time limits,
// events, and per-stream output with flow control (ACK once the sink has taken the bytes).
import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmletError, type ErrorKind } from '../errors.js';
import type { Logger } from '../log.js';
import { FrameDecoder, FrameType, MAX_STREAM_CHUNK, encodeFrame, type Frame } from './agent-frames.js';

export interface AgentUser { uid: number; gid: number; groups: number[] }
export interface AgentMount { source: string; target: string; readonly: boolean }
export interface CreateContainerParams {
  id: string; image: string; args: string[]; env: string[]; cwd: string; user: AgentUser;
  tty: boolean; stdin: boolean; stdinOnce: boolean; readonlyRootfs: boolean; mounts: AgentMount[];
  memoryLimitBytes: number; cpuQuotaUs: number; cpuPeriodUs: number;
  /** Security context (docs/guest-agent.md): all caps and the guest's /dev and /sys; the capability set; no_new_privs; paths hidden or read-only. */
  privileged?: boolean; capabilities?: string[]; noNewPrivs?: boolean; maskedPaths?: string[]; readonlyPaths?: string[];
  /** A seccomp filter: the runtime's default (built in the guest from the capabilities) or a node's profile (its JSON). */
  seccompRuntimeDefault?: boolean; seccompProfile?: Record<string, unknown>;
  /** 'container': its own PID namespace, its program PID 1; 'pod' (default): the pod VM's, shared. */
  pidNamespace?: 'container' | 'pod';
}
export interface ExecParams { id: string; stream: number; args: string[]; env: string[]; tty: boolean; stdin: boolean; cwd?: string; user?: AgentUser; /** Terminal size before the process starts (tty). */ cols?: number; rows?: number }
export interface ExitEvent { stream: number; id: string; exec: boolean; pid: number; exitCode: number; signal: number; oomKilled: boolean; finishedAt: bigint }
export interface AgentContainerState { id: string; state: 'created' | 'running' | 'exited'; pid: number; exitCode: number; signal: number; startedAt: bigint; finishedAt: bigint; stream: number }
export interface HelloResult { version: number; agent: string; bootNs: bigint; containers: AgentContainerState[] }
export interface StreamSink { stdout(data: Buffer): Promise<void> | void; stderr(data: Buffer): Promise<void> | void }
export interface AgentContainerStats {
  id: string; cpuUsageNs: bigint; memoryWorkingSetBytes: number; memoryUsageBytes: number; rssBytes: number;
  pageFaults: number; majorPageFaults: number; writableLayerBytes: number; writableLayerInodes: number;
}
export interface AgentStats { timeNs: bigint; memTotalBytes: number; memAvailableBytes: number; containers: AgentContainerStats[] }
export interface CallOptions { timeoutMs?: number }

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
export const MAX_PENDING_CALLS = 1024;

const AGENT_CODES: Record<string, ErrorKind> = {
  'invalid-argument': 'invalid-argument',
  'not-found': 'not-found',
  'already-exists': 'already-exists',
  'failed-precondition': 'failed-precondition',
  unavailable: 'unavailable',
  internal: 'internal',
};

interface Pending { method: string; resolve(v: unknown): void; reject(e: unknown): void; timer: NodeJS.Timeout }
type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
/** ns fields travel as decimal strings (they exceed 2^53); a number is tolerated. */
export function ns(v: unknown): bigint {
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  if (typeof v === 'number' && Number.isFinite(v)) return BigInt(Math.trunc(v));
  return 0n;
}
const STATES = new Set(['created', 'running', 'exited']);

function parseContainerState(v: unknown): AgentContainerState | undefined {
  if (!isObject(v) || typeof v.id !== 'string' || !STATES.has(str(v.state))) return undefined;
  return {
    id: v.id, state: v.state as AgentContainerState['state'], pid: num(v.pid), exitCode: num(v.exitCode), signal: num(v.signal),
    startedAt: ns(v.startedAt), finishedAt: ns(v.finishedAt), stream: num(v.stream),
  };
}

function parseExit(v: Json): ExitEvent | undefined {
  if (typeof v.stream !== 'number' || typeof v.id !== 'string') return undefined;
  return {
    stream: v.stream, id: v.id, exec: v.exec === true, pid: num(v.pid), exitCode: num(v.exitCode), signal: num(v.signal),
    oomKilled: v.oomKilled === true, finishedAt: ns(v.finishedAt),
  };
}

export class AgentClient extends EventEmitter {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly sinks = new Map<number, StreamSink>();
  /** Per stream: the chain of sink deliveries, so output is consumed in order and exit comes after it. */
  private readonly tails = new Map<number, Promise<void>>();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly log: Logger,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () => this.shutdown(undefined));
  }

  /** Wraps a connected socket (tests, or a socket accepted elsewhere). */
  static over(socket: Socket, opts: { log: Logger }): AgentClient {
    return new AgentClient(socket, opts.log);
  }

  /**
   * Connects to the agent's port socket and resolves once the agent answered hello. QEMU accepts
   * the connection before the guest is up, so hello is re-sent every second (and at once on the
   * agent's ready event) until the deadline.
   */
  static async connect(socketPath: string, opts: { log: Logger; timeoutMs: number }): Promise<AgentClient> {
    const deadline = Date.now() + opts.timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      let socket: Socket;
      try {
        socket = await openSocket(socketPath, deadline - Date.now());
      } catch (err) {
        lastError = err;
        await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
        continue;
      }
      const client = new AgentClient(socket, opts.log);
      try {
        await client.helloUntil(deadline);
        return client;
      } catch (err) {
        lastError = err;
        client.close();
      }
    }
    throw new VmletError('unavailable', `guest agent at ${socketPath}: no answer to hello within ${opts.timeoutMs} ms: ${errText(lastError)}`, { cause: lastError });
  }

  private async helloUntil(deadline: number): Promise<HelloResult> {
    let wake: () => void = () => {};
    const onReady = () => wake();
    this.on('ready', onReady);
    try {
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0 || this.closed) throw new VmletError('unavailable', 'guest agent: hello unanswered');
        const attempt = this.hello({ timeoutMs: Math.min(1000, left) });
        const ready = new Promise<void>((resolve) => (wake = resolve));
        const won = await Promise.race([attempt.then((r) => ({ r })), ready.then(() => undefined)]).catch((err: unknown) => {
          if (this.closed) throw err;
          return undefined;
        });
        attempt.catch(() => {}); // a superseded attempt times out on its own
        if (won) return won.r;
      }
    } finally {
      this.off('ready', onReady);
    }
  }

  async hello(opts?: CallOptions): Promise<HelloResult> {
    const r = await this.call('hello', {}, opts);
    const containers = Array.isArray(r.containers) ? r.containers.map(parseContainerState) : [];
    if (containers.includes(undefined)) this.log.warn({ containers: r.containers }, 'guest agent: hello listed a malformed container, skipped');
    return { version: num(r.version), agent: str(r.agent), bootNs: ns(r.bootNs), containers: containers.filter((c) => c !== undefined) };
  }

  /** `net`: the pod network as the kernel command line's vmlet.* words, for a VM booted before its pod (the warm pool). */
  async setupPod(p: { hostname: string; hosts: string; resolvConf: string; sysctls: Record<string, string>; net?: string[] }, opts?: CallOptions): Promise<void> {
    const timeNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
    await this.call('setup_pod', { ...p, timeNs: timeNs.toString() }, opts);
  }

  async createContainer(p: CreateContainerParams, opts?: CallOptions): Promise<void> {
    await this.call('create_container', p, opts);
  }

  async startContainer(id: string, stream: number, opts?: CallOptions): Promise<{ pid: number; startedAt: bigint }> {
    const r = await this.call('start_container', { id, stream }, opts);
    return { pid: num(r.pid), startedAt: ns(r.startedAt) };
  }

  /** Signals the container's main process, or with `stream` the process on that stream (an exec). */
  async signal(id: string, signal: number, stream?: number, opts?: CallOptions): Promise<void> {
    await this.call('signal', stream ? { id, signal, stream } : { id, signal }, opts);
  }

  async exec(p: ExecParams, opts?: CallOptions): Promise<{ pid: number }> {
    const r = await this.call('exec', p, opts);
    return { pid: num(r.pid) };
  }

  async resize(stream: number, cols: number, rows: number, opts?: CallOptions): Promise<void> {
    await this.call('resize', { stream, cols, rows }, opts);
  }

  /** New cgroup limits of a container (0: no limit; cpuShares 0: unchanged). */
  async updateContainer(p: { id: string; memoryLimitBytes: number; cpuQuotaUs: number; cpuPeriodUs: number; cpuShares: number }, opts?: CallOptions): Promise<void> {
    await this.call('update_container', p, opts);
  }

  /** Brings hot-added vCPUs online until `count` are (the guest waits up to 5 s for them to appear). */
  async onlineCpus(count: number, opts?: CallOptions): Promise<number> {
    const r = await this.call('online_cpus', { count }, { timeoutMs: 10_000, ...opts });
    return Number(r.online);
  }

  async removeContainer(id: string, opts?: CallOptions): Promise<void> {
    await this.call('remove_container', { id }, opts);
  }

  async stats(opts?: CallOptions): Promise<AgentStats> {
    const r = await this.call('stats', {}, opts);
    const containers = (Array.isArray(r.containers) ? r.containers : []).filter(isObject).map((c) => ({
      id: str(c.id), cpuUsageNs: ns(c.cpuUsageNs), memoryWorkingSetBytes: num(c.memoryWorkingSetBytes), memoryUsageBytes: num(c.memoryUsageBytes),
      rssBytes: num(c.rssBytes), pageFaults: num(c.pageFaults), majorPageFaults: num(c.majorPageFaults),
      writableLayerBytes: num(c.writableLayerBytes), writableLayerInodes: num(c.writableLayerInodes),
    }));
    return { timeNs: ns(r.timeNs), memTotalBytes: num(r.memTotalBytes), memAvailableBytes: num(r.memAvailableBytes), containers };
  }

  /**
   * Sets the consumer of a stream's output; returns the detach function. Attach before
   * startContainer/exec: output that arrives for a stream without a sink is ACKed and dropped.
   * Each chunk is ACKed once the sink's promise resolves, which is what slows the process down.
   */
  attachSink(stream: number, sink: StreamSink): () => void {
    this.sinks.set(stream, sink);
    return () => {
      if (this.sinks.get(stream) === sink) this.sinks.delete(stream);
    };
  }

  writeStdin(stream: number, data: Buffer): void {
    for (let off = 0; off < data.length; off += MAX_STREAM_CHUNK) {
      this.send(FrameType.STDIN, stream, data.subarray(off, off + MAX_STREAM_CHUNK));
    }
  }

  closeStdin(stream: number): void {
    this.send(FrameType.CLOSE_STDIN, stream);
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(undefined);
  }

  private send(type: number, stream: number, payload?: Buffer): void {
    if (this.closed) return;
    this.socket.write(encodeFrame(type, stream, payload));
  }

  private call(method: string, params: object, opts?: CallOptions): Promise<Json> {
    if (this.closed) return Promise.reject(new VmletError('unavailable', `guest agent: ${method}: the connection is closed`));
    if (this.pending.size >= MAX_PENDING_CALLS) {
      return Promise.reject(new VmletError('unavailable', `guest agent: ${method}: ${MAX_PENDING_CALLS} calls already pending`));
    }
    const id = this.allocId();
    const timeoutMs = opts?.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    return new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VmletError('unavailable', `guest agent: ${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      this.send(FrameType.REQUEST, id, Buffer.from(JSON.stringify({ method, params })));
    });
  }

  private allocId(): number {
    do {
      this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    } while (this.pending.has(this.nextId));
    return this.nextId;
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.log.error({ err }, 'guest agent: protocol error, dropping the connection');
      this.socket.destroy();
      this.shutdown(err as Error);
      return;
    }
    for (const f of frames) this.onFrame(f);
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case FrameType.RESPONSE:
        return this.onResponse(f.stream, f.payload);
      case FrameType.EVENT:
        return this.onEvent(f.payload);
      case FrameType.STDOUT:
      case FrameType.STDERR:
        return this.onOutput(f);
      default:
        this.log.warn({ type: f.type, stream: f.stream }, 'guest agent: unexpected frame type, ignored');
    }
  }

  private onResponse(id: number, payload: Buffer): void {
    const p = this.pending.get(id);
    if (!p) {
      this.log.debug({ id }, 'guest agent: response to no pending call (timed out?), ignored');
      return;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    const body = parseJson(payload);
    if (isObject(body) && isObject(body.error)) {
      const code = str(body.error.code);
      const kind = AGENT_CODES[code] ?? 'internal';
      p.reject(new VmletError(kind, str(body.error.message) || `guest agent: ${p.method} failed (${code})`));
    } else if (isObject(body) && isObject(body.result)) {
      p.resolve(body.result);
    } else {
      this.log.error({ method: p.method, payload: payload.subarray(0, 200).toString() }, 'guest agent: malformed response');
      p.reject(new VmletError('internal', `guest agent: ${p.method}: malformed response`));
    }
  }

  private onEvent(payload: Buffer): void {
    const ev = parseJson(payload);
    if (!isObject(ev)) {
      this.log.warn({ payload: payload.subarray(0, 200).toString() }, 'guest agent: malformed event, ignored');
      return;
    }
    if (ev.event === 'exit') {
      const exit = parseExit(ev);
      if (!exit) {
        this.log.warn({ ev }, 'guest agent: malformed exit event, ignored');
        return;
      }
      // After the stream's last output has reached its sink.
      const tail = this.tails.get(exit.stream) ?? Promise.resolve();
      void tail.then(() => {
        this.tails.delete(exit.stream);
        this.emit('exit', exit);
      });
    } else if (ev.event === 'ready') {
      this.log.debug({ version: ev.version }, 'guest agent: ready');
      this.emit('ready');
    } else {
      this.log.warn({ event: ev.event }, 'guest agent: unknown event, ignored');
    }
  }

  private onOutput(f: Frame): void {
    const n = f.payload.length;
    const ack = () => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n, 0);
      this.send(FrameType.ACK, f.stream, b);
    };
    const sink = this.sinks.get(f.stream);
    const prev = this.tails.get(f.stream);
    if (!sink && !prev) {
      ack();
      return;
    }
    const deliver = async () => {
      const s = this.sinks.get(f.stream);
      try {
        if (s) await (f.type === FrameType.STDOUT ? s.stdout(f.payload) : s.stderr(f.payload));
      } catch (err) {
        this.log.warn({ err, stream: f.stream }, 'guest agent: stream sink failed, output dropped');
      }
      ack();
    };
    const next = (prev ?? Promise.resolve()).then(deliver);
    this.tails.set(f.stream, next);
    void next.then(() => {
      if (this.tails.get(f.stream) === next) this.tails.delete(f.stream);
    });
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new VmletError('unavailable', `guest agent: ${p.method}: connection lost${err ? `: ${err.message}` : ''}`, { cause: err }));
      this.pending.delete(id);
    }
    this.emit('close', err);
  }
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return undefined;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function openSocket(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new VmletError('unavailable', `guest agent: connecting to ${path} took over ${timeoutMs} ms`));
    }, Math.max(1, timeoutMs));
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
