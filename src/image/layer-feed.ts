// A layer's bytes handed to the layer scan while they download, so a pull reads each byte once
// and decompresses while the network still sends (a single-layer image was download, then a
// second full read to scan it). Only a download that starts after the scan asked for it is fed:
// the scan reads layers in order, and one that downloaded ahead of it is read from the stored blob
// as before. The scan still waits for the blob's digest check (LayerRef.ready) before trusting
// what it read.
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';

const FEED_BUFFER = 1024 * 1024;

export class LayerFeed {
  private stream: PassThrough | undefined;
  private started = false;
  /** Whether the scan read this layer as it downloaded (for the pull's log). */
  live = false;
  private decide!: (live: boolean) => void;
  /** true once the download began feeding the stream; false when it will not (stored already, or began before take()). */
  readonly decided = new Promise<boolean>((resolve) => (this.decide = resolve));

  /** The scan: a stream the download will feed, or undefined when the download already began (read the stored blob). */
  take(): Readable | undefined {
    if (this.started) return undefined;
    this.stream ??= new PassThrough({ highWaterMark: FEED_BUFFER });
    return this.stream;
  }

  /** The download, as its first byte is about to arrive: the sink for its bytes when a scan waits. */
  start(): LayerSink | undefined {
    this.started = true;
    this.live = this.stream !== undefined;
    this.decide(this.live);
    return this.stream ? new LayerSink(this.stream) : undefined;
  }

  /** The scan is over, or never began (it failed first): a download still feeding goes on alone, never stalled. */
  release(): void {
    this.stream?.destroy();
  }

  /** The download is over (or never ran): a scan still waiting learns it gets no live bytes. */
  finish(): void {
    this.started = true;
    this.decide(false);
  }
}

/** The download's end of a feed: a scan that stops reading (it failed) never stalls the download. */
export class LayerSink {
  private gone = false;

  constructor(private readonly s: PassThrough) {
    s.once('close', () => (this.gone = true));
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.gone || this.s.write(chunk)) return;
    await Promise.race([once(this.s, 'drain'), once(this.s, 'close')]).catch(() => undefined);
  }

  end(): void {
    if (!this.gone) this.s.end();
  }

  /** The download failed: the scan reading the stream fails with the same error. */
  fail(err: Error): void {
    if (!this.gone) this.s.destroy(err);
  }
}
