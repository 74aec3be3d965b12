// One worker thread for the process, shared by the conversations the main thread holds with it:
// started on the first, ended after a quiet minute (a thread holds tens of MiB), and while no
// conversation is open it does not hold the process open. A conversation is the messages routed
// to its key until its handler says it is over; a worker that dies ends its own conversations
// (only those: an idle one ended late may report its exit after a new one took over).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VmletError, type ErrorKind } from '../errors.js';

const IDLE_MS = 60_000;

/** An error as it crosses between threads: a VmletError keeps its kind, an fs error its code. */
export interface WireError {
  message: string;
  kind?: string;
  code?: string;
}

export function toWire(err: unknown): WireError {
  const e = err as { message?: string; code?: unknown };
  return {
    message: e.message ?? String(err),
    ...(err instanceof VmletError ? { kind: err.kind } : {}),
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
  };
}

/** The error as the other thread had it: same kind, or same fs code (ENOSPC, …). */
export function fromWire(e: WireError): VmletError {
  return Object.assign(new VmletError((e.kind as ErrorKind | undefined) ?? 'internal', e.message), e.code ? { code: e.code } : {});
}

interface Conversation<From> {
  worker: Worker;
  /** Gets each message for this key; true once the conversation is over. */
  on: (m: From) => boolean;
  /** The worker died first. */
  lost: (err: VmletError) => void;
}

export class WorkerThread<To, From> {
  private worker: Worker | undefined;
  private idle: NodeJS.Timeout | undefined;
  private readonly open = new Map<string, Conversation<From>>();

  /**
   * `module` is the worker's file beside `base` (import.meta.url of the caller) without its
   * extension; `keyOf` routes each message to its conversation; `name` is for errors.
   */
  constructor(
    private readonly base: string,
    private readonly module: string,
    private readonly name: string,
    private readonly keyOf: (m: From) => string,
    private readonly idleMs = IDLE_MS,
  ) {}

  /** The worker thread, while there is one (tests end it to check what its death does). */
  get thread(): Worker | undefined {
    return this.worker;
  }

  /** Opens conversation `key`; returns how to send to the worker that holds it. */
  talk(key: string, on: (m: From) => boolean, lost: (err: VmletError) => void): (m: To) => void {
    clearTimeout(this.idle);
    this.worker ??= this.spawn();
    this.worker.ref();
    const w = this.worker;
    this.open.set(key, { worker: w, on, lost });
    return (m: To) => w.postMessage(m);
  }

  /** Built: the .js beside the caller. From source (unit tests, tsx): the .ts, through tsx's loader. */
  private spawn(): Worker {
    const js = new URL(`./${this.module}.js`, this.base);
    const ts = new URL(`./${this.module}.ts`, this.base).href;
    const fromSource = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(ts)}); })`;
    const w = existsSync(fileURLToPath(js)) ? new Worker(js) : new Worker(fromSource, { eval: true });
    w.on('message', (m: From) => {
      const key = this.keyOf(m);
      const c = this.open.get(key);
      if (!c || !c.on(m)) return;
      this.open.delete(key);
      if (this.open.size === 0) this.quiet();
    });
    const died = (why: string) => {
      if (this.worker === w) this.worker = undefined;
      for (const [key, c] of this.open) {
        if (c.worker !== w) continue;
        this.open.delete(key);
        c.lost(new VmletError('internal', `${this.name}: ${why}`));
      }
    };
    w.on('error', (err) => died(err.message));
    w.on('exit', (code) => died(`exited with code ${code}`));
    return w;
  }

  /** Nothing open: the worker does not hold the process open, and ends if nothing comes. */
  private quiet(): void {
    this.worker?.unref();
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      const w = this.worker;
      this.worker = undefined;
      void w?.terminate();
    }, this.idleMs);
    this.idle.unref();
  }
}
