// The plumbing under the typed calls: one lazily opened, self-healing connection (a call after a
// drop opens a new one), encoding a call's arguments and decoding its reply, and the hooks the
// event layer needs: a hook run on each new connection, a listener for its loss, and a handler
// per event procedure. Knows no individual call; libvirt-rpc.ts has them.
import { RpcConnection } from './client.js';
import { invalidError, LibvirtRpcError } from './errors.js';
import { handshake } from './handshake.js';
import { Proc } from './protocol.js';
import { daemonUri, socketPathForUri } from './uri.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

export interface LibvirtRpcOptions {
  /** A local system URI, e.g. qemu:///system (see socketPathForUri). */
  uri: string;
  /** Overrides the socket derived from the URI. */
  socketPath?: string;
  /** Per call, and for connecting plus the handshake. Default 30 s. */
  callTimeoutMs?: number;
  /**
   * Per call for those that start, stop, define or undefine a domain (default 120 s, and never
   * less than callTimeoutMs): libvirtd itself waits up to 30 s for a domain's job, then as long as
   * QEMU takes to start or (destroy) up to 15 s and more for it to die.
   */
  lifecycleTimeoutMs?: number;
}

export type Encode = (w: XdrWriter) => void;

/** What ended a connection, and whether it was this client's own close(). */
export type DisconnectListener = (err: LibvirtRpcError, byClient: boolean) => void;

export class RpcSession {
  readonly uri: string;
  protected readonly timeoutMs: number;
  protected readonly lifecycleTimeoutMs: number;
  private readonly socketPath: string | undefined;
  private conn: RpcConnection | undefined;
  private connecting: Promise<RpcConnection> | undefined;
  private closing = false;
  private offeredAuth: number[] = [];
  private gen = 0;
  private readonly openListeners: Array<() => void> = [];
  private readonly disconnectListeners: DisconnectListener[] = [];
  private readonly messageHandlers = new Map<number, (payload: Buffer) => void>();
  /** Event (de)registrations awaiting their reply; close() lets them finish first (see there). */
  private readonly callbackCalls = new Set<Promise<unknown>>();

  constructor(opts: LibvirtRpcOptions) {
    this.uri = opts.uri;
    this.socketPath = opts.socketPath;
    this.timeoutMs = opts.callTimeoutMs ?? 30_000;
    if (!(this.timeoutMs > 0)) throw new RangeError(`callTimeoutMs must be positive, got ${this.timeoutMs}`);
    this.lifecycleTimeoutMs = Math.max(opts.lifecycleTimeoutMs ?? 120_000, this.timeoutMs);
  }

  /** Auth types (remote_auth_type) the daemon listed at the last handshake; [] means none needed. */
  get authTypes(): readonly number[] {
    return this.offeredAuth;
  }

  get connected(): boolean {
    return this.conn !== undefined && !this.conn.closed;
  }

  /** Counts the connections opened so far: it changes when a new one replaces a lost one. */
  get generation(): number {
    return this.gen;
  }

  /** Opens the connection if it is not open (concurrent callers share one attempt). */
  async connect(): Promise<void> {
    await this.connection('connect');
  }

  /** Closes the connection; a later call opens a new one. */
  async close(): Promise<void> {
    await this.connecting?.catch(() => undefined);
    const c = this.conn;
    this.conn = undefined;
    if (!c || c.closed) return;
    this.closing = true;
    try {
      const waitMs = Math.min(this.timeoutMs, 5_000);
      // libvirtd 9.0 empties a client's event-callback list on close without the lock its
      // (de)register calls take: a close while one of them runs in a worker thread can crash the
      // daemon (a NULL read, seen in CI). So the close goes out only once they have answered.
      if (this.callbackCalls.size > 0) await settledWithin([...this.callbackCalls], waitMs);
      // CONNECT_CLOSE lets the daemon release the driver connection now rather than on EOF.
      await c.call(Proc.CONNECT_CLOSE, undefined, 'close', waitMs).catch(() => undefined);
      c.close();
    } finally {
      this.closing = false;
    }
  }

  /**
   * Runs `fn` on every new connection, once it is in place and before the calls that waited for
   * it go out. `fn` may start calls but must not throw, nor make the opening wait for them: a call
   * that itself opened the connection would wait for its own opening.
   */
  onOpen(fn: () => void): void {
    this.openListeners.push(fn);
  }

  /** `fn` hears of every connection that ends, whoever ended it. */
  onDisconnect(fn: DisconnectListener): void {
    this.disconnectListeners.push(fn);
  }

  /** The handler for the daemon's messages of procedure `proc` (its events); one per procedure. */
  protected handleMessages(proc: number, fn: (payload: Buffer) => void): void {
    this.messageHandlers.set(proc, fn);
  }

  /** Encodes the arguments, makes the call and decodes the reply, which must be consumed whole. */
  protected async call<T>(op: string, proc: number, encode: Encode | undefined, decode: (r: XdrReader) => T, timeoutMs = this.timeoutMs): Promise<T> {
    return (await this.callOn(op, proc, encode, decode, timeoutMs)).value;
  }

  /** call(), also saying which connection (generation) the call went out on. */
  protected callOn<T>(op: string, proc: number, encode: Encode | undefined, decode: (r: XdrReader) => T, timeoutMs = this.timeoutMs): Promise<{ value: T; generation: number }> {
    const done = this.send(op, proc, encode, decode, timeoutMs);
    if (CALLBACK_PROCS.has(proc)) {
      // Tracked from the moment it is asked for, before it waits for the connection: a close()
      // made just after must still see it.
      const tracked = done.catch(() => undefined);
      this.callbackCalls.add(tracked);
      void tracked.finally(() => this.callbackCalls.delete(tracked));
    }
    return done;
  }

  private async send<T>(op: string, proc: number, encode: Encode | undefined, decode: (r: XdrReader) => T, timeoutMs: number): Promise<{ value: T; generation: number }> {
    let args: Buffer | undefined;
    if (encode) {
      const w = new XdrWriter();
      try {
        encode(w);
      } catch (err) {
        // Bad arguments are refused here, before they cost a round trip.
        if (err instanceof XdrError) throw invalidError(op, `${op}: ${err.message}`, err);
        throw err;
      }
      args = w.bytes();
    }
    const c = await this.connection(op);
    const generation = this.gen;
    const reply = await c.call(proc, args, op, timeoutMs);
    return { value: decodeReply(op, reply, decode), generation };
  }

  private async connection(op: string): Promise<RpcConnection> {
    if (this.conn && !this.conn.closed) return this.conn;
    this.conn = undefined;
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    try {
      return await this.connecting;
    } catch (err) {
      // Every caller sees the failure under its own operation name.
      if (err instanceof LibvirtRpcError && err.op !== op) {
        throw new LibvirtRpcError(err.message, { code: err.code, domain: err.domain, kind: err.kind, op, cause: err });
      }
      throw err;
    }
  }

  private async open(): Promise<RpcConnection> {
    const name = daemonUri(this.uri); // refuses session and remote URIs before touching a socket
    const path = this.socketPath ?? socketPathForUri(this.uri);
    const c = await RpcConnection.open(path, this.timeoutMs);
    try {
      this.offeredAuth = await handshake(c, name, this.timeoutMs);
    } catch (err) {
      c.close('libvirt handshake failed');
      if (err instanceof XdrError) throw new LibvirtRpcError(`libvirt handshake: ${err.message}`, { kind: 'other', op: 'connect', cause: err });
      throw err;
    }
    c.onMessage((proc, payload) => this.messageHandlers.get(proc)?.(payload));
    this.conn = c;
    this.gen++;
    c.onClose((err) => {
      if (this.conn === c) this.conn = undefined; // the next call reconnects
      for (const fn of this.disconnectListeners) fn(err, this.closing);
    });
    for (const fn of this.openListeners) fn();
    return c;
  }
}

/** The calls that change the daemon's per-client list of event callbacks. */
const CALLBACK_PROCS = new Set<number>([Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY]);

/** Resolves when every promise has settled, or after `ms`, whichever comes first. */
async function settledWithin(all: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([Promise.allSettled(all), late]);
  clearTimeout(timer);
}

function decodeReply<T>(op: string, payload: Buffer, decode: (r: XdrReader) => T): T {
  try {
    const r = new XdrReader(payload);
    const v = decode(r);
    r.end(`${op} reply`);
    return v;
  } catch (err) {
    if (err instanceof XdrError) {
      throw new LibvirtRpcError(`${op}: reply does not decode: ${err.message}`, { kind: 'other', op, cause: err });
    }
    throw err;
  }
}
