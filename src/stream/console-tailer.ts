// Copies a VM's serial console (the file virtlogd writes, which keeps growing while vmlet is
// down) into the container's CRI log, from a saved offset so a vmlet restart neither loses nor
// repeats lines. Appends by path each time, so log rotation (ReopenContainerLog) needs nothing.
import { appendFile, mkdir, open, rename, writeFile, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { CriLogFormatter } from './cri-log.js';

const CHUNK = 256 * 1024;

export class ConsoleTailer {
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private readonly fmt = new CriLogFormatter();
  /** Bytes of the console file consumed, including a partial line held in the formatter. */
  private consumed: number;

  constructor(
    readonly consoleLog: string,
    readonly logPath: string,
    /** Where the committed offset is kept between runs (see committed()). */
    readonly offsetFile: string,
    startOffset: number,
    private readonly log: Logger,
  ) {
    this.consumed = startOffset;
  }

  /** The offset that is safe to resume from: lines held back as partial are read again. */
  get committed(): number {
    return this.consumed - this.fmt.pendingBytes;
  }

  /** The committed offset saved by an earlier run, if newer than the record's. */
  static async savedOffset(offsetFile: string): Promise<number | undefined> {
    try {
      const n = Number((await readFile(offsetFile, 'utf8')).trim());
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  start(intervalMs = 200): void {
    this.timer = setInterval(() => void this.drain(), intervalMs);
    void this.drain();
  }

  /** Copies everything written so far; the final partial line is written too when `final`. */
  drain(final = false): Promise<void> {
    this.draining ??= this.copy(final)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, consoleLog: this.consoleLog }, 'console log copy failed'))
      .finally(() => (this.draining = undefined));
    return this.draining;
  }

  /** The VM has stopped: copy the rest, including a last line without a newline. */
  async stop(): Promise<void> {
    await this.halt();
    await this.drain(true);
  }

  /** vmlet is stopping but the VM runs on: copy what is complete; the next run resumes from committed. */
  async halt(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.draining;
    await this.drain();
  }

  private async copy(final: boolean): Promise<void> {
    let fh;
    try {
      fh = await open(this.consoleLog, 'r');
    } catch {
      return; // QEMU has not started writing yet
    }
    const out: Buffer[] = [];
    try {
      const { size } = await fh.stat();
      // virtlogd rotated or truncated the file: start over from its beginning.
      if (size < this.consumed) this.consumed = 0;
      const buf = Buffer.alloc(CHUNK);
      while (this.consumed < size) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - this.consumed), this.consumed);
        if (bytesRead === 0) break;
        this.consumed += bytesRead;
        out.push(this.fmt.pushBytes(buf.subarray(0, bytesRead)));
      }
    } finally {
      await fh.close();
    }
    if (final) out.push(this.fmt.flushBytes());
    const data = Buffer.concat(out);
    if (data.length === 0) return;
    await mkdir(dirname(this.logPath), { recursive: true });
    await appendFile(this.logPath, data);
    await this.saveOffset();
  }

  private async saveOffset(): Promise<void> {
    const tmp = `${this.offsetFile}.tmp`;
    await writeFile(tmp, `${this.committed}\n`);
    await rename(tmp, this.offsetFile);
  }
}
