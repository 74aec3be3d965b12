// A fake libvirtd for the RPC client's unit tests: a UNIX socket server that speaks libvirt's
// framing, answers the handshake (auth list, polkit, open, close) by itself, hands every other
// call to the test's handler by procedure, and can send event messages as the daemon does.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { XdrWriter } from '../../src/vm/rpc/xdr.js';
import {
  AuthType,
  decodePacket,
  encodePacket,
  encodeRemoteError,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
  type MessageHeader,
} from '../../src/vm/rpc/protocol.js';

export interface Call {
  header: MessageHeader;
  payload: Buffer;
  socket: Socket;
}

export type Handler = (call: Call, fake: FakeDaemon) => void;

let seq = 0;

export class FakeDaemon {
  readonly path: string;
  readonly calls: Call[] = [];
  readonly sockets = new Set<Socket>();
  connections = 0;
  private server: Server;

  constructor(
    dir: string,
    private readonly handlers: Partial<Record<number, Handler>>,
    private readonly auth: number[] = [AuthType.NONE],
  ) {
    this.path = join(dir, `d${++seq}.sock`);
    this.server = createServer((s) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
          const len = buf.readUInt32BE(0);
          const { header, payload } = decodePacket(buf.subarray(0, len));
          buf = buf.subarray(len);
          const call = { header, payload, socket: s };
          this.calls.push(call);
          this.dispatch(call);
        }
      });
    });
  }

  listen(): Promise<this> {
    return new Promise((resolve) => this.server.listen(this.path, () => resolve(this)));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Drops every client connection, as a libvirtd that exits does. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  reply(call: Call, payload: Uint8Array = Buffer.alloc(0), status: number = MessageStatus.OK): void {
    call.socket.write(encodePacket({ ...call.header, type: MessageType.REPLY, status }, payload));
  }

  fail(call: Call, code: number, message: string): void {
    const x = new XdrWriter();
    encodeRemoteError(x, { code, domain: 10, message });
    this.reply(call, x.bytes(), MessageStatus.ERROR);
  }

  /** An event message (type MESSAGE, serial 0) of procedure `proc`, as libvirtd sends it. */
  event(socket: Socket, proc: number, payload: Uint8Array): void {
    socket.write(encodePacket({ prog: REMOTE_PROGRAM, vers: 1, proc, type: MessageType.MESSAGE, serial: 0, status: MessageStatus.OK }, payload));
  }

  /** The calls of procedure `proc` so far. */
  callsOf(proc: number): Call[] {
    return this.calls.filter((c) => c.header.proc === proc);
  }

  private dispatch(call: Call): void {
    const proc = call.header.proc;
    const h = this.handlers[proc];
    if (h) return h(call, this);
    if (proc === Proc.AUTH_LIST) return this.reply(call, new XdrWriter().array(this.auth, (x, v) => x.int(v)).bytes());
    if (proc === Proc.AUTH_POLKIT) return this.reply(call, new XdrWriter().int(1).bytes());
    if (proc === Proc.CONNECT_OPEN || proc === Proc.CONNECT_CLOSE) return this.reply(call);
    this.fail(call, 3, `this fake does not support procedure ${proc}`);
  }
}
