// Copies a VM's serial console (the file virtlogd writes, which keeps growing while vmlet is
// down) into the container's CRI log, from a saved position (offset and the file's inode) so a
// vmlet restart neither loses nor repeats lines. Appends by path each time, so log rotation
// (ReopenContainerLog) needs nothing. virtlogd rotates its own file (console.log → .0 → .1 …,
// at max_size, 2 MiB by default): when the inode changes, the rest of the old file is read from
// its backup first, then any newer backups, then the new file, so nothing is lost or garbled.
// Each copy is logged ahead: the offset file says where the copy goes from and to, and how long
// the CRI log was, before the lines are appended; so a kill at any moment (even right after an
// append) resumes exactly once: savedPosition looks at the log to see whether the append was made.
// Nothing is fsynced: what a killed vmlet wrote stays in the page cache, in the order it was
// written, which is all exactly-once across a vmlet restart needs. Only a crash of the host's
// kernel could lose or repeat lines, and that takes the VMs with it (containerd does not sync its
// container logs either). The three fsyncs a copy once made cost a lone line 1.3 ms at idle, and
// up to 14 ms each (p90) while VMs write their disks.
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, open, stat, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { atomicWrite } from '../util/atomic-write.js';
import type { Logger } from '../log.js';
import { CriLogFormatter } from './cri-log.js';

const CHUNK = 256 * 1024;
/** virtlogd keeps max_backups (3 by default) rotated files; look a little further. */
const MAX_BACKUPS = 10;

/** Where the copy stands: bytes consumed of the console file with this inode. */
export interface ConsolePosition {
  offset: number;
  /** Inode of the file `offset` refers to; unknown for positions saved before rotation was handled. */
  ino?: number;
}

/** With inotify, the timer only backs it up (a missed event, a file that did not exist yet). */
const WATCHED_POLL_MS = 2_000;
/** Without it, the timer alone: the delay of a console line to the CRI log. */
const POLL_MS = 200;
/**
 * At most one copy started per this much: a chatty console is not one copy per write.
 * The first write after a quiet spell is copied at once (a lone line, a shell's prompt, used to
 * wait out the whole window). Within a burst, as a boot's, a line still waits for the copy under
 * way and its own.
 */
const BATCH_MS = 50;

export class ConsoleTailer {
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private batch: NodeJS.Timeout | undefined;
  /** When the watch last started a copy (performance.now()). */
  private lastCopy = -Infinity;
  private draining: Promise<void> | undefined;
  /** A write was seen while a copy ran: copy again once it ends. */
  private again = false;
  private fmt = new CriLogFormatter();
  /** Bytes of the console file consumed, including a partial line held in the formatter. */
  private consumed: number;
  private ino: number | undefined;

  constructor(
    readonly consoleLog: string,
    readonly logPath: string,
    /** Where the committed position is kept between runs (see position). */
    readonly offsetFile: string,
    start: ConsolePosition,
    private readonly log: Logger,
  ) {
    this.consumed = start.offset;
    this.ino = start.ino;
  }

  /**
   * The position that is safe to resume from: lines held back as partial are read again. (A
   * partial line that began in a rotated-away file restarts at the new file's start: its first
   * part is lost only if vmlet restarts right then.)
   */
  get position(): ConsolePosition {
    const offset = Math.max(0, this.consumed - this.fmt.pendingBytes);
    return this.ino === undefined ? { offset } : { offset, ino: this.ino };
  }

  /**
   * The position saved by an earlier run, if any: "<offset> <inode>" (or an offset alone), and
   * for a copy logged ahead (copy()) "<from> <inode> <to> <inode> <log inode> <log size before>
   * <log size after>". Then the CRI log at `logPath` says how far the copy got: appended whole →
   * resume at its end; not at all → at its start; in part (a kill or a full disk mid-write) → the
   * part is cut off and the copy made again. A log rotated away since is taken as appended.
   */
  static async savedPosition(offsetFile: string, logPath: string, log?: Logger): Promise<ConsolePosition | undefined> {
    let n: number[];
    try {
      n = (await readFile(offsetFile, 'utf8')).trim().split(/\s+/).map(Number);
    } catch {
      return undefined;
    }
    const pos = (offset: number | undefined, ino: number | undefined): ConsolePosition | undefined => {
      if (!(Number.isSafeInteger(offset) && offset! >= 0)) return undefined;
      return Number.isSafeInteger(ino) && ino! > 0 ? { offset: offset!, ino: ino! } : { offset: offset! };
    };
    const from = pos(n[0], n[1]);
    if (n.length < 7 || !n.every((x) => Number.isSafeInteger(x) && x >= 0)) return from;
    const [, , toOffset, toIno, logIno, logStart, logEnd] = n as [number, number, number, number, number, number, number];
    const to = pos(toOffset, toIno);
    let now;
    try {
      now = await stat(logPath);
    } catch {
      return to; // rotated away (the kubelet renamed it) after the copy: it was appended there
    }
    if (now.ino !== logIno || now.size >= logEnd) return to; // appended (or rotated away since)
    if (now.size < logStart) return to; // cut by someone else since: no telling, taken as appended
    if (now.size > logStart) {
      await truncate(logPath, logStart);
      log?.warn({ logPath, cutBytes: now.size - logStart, consoleOffset: from?.offset }, 'console copy cut short by a vmlet stop: its part in the CRI log removed, copied again');
    }
    return from;
  }

  /**
   * Copies as the console grows: on inotify events for the file (its directory is watched, so
   * the file's creation and virtlogd's rotation are seen too), at once after a quiet spell and
   * then at most once per BATCH_MS,
   * and on a slow timer as a safety net; on the timer alone where inotify is unavailable. An idle
   * console costs one stat() per tick (50 idle pods: 8% of a core with open+fstat every 200 ms).
   */
  start(intervalMs?: number): void {
    const name = basename(this.consoleLog);
    try {
      this.watcher = watch(dirname(this.consoleLog), { persistent: false }, (_event, file) => {
        if ((file === null || file === name) && !this.batch) {
          const wait = this.lastCopy + BATCH_MS - performance.now();
          const copy = () => {
            this.batch = undefined;
            this.lastCopy = performance.now();
            void this.drain();
          };
          if (wait <= 0) copy();
          else this.batch = setTimeout(copy, wait);
        }
      });
      this.watcher.on('error', (err) => {
        this.log.warn({ err: err.message, consoleLog: this.consoleLog }, 'console watch failed; polling every 200 ms');
        this.unwatch();
        this.restartTimer(POLL_MS);
      });
    } catch (err) {
      this.log.debug({ err: (err as Error).message, consoleLog: this.consoleLog }, 'console not watched; polling');
    }
    this.restartTimer(intervalMs ?? (this.watcher ? WATCHED_POLL_MS : POLL_MS));
    void this.drain();
  }

  private restartTimer(ms: number): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => void this.drain(), ms);
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.batch) clearTimeout(this.batch);
    this.batch = undefined;
  }

  /** Copies everything written so far; the final partial line is written too when `final`. */
  drain(final = false): Promise<void> {
    if (this.draining && !final) {
      this.again = true;
      return this.draining;
    }
    const run = (): Promise<void> =>
      this.copy(final)
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message, consoleLog: this.consoleLog }, 'console log copy failed'))
        .then(() => {
          if (!this.again) return;
          this.again = false;
          return run();
        });
    this.draining = (this.draining ?? Promise.resolve()).then(run).finally(() => (this.draining = undefined));
    return this.draining;
  }

  /** The VM has stopped: copy the rest, including a last line without a newline. */
  async stop(): Promise<void> {
    await this.halt();
    await this.drain(true);
  }

  /** vmlet is stopping but the VM runs on: copy what is complete; the next run resumes from committed. */
  async halt(): Promise<void> {
    this.unwatch();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.draining;
    await this.drain();
  }

  private async copy(final: boolean): Promise<void> {
    if (!final && this.ino !== undefined) {
      // The common case on a tick: nothing new. One stat() instead of open + fstat + close.
      const st = await stat(this.consoleLog).catch(() => undefined);
      if (st && st.ino === this.ino && st.size === this.consumed) return;
    }
    let fh;
    try {
      fh = await open(this.consoleLog, 'r');
    } catch {
      return; // QEMU has not started writing yet
    }
    const from = this.position;
    try {
      const out: Buffer[] = [];
      try {
        const { size, ino } = await fh.stat();
        if (this.ino !== undefined && ino !== this.ino) {
          await this.copyRotated(out);
          this.consumed = 0;
        } else if (size < this.consumed) {
          this.consumed = 0; // truncated in place
        }
        this.ino = ino;
        this.consumed = await this.read(fh, this.consumed, size, out);
      } finally {
        await fh.close();
      }
      if (final) out.push(this.fmt.flushBytes());
      const data = Buffer.concat(out);
      if (data.length > 0) await this.append(from, data);
    } catch (err) {
      // Not copied (the disk is full, say): the same bytes are read again next time.
      this.fmt = new CriLogFormatter();
      this.consumed = from.offset;
      this.ino = from.ino;
      throw err;
    }
  }

  /** Appends `data` (the console from `from` to this.position) to the CRI log, logged ahead in the offset file. */
  private async append(from: ConsolePosition, data: Buffer): Promise<void> {
    await mkdir(dirname(this.logPath), { recursive: true });
    const log = await open(this.logPath, 'a');
    try {
      const { ino: logIno, size: logStart } = await log.stat();
      // Written before the append: a stop at any point after it resumes exactly once (savedPosition).
      const to = this.position;
      await atomicWrite(this.offsetFile, `${from.offset} ${from.ino ?? 0} ${to.offset} ${to.ino ?? 0} ${logIno} ${logStart} ${logStart + data.length}\n`, 0o644, { sync: false });
      try {
        await log.writeFile(data); // all of it (a short write, on a full disk, goes on to its error)
      } catch (err) {
        await log.truncate(logStart).catch(() => undefined); // no half line left behind
        throw err;
      }
    } finally {
      await log.close();
    }
  }

  /** Reads [from, to) of fh through the formatter into out; returns where it stopped. */
  private async read(fh: FileHandle, from: number, to: number, out: Buffer[]): Promise<number> {
    const buf = Buffer.alloc(CHUNK);
    let at = from;
    while (at < to) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, to - at), at);
      if (bytesRead === 0) break;
      at += bytesRead;
      out.push(this.fmt.pushBytes(buf.subarray(0, bytesRead)));
    }
    return at;
  }

  /** The file we were reading was rotated: the rest of it, then every newer backup, oldest first. */
  private async copyRotated(out: Buffer[]): Promise<void> {
    const backups: Array<{ path: string; ino: number }> = [];
    for (let i = 0; i < MAX_BACKUPS; i++) {
      const path = `${this.consoleLog}.${i}`;
      try {
        backups.push({ path, ino: (await stat(path)).ino });
      } catch {
        break;
      }
    }
    const at = backups.findIndex((b) => b.ino === this.ino);
    if (at < 0) {
      this.log.warn({ consoleLog: this.consoleLog, lostAfterOffset: this.consumed }, 'console file rotated out of reach of its backups: the rest of it is not in the CRI log');
      return;
    }
    for (let i = at; i >= 0; i--) {
      const fh = await open(backups[i]!.path, 'r');
      try {
        await this.read(fh, i === at ? this.consumed : 0, (await fh.stat()).size, out);
      } finally {
        await fh.close();
      }
    }
  }
}
