// One connection to libvirtd's UNIX socket: frames calls, matches replies by serial (calls may
// be answered out of order: the daemon runs them on a worker pool), hands the daemon's event
// messages to a listener, and turns socket trouble into 'connection' errors for every call in
// flight. Knows nothing of the individual calls or events.
import { createConnection, type Socket } from 'node:net';
import { connectionError, kindForCode, LibvirtRpcError } from './errors.js';
import {
  decodeHeader,
  decodeRemoteError,
  encodePacket,
  HEADER_SIZE,
  LEN_SIZE,
  MESSAGE_MAX,
  MessageStatus,
  MessageType,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from './protocol.js';
import { XdrReader } from './xdr.js';

interface Pending {
  proc: number;
  op: string;
  resolve: (payload: Buffer) => void;
  reject: (err: LibvirtRpcError) => void;
  timer: NodeJS.Timeout;
}

export class RpcConnection {
  private readonly pending = new Map<number, Pending>();
  private serial = 0;
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  private closedWith: LibvirtRpcError | undefined;
  private readonly closeListeners: Array<(err: LibvirtRpcError) => void> = [];
  private messageListener: ((proc: number, payload: Buffer) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(connectionError('socket', `libvirt socket ${path}: ${err.message}`, err)));
    socket.on('close', () => this.fail(connectionError('socket', `libvirt socket ${path} closed`)));
    socket.unref(); // an idle connection must not keep the process alive; calls ref it
  }

  /** Connects to the socket at `path` (no handshake: that is the caller's first calls). */
  static open(path: string, timeoutMs: number): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(connectionError('connect', `connecting to libvirt socket ${path} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(connectionError('connect', `cannot connect to libvirt socket ${path}: ${err.message}`, err));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RpcConnection(socket, path));
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Called once, with the error that ended the connection. */
  onClose(fn: (err: LibvirtRpcError) => void): void {
    if (this.closedWith) fn(this.closedWith);
    else this.closeListeners.push(fn);
  }

  /**
   * Where the daemon's messages go (events: type MESSAGE of the remote program), by procedure
   * with the undecoded payload. The listener must not throw: it runs inside the socket's reader.
   */
  onMessage(fn: (proc: number, payload: Buffer) => void): void {
    this.messageListener = fn;
  }

  /** Sends one call and resolves with the reply's payload, or rejects with libvirt's error. */
  call(proc: number, args: Uint8Array | undefined, op: string, timeoutMs: number): Promise<Buffer> {
    if (this.closedWith) {
      return Promise.reject(connectionError(op, `${op}: ${this.closedWith.message}`, this.closedWith));
    }
    this.serial = (this.serial + 1) >>> 0 || 1;
    const serial = this.serial;
    const packet = encodePacket(
      { prog: REMOTE_PROGRAM, vers: REMOTE_PROTOCOL_VERSION, proc, type: MessageType.CALL, serial, status: MessageStatus.OK },
      args,
    );
    return new Promise<Buffer>((resolve, reject) => {
      // A timed-out call is dropped, not the connection: a slow domain job is not a dead
      // socket, and other calls may still be answered. A late reply to it is ignored.
      const timer = setTimeout(() => {
        if (this.pending.delete(serial)) {
          this.refresh();
          reject(connectionError(op, `${op}: timed out after ${timeoutMs} ms waiting for libvirt`));
        }
      }, timeoutMs);
      this.pending.set(serial, { proc, op, resolve, reject, timer });
      this.refresh();
      this.socket.write(packet);
    });
  }

  /** Ends the connection; calls in flight are rejected with 'connection'. */
  close(reason = 'libvirt connection closed by the client'): void {
    this.fail(connectionError('close', reason));
    this.socket.destroy();
  }

  private refresh(): void {
    if (this.pending.size > 0) this.socket.ref();
    else this.socket.unref();
  }

  private fail(err: LibvirtRpcError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.socket.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(connectionError(p.op, `${p.op}: ${err.message}`, err));
    }
    this.pending.clear();
    for (const fn of this.closeListeners.splice(0)) fn(err);
  }

  private onData(chunk: Buffer): void {
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    while (this.inboxBytes >= LEN_SIZE) {
      if (this.inbox.length > 1) this.inbox = [Buffer.concat(this.inbox)];
      const buf = this.inbox[0]!;
      const len = buf.readUInt32BE(0);
      if (len < LEN_SIZE + HEADER_SIZE || len > LEN_SIZE + MESSAGE_MAX) {
        // The stream cannot be resynchronised after a bad length word.
        this.fail(connectionError('socket', `libvirt sent a packet with an impossible length ${len}`));
        return;
      }
      if (buf.length < len) return;
      const packet = buf.subarray(0, len);
      const rest = buf.subarray(len);
      this.inbox = rest.length > 0 ? [rest] : [];
      this.inboxBytes = rest.length;
      this.onPacket(packet);
      if (this.closedWith) return;
    }
  }

  private onPacket(packet: Buffer): void {
    const r = new XdrReader(packet, LEN_SIZE);
    const h = decodeHeader(r);
    // Keepalive PINGs (another program) answer nothing we sent; the daemon sends them only to
    // clients that ask for keepalive, which this one does not.
    if (h.prog !== REMOTE_PROGRAM || h.vers !== REMOTE_PROTOCOL_VERSION) return;
    if (h.type === MessageType.MESSAGE) {
      if (h.status === MessageStatus.OK) this.messageListener?.(h.proc, packet.subarray(r.offset));
      return;
    }
    if (h.type !== MessageType.REPLY && h.type !== MessageType.REPLY_WITH_FDS) return;
    const p = this.pending.get(h.serial);
    if (!p) return; // a late reply to a call that already timed out
    this.pending.delete(h.serial);
    clearTimeout(p.timer);
    this.refresh();
    const payload = packet.subarray(r.offset);
    if (h.proc !== p.proc) {
      p.reject(new LibvirtRpcError(`${p.op}: reply for procedure ${h.proc} to a call of procedure ${p.proc}`, { kind: 'other', op: p.op }));
    } else if (h.type === MessageType.REPLY_WITH_FDS) {
      p.reject(new LibvirtRpcError(`${p.op}: libvirt replied with file descriptors, which this client cannot receive`, { kind: 'other', op: p.op }));
    } else if (h.status === MessageStatus.OK) {
      p.resolve(payload);
    } else {
      p.reject(remoteError(p.op, payload));
    }
  }
}

function remoteError(op: string, payload: Buffer): LibvirtRpcError {
  try {
    const e = decodeRemoteError(new XdrReader(payload));
    return new LibvirtRpcError(e.message ?? `libvirt error ${e.code}`, { code: e.code, domain: e.domain, kind: kindForCode(e.code), op });
  } catch (err) {
    return new LibvirtRpcError(`${op}: libvirt reported an error that does not decode: ${(err as Error).message}`, { kind: 'other', op, cause: err });
  }
}
