// Where a sandboxed container's output goes: its CRI log, and every attached client. The agent
// waits for write() (its flow control), so a slow attach client slows the container's output
// rather than filling vmlet's memory.
import type { Writable } from 'node:stream';
import type { StreamSink } from '../guest/agent-client.js';
import { ContainerLog } from './container-log.js';

export interface AttachedClient {
  stdout: Writable | undefined;
  stderr: Writable | undefined;
}

export class ContainerIo {
  log: ContainerLog;
  private readonly clients = new Set<AttachedClient>();
  private readonly exitListeners = new Set<() => void>();

  constructor(logPath: string) {
    this.log = new ContainerLog(logPath);
  }

  sink(): StreamSink {
    return { stdout: (d) => this.out('stdout', d), stderr: (d) => this.out('stderr', d) };
  }

  /** Sends output to `client` until `signal` aborts or the process exits; resolves then. */
  attach(client: AttachedClient, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.clients.delete(client);
        this.exitListeners.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      if (signal.aborted) return resolve();
      this.clients.add(client);
      this.exitListeners.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** The main process ended: partial lines are written out, attached clients are let go. */
  async exited(): Promise<void> {
    for (const l of [...this.exitListeners]) l();
    await this.log.flush().catch(() => undefined);
  }

  private async out(stream: 'stdout' | 'stderr', data: Buffer): Promise<void> {
    await this.log.write(stream, data).catch(() => undefined); // a log the kubelet removed must not stop the container
    for (const c of this.clients) {
      const w = c[stream] ?? (stream === 'stderr' ? undefined : c.stdout);
      if (w && !w.destroyed && !w.writableEnded) await new Promise<void>((resolve) => w.write(data, () => resolve()));
    }
  }
}
