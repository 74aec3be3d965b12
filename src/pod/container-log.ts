// A sandboxed container's CRI log file: stdout and stderr bytes from the guest agent, each stream
// cut into its own CRI lines (`<ts> stdout F …`, `<ts> stderr F …`), appended in arrival order.
// Writes are queued one after another; the promise of write() is what the agent's flow control
// waits on, so a slow disk slows the container, never vmlet's memory.
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CriLogFormatter } from '../stream/cri-log.js';

export class ContainerLog {
  private file: Promise<FileHandle | undefined> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly fmt = { stdout: new CriLogFormatter('stdout'), stderr: new CriLogFormatter('stderr') };

  /** `path` empty: no CRI log was asked for; output is dropped. */
  constructor(readonly path: string) {}

  write(stream: 'stdout' | 'stderr', data: Buffer): Promise<void> {
    return this.enqueue(async () => {
      const out = this.fmt[stream].pushBytes(data);
      if (out.length) await this.append(out);
    });
  }

  /** Ends the partial lines of both streams (the process exited). */
  flush(): Promise<void> {
    return this.enqueue(async () => {
      const out = Buffer.concat([this.fmt.stdout.flushBytes(), this.fmt.stderr.flushBytes()]);
      if (out.length) await this.append(out);
    });
  }

  /** Creates the file now (containerd does at start: a container that prints nothing still has a log). */
  open(): Promise<void> {
    return this.enqueue(async () => {
      await this.handle();
    });
  }

  /** ReopenContainerLog: the kubelet rotated the file; later lines go to a new one at the path. */
  reopen(): Promise<void> {
    return this.enqueue(async () => {
      const f = await this.file;
      this.file = undefined;
      await f?.close();
      await this.handle();
    });
  }

  close(): Promise<void> {
    return this.enqueue(async () => {
      const f = await this.file;
      this.file = undefined;
      await f?.close();
    });
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private handle(): Promise<FileHandle | undefined> {
    this.file ??= this.path
      ? mkdir(dirname(this.path), { recursive: true })
          .then(() => open(this.path, 'a', 0o640))
          .catch((err: unknown) => {
            this.file = undefined; // the next line tries again (the kubelet may make the dir later)
            throw err;
          })
      : Promise.resolve(undefined);
    return this.file;
  }

  private async append(data: Buffer): Promise<void> {
    const f = await this.handle();
    if (f) await f.write(data);
  }
}
