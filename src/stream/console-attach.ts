// Attach = the VM's serial console. libvirt gives the domain's serial a pty (`<serial type='pty'>`,
// found by the VM driver's consolePty); QEMU holds the master side and puts the
// slave in raw mode, virtlogd gets a copy of all output through QEMU's chardev log (so the console
// log keeps growing whether or not anyone is attached). vmlet opens the slave side: bytes read are
// the guest's output, bytes written reach the guest's serial input. Closing it leaves the VM alone.
//
// Several clients may attach to one console at once: the pty is opened once per path and its
// output fanned out to every attached client (two independent readers would steal bytes from each
// other), and every client's input is written to it.
import { constants, openSync, closeSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import type { StreamIO } from './backend.js';

type Listener = (chunk: Buffer) => void;
type EndListener = (err?: Error) => void;

/** One open pty, shared by every client attached to it. */
class SharedPty {
  private readonly listeners = new Set<Listener>();
  private readonly endListeners = new Set<EndListener>();
  private readonly rd: ReadStream;
  private readonly wr: WriteStream;
  private ended = false;

  constructor(
    readonly path: string,
    private readonly onIdle: () => void,
  ) {
    const flags = constants.O_RDWR | constants.O_NOCTTY;
    const rfd = openSync(path, flags);
    let wfd: number;
    try {
      wfd = openSync(path, flags);
    } catch (err) {
      closeSync(rfd);
      throw err;
    }
    // Each tty handle owns (and closes) its own fd; libuv reopens a pty slave non-blocking.
    this.rd = new ReadStream(rfd);
    this.wr = new WriteStream(wfd);
    // QEMU makes its pty raw already; doing it again costs nothing and guards against echo.
    this.rd.setRawMode(true);
    this.rd.on('data', (chunk: Buffer) => {
      for (const l of this.listeners) l(chunk);
    });
    // EIO when QEMU closes the master (VM stopped).
    this.rd.on('error', (err) => this.end(err));
    this.rd.on('end', () => this.end());
    this.wr.on('error', (err: Error) => this.end(err));
  }

  write(chunk: Buffer): void {
    if (!this.ended) this.wr.write(chunk);
  }

  subscribe(onData: Listener, onEnd: EndListener): () => void {
    this.listeners.add(onData);
    this.endListeners.add(onEnd);
    return () => {
      this.listeners.delete(onData);
      this.endListeners.delete(onEnd);
      if (this.listeners.size === 0) this.close();
    };
  }

  private end(err?: NodeJS.ErrnoException): void {
    if (this.ended) return;
    this.ended = true;
    const ends = [...this.endListeners];
    this.listeners.clear();
    this.endListeners.clear();
    this.close();
    // EIO is how a pty says its other side is gone: a normal end of the console.
    const code = err?.code;
    for (const l of ends) l(code === 'EIO' ? undefined : err);
  }

  private close(): void {
    this.ended = true;
    this.onIdle();
    this.rd.destroy();
    this.wr.destroy();
  }
}

/** Opens consoles by pty path and shares each among its attached clients. */
export class ConsoleAttacher {
  private readonly open = new Map<string, SharedPty>();

  /** Pipes client stdin → pty and pty → client stdout until the client leaves or the console ends. */
  attach(ptyPath: string, io: StreamIO): Promise<void> {
    let pty = this.open.get(ptyPath);
    if (!pty) {
      const p: SharedPty = new SharedPty(ptyPath, () => {
        if (this.open.get(ptyPath) === p) this.open.delete(ptyPath);
      });
      this.open.set(ptyPath, p);
      pty = p;
    }
    const shared = pty;
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        io.signal.removeEventListener('abort', onAbort);
        io.stdin?.off('data', onInput);
        unsubscribe();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => finish();
      const onInput = (chunk: Buffer) => shared.write(chunk);
      const unsubscribe = shared.subscribe(
        (chunk) => io.stdout?.write(chunk),
        (err) => finish(err),
      );
      if (io.signal.aborted) return finish();
      io.signal.addEventListener('abort', onAbort);
      io.stdin?.on('data', onInput);
      // A serial console has no window size to set; resizes are accepted and ignored.
    });
  }

  /** Consoles currently open (for tests and diagnostics). */
  get openCount(): number {
    return this.open.size;
  }
}
