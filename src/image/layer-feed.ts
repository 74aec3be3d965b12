// A layer's bytes for the layer scan while they download, so a pull decompresses and walks each
// layer as the network sends it instead of after the last byte (a single-layer image was a full
// download, then a full second read). The scan follows the blob's temp file as the download
// writes it (the page cache serves those reads), so it can join a download at any point and never
// holds one back. It still waits for the blob's digest check (LayerRef.ready) before trusting
// what it read. The scan runs in a worker thread (scan-worker.ts): the download's feed tells a
// copy of itself there what happens (watch, apply).
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { VmletError } from '../errors.js';

const READ_CHUNK = 1024 * 1024;

/** What the download side of a feed did, as another thread's copy replays it. */
export type FeedEvent =
  | { e: 'started'; path: string; final: string }
  | { e: 'wrote'; total: number }
  | { e: 'end' }
  | { e: 'failed'; message: string }
  | { e: 'finish' };

export class LayerFeed {
  private path: string | undefined;
  private final: string | undefined;
  private written = 0;
  private ended = false;
  private error: Error | undefined;
  private waiting: Array<() => void> = [];
  private finished = false;
  private watchers = new Set<(ev: FeedEvent) => void>();
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
    this.tell({ e: 'started', path, final });
  }

  /** `total` bytes are in the temp file. */
  wrote(total: number): void {
    this.written = total;
    this.poke();
    this.tell({ e: 'wrote', total });
  }

  /** Every byte is in the temp file (its digest is checked next: LayerRef.ready). */
  end(): void {
    this.ended = true;
    this.poke();
    this.tell({ e: 'end' });
  }

  failed(err: Error): void {
    this.error = err;
    this.poke();
    this.tell({ e: 'failed', message: err.message });
  }

  /** The download is over, or never ran (the blob was stored already): a scan still waiting reads the stored blob. */
  finish(): void {
    this.finished = true;
    this.decide(false);
    this.poke();
    this.tell({ e: 'finish' });
  }

  // ---------------------------------------------------------------- across threads

  /** Calls `on` with what happened so far, then with each event as it happens; returns the unsubscribe. */
  watch(on: (ev: FeedEvent) => void): () => void {
    if (this.path !== undefined) on({ e: 'started', path: this.path, final: this.final! });
    if (this.written) on({ e: 'wrote', total: this.written });
    if (this.ended) on({ e: 'end' });
    if (this.error) on({ e: 'failed', message: this.error.message });
    if (this.finished) on({ e: 'finish' });
    this.watchers.add(on);
    return () => this.watchers.delete(on);
  }

  /** Replays an event of the feed `watch`ed on the other thread. */
  apply(ev: FeedEvent): void {
    if (ev.e === 'started') this.started(ev.path, ev.final);
    else if (ev.e === 'wrote') this.wrote(ev.total);
    else if (ev.e === 'end') this.end();
    else if (ev.e === 'failed') this.failed(new VmletError('unavailable', ev.message));
    else this.finish();
  }

  private tell(ev: FeedEvent): void {
    for (const w of this.watchers) w(ev);
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
