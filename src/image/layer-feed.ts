// A layer's bytes for the layer scan while they download, so a pull decompresses and walks each
// layer as the network sends it instead of after the last byte (a single-layer image was a full
// download, then a full second read). The scan follows the blob's temp file as the download
// writes it (the page cache serves those reads), so it can join a download at any point and never
// holds one back. It still waits for the blob's digest check (LayerRef.ready) before trusting
// what it read.
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { VmletError } from '../errors.js';

const READ_CHUNK = 1024 * 1024;

export class LayerFeed {
  private path: string | undefined;
  private final: string | undefined;
  private written = 0;
  private ended = false;
  private error: Error | undefined;
  private waiting: Array<() => void> = [];
  private decide!: (downloading: boolean) => void;
  /** true once this pull's download of the layer began; false when there is none (stored already, or another pull's). */
  private readonly decided = new Promise<boolean>((resolve) => (this.decide = resolve));
  /** Whether a scan read the layer while it downloaded (for the pull's log). */
  live = false;

  // ---------------------------------------------------------------- the download's side

  /** Its temp file exists and will grow; once checked, it is renamed to `final`. */
  started(path: string, final: string): void {
    this.path = path;
    this.final = final;
    this.decide(true);
  }

  /** `total` bytes are in the temp file. */
  wrote(total: number): void {
    this.written = total;
    this.poke();
  }

  /** Every byte is in the temp file (its digest is checked next: LayerRef.ready). */
  end(): void {
    this.ended = true;
    this.poke();
  }

  failed(err: Error): void {
    this.error = err;
    this.poke();
  }

  /** The download is over, or never ran (the blob was stored already): a scan still waiting reads the stored blob. */
  finish(): void {
    this.decide(false);
    this.poke();
  }

  // ---------------------------------------------------------------- the scan's side

  /** The layer's bytes as they arrive, or undefined when this pull does not download it (read the stored blob once ready). */
  async source(): Promise<Readable | undefined> {
    if (!(await this.decided)) return undefined;
    this.live = true;
    return Readable.from(this.follow(), { objectMode: false, highWaterMark: READ_CHUNK });
  }

  private async *follow(): AsyncGenerator<Buffer> {
    const path = this.path!;
    // A scan that joins late may find the blob checked and renamed already (or removed: failed).
    const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      return open(this.final!, 'r').catch((e: unknown) => {
        throw this.error ?? e;
      });
    });
    try {
      let pos = 0;
      for (;;) {
        if (pos < this.written) {
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, this.written - pos));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) throw new VmletError('internal', `${path}: ends at ${pos} bytes, ${this.written} were written`);
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
          continue;
        }
        if (this.error) throw this.error;
        if (this.ended) return;
        await new Promise<void>((resolve) => this.waiting.push(resolve));
      }
    } finally {
      await fh.close();
    }
  }

  private poke(): void {
    for (const w of this.waiting.splice(0)) w();
  }
}
