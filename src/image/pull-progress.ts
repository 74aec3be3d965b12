// How far one image pull has got: bytes of its layers downloaded, the rate over the last few
// seconds and the time left at that rate. Fed by the layer downloads (pull.ts), read by the log
// ticker and by `vmlet pull`'s progress stream (src/admin/).

export type PullPhase = 'resolving' | 'downloading' | 'preparing' | 'done' | 'failed';

/** What an image is, as far as its config tells before its layers are read (store.ts says how). */
export type ImageLooks = 'container' | 'vm';

export interface PullSnapshot {
  image: string;
  phase: PullPhase;
  bytesDone: number;
  /** 0 until the manifest is read. */
  bytesTotal: number;
  layersDone: number;
  layersTotal: number;
  /** Bytes per second over the last RATE_WINDOW_MS; 0 before two samples. */
  rate: number;
  /** Seconds left at `rate`; undefined while the rate is unknown or nothing is left. */
  etaSeconds?: number;
  elapsedMs: number;
}

/** The rate is taken over this much of the recent past: steady enough to read, quick to follow. */
const RATE_WINDOW_MS = 5_000;

export class PullProgress {
  phase: PullPhase = 'resolving';
  private readonly layers = new Map<string, { size: number; done: number }>();
  private readonly samples: Array<{ t: number; bytes: number }> = [];
  private readonly listeners = new Set<(s: PullSnapshot) => void>();
  private readonly started: number;
  private tellLooks!: (l: ImageLooks | undefined) => void;
  /** What the image looks like, once its config is read; undefined when the pull failed first. */
  readonly looks = new Promise<ImageLooks | undefined>((resolve) => (this.tellLooks = resolve));

  constructor(
    readonly image: string,
    private readonly now: () => number = Date.now,
  ) {
    this.started = now();
  }

  /** The layers to download, from the manifest. Layers already stored count as done at once. */
  setLayers(layers: Array<{ digest: string; size: number }>): void {
    for (const l of layers) if (!this.layers.has(l.digest)) this.layers.set(l.digest, { size: l.size, done: 0 });
    this.phase = 'downloading';
    this.sample();
  }

  layer(digest: string, done: number): void {
    const l = this.layers.get(digest);
    if (!l || done <= l.done) return;
    l.done = Math.min(done, l.size);
    this.sample();
  }

  layerDone(digest: string): void {
    const l = this.layers.get(digest);
    if (l) this.layer(digest, l.size);
  }

  setLooks(l: ImageLooks): void {
    this.tellLooks(l);
  }

  setPhase(phase: PullPhase): void {
    this.phase = phase;
    if (phase === 'failed') this.tellLooks(undefined);
    this.emit();
  }

  /** Calls `fn` with each change of phase and at most once per sample; returns the unsubscribe. */
  subscribe(fn: (s: PullSnapshot) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  snapshot(): PullSnapshot {
    const t = this.now();
    let bytesDone = 0;
    let bytesTotal = 0;
    let layersDone = 0;
    for (const l of this.layers.values()) {
      bytesDone += l.done;
      bytesTotal += l.size;
      if (l.done === l.size) layersDone++;
    }
    const rate = this.rate(t);
    const left = bytesTotal - bytesDone;
    return {
      image: this.image,
      phase: this.phase,
      bytesDone,
      bytesTotal,
      layersDone,
      layersTotal: this.layers.size,
      rate,
      ...(rate > 0 && left > 0 ? { etaSeconds: left / rate } : {}),
      elapsedMs: t - this.started,
    };
  }

  private rate(t: number): number {
    const inWindow = this.samples.filter((s) => t - s.t <= RATE_WINDOW_MS);
    const first = inWindow[0] ?? this.samples.at(-1);
    const last = this.samples.at(-1);
    if (!first || !last) return 0;
    // Until the window has filled, the rate is over the time since the first sample.
    const span = Math.max(t - first.t, 1);
    return span < 50 ? 0 : ((last.bytes - first.bytes) * 1000) / span;
  }

  private sample(): void {
    const t = this.now();
    let bytes = 0;
    for (const l of this.layers.values()) bytes += l.done;
    const last = this.samples.at(-1);
    // One sample per 100 ms is plenty for a 5 s window and keeps the list short on fast pulls.
    if (last && t - last.t < 100) {
      last.bytes = bytes;
      return;
    }
    this.samples.push({ t, bytes });
    while (this.samples.length > 2 && t - this.samples[1]!.t > RATE_WINDOW_MS) this.samples.shift();
    this.emit();
  }

  private emit(): void {
    if (this.listeners.size === 0) return;
    const s = this.snapshot();
    for (const fn of this.listeners) fn(s);
  }
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${UNITS[i]}`;
}

export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line for a terminal: a bar of `width` cells, percent, bytes, rate and ETA. */
export function progressLine(s: PullSnapshot, width = 30): string {
  if (s.phase === 'resolving') return `${s.image}: resolving`;
  const frac = s.bytesTotal > 0 ? s.bytesDone / s.bytesTotal : 0;
  const filled = Math.round(frac * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const tail = s.phase === 'preparing' ? 'preparing' : `${formatBytes(s.rate)}/s ETA ${formatEta(s.etaSeconds)}`;
  return `${bar} ${pct} ${formatBytes(s.bytesDone)}/${formatBytes(s.bytesTotal)} ${tail}`;
}
