// When virtlogd dies (kill -9, a crash, the OOM killer), the pipe each QEMU writes its console
// log into loses its reader, and libvirt cannot give a running QEMU a new one: the console file,
// and so the container's CRI log, would stay silent until the VM restarts, even once virtlogd is
// back. vmlet then takes virtlogd's place for that VM: when no virtlogd holds the pipe, it opens
// QEMU's end of it through /proc for reading (a pipe opened there gets a new reader) and appends
// what it reads to the console file, rotated as virtlogd rotates it, so the console tailer goes on
// as before. Whether a pipe has a reader cannot be asked of the pipe (an open through /proc never
// fails with ENXIO as a FIFO's does), so the pipes virtlogd holds are looked at. A re-executed
// virtlogd (SIGUSR1, its reload) keeps its pipes: nothing to do. Bytes QEMU wrote while nobody
// read them are lost; a line (LOST_MARK) says where, on the line virtlogd left unfinished if it
// did, so no cut line reads as a whole one. (The first line read may be the end of a cut one.)
import { closeSync, constants, openSync, readdirSync, readFileSync, readlinkSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from '../log.js';

/** virtlogd's defaults (virtlogd.conf max_size, max_backups). */
const MAX_SIZE = 2 * 1024 * 1024;
const MAX_BACKUPS = 3;
const CHECK_MS = 2_000;
/** Written into the console at a take-over: the guest's output before it, since virtlogd's death, is lost. */
export const LOST_MARK = '[vmlet] console output lost here: virtlogd stopped reading it; vmlet copies it from now on';

/**
 * QEMU's write end of its console log pipe: the one write-only pipe it holds besides stdout and
 * stderr (libvirt passes it in an fdset; QEMU keeps that fd and its dup, both the same pipe), as a
 * /proc path and the pipe's id (`pipe:[inode]`). Undefined when there is none or more than one.
 */
export function consoleLogPipe(pid: number): { path: string; pipe: string } | undefined {
  const dir = `/proc/${pid}/fd`;
  const pipes = new Map<string, string>();
  let fds: string[];
  try {
    fds = readdirSync(dir);
  } catch {
    return undefined; // QEMU gone
  }
  for (const fd of fds) {
    if (fd === '0' || fd === '1' || fd === '2') continue;
    try {
      const target = readlinkSync(`${dir}/${fd}`);
      if (!target.startsWith('pipe:')) continue;
      const flags = /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & 3) === constants.O_WRONLY && !pipes.has(target)) pipes.set(target, `${dir}/${fd}`);
    } catch {
      // closed meanwhile
    }
  }
  if (pipes.size !== 1) return undefined;
  const [pipe, path] = [...pipes][0]!;
  return { path, pipe };
}

let listed: { at: number; pipes: Set<string> | undefined } | undefined;
/** When virtlogd's processes were last seen alive. */
let checkedAt = 0;
let virtlogdPids: number[] = [];
/**
 * A virtlogd that lives on keeps its pipes (a re-exec too), so its fds are listed only every
 * 10 s, as a safety net: with 50 idle VMs, listing them every second (a readlink per fd) was
 * about half of vmlet's own JavaScript. A virtlogd that dies is seen within a second.
 */
const LIST_MS = 10_000;
const ALIVE_MS = 1_000;

/**
 * The pipes (`pipe:[inode]`) the node's virtlogd processes hold, shared by every VM's check:
 * processes and pipes looked up again every LIST_MS, at once when a virtlogd process is gone
 * (checked at most once a second), and with `fresh`. Undefined when a virtlogd's fds cannot be read (then
 * nobody is taken over). A pipe missing from a remembered list may be newer than the list: ask
 * again with `fresh` before deciding nobody reads it.
 */
export function virtlogdPipes(now = Date.now(), fresh = false): Set<string> | undefined {
  if (listed && !fresh && now - listed.at < LIST_MS) {
    if (now - checkedAt < ALIVE_MS) return listed.pipes;
    checkedAt = now;
    if (virtlogdPids.length && virtlogdPids.every(isVirtlogd)) return listed.pipes;
  }
  // Processes looked up again too: a virtlogd started beside one that lives on is seen in 10 s.
  virtlogdPids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter(isVirtlogd);
  let pipes: Set<string> | undefined = new Set<string>();
  for (const pid of virtlogdPids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // gone meanwhile
      pipes = undefined; // not ours to read (vmlet not root): tell nothing
      break;
    }
    for (const fd of fds) {
      try {
        const t = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (t.startsWith('pipe:')) pipes.add(t);
      } catch {
        // closed meanwhile
      }
    }
  }
  listed = { at: now, pipes };
  checkedAt = now;
  return pipes;
}

function isVirtlogd(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'virtlogd' && stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

export class ConsoleRescue {
  private timer: NodeJS.Timeout | undefined;
  private reader: Socket | undefined;
  private out: number | undefined;
  private size = 0;
  /** QEMU's console pipe, looked up once per QEMU (none: console logs not through virtlogd). */
  private pipe: { pid: number; found?: { path: string; pipe: string } } | undefined;

  constructor(
    readonly consoleLog: string,
    private readonly qemuPid: () => number | undefined,
    private readonly log: Logger,
  ) {}

  /** Looks every CHECK_MS: QEMU's fds once per QEMU, then the virtlogd pipe list (shared by every VM, read at most once a second). */
  start(intervalMs = CHECK_MS): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
    this.check();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.end();
  }

  get rescuing(): boolean {
    return this.reader !== undefined;
  }

  private check(): void {
    if (this.reader || !this.timer) return;
    const pid = this.qemuPid();
    if (pid === undefined) return;
    if (this.pipe?.pid !== pid) {
      const found = consoleLogPipe(pid);
      this.pipe = found ? { pid, found } : { pid };
    }
    const found = this.pipe.found;
    if (!found) return;
    // A VM started since the list was read has a pipe virtlogd holds but the list lacks: taking
    // it over then would split the console between two readers (lines lost, cut, a false mark).
    let held = virtlogdPipes();
    if (held && !held.has(found.pipe)) held = virtlogdPipes(Date.now(), true);
    if (!held || held.has(found.pipe)) return;
    let fd: number;
    try {
      // The console file first: a pipe opened and then dropped would be an fd leaked.
      this.out = openSync(this.consoleLog, 'a', 0o600);
      this.size = statSync(this.consoleLog).size;
      fd = openSync(found.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      this.log.warn({ consoleLog: this.consoleLog, err: (err as Error).message }, 'cannot take over the console from virtlogd');
      this.end();
      return;
    }
    // Where output was lost, said in the console (and so in the CRI log): on the line virtlogd
    // left unfinished, if it did, so that no cut line reads as a whole one.
    this.write(Buffer.from(`${this.endsLine() ? '' : ' '}${LOST_MARK}\n`));
    this.reader = new Socket({ fd, readable: true, writable: false });
    this.reader.on('data', (chunk: Buffer) => this.write(chunk));
    this.reader.on('error', (err) => this.log.warn({ consoleLog: this.consoleLog, err: err.message }, 'console pipe read failed'));
    this.reader.on('close', () => this.end());
    this.log.warn({ consoleLog: this.consoleLog, qemuPid: pid }, 'virtlogd no longer reads this VM\'s console (it died or was restarted without re-executing): vmlet copies it into the console file');
  }

  private write(chunk: Buffer): void {
    try {
      if (this.size > 0 && this.size + chunk.length > MAX_SIZE) this.rotate();
      for (let off = 0; off < chunk.length; ) off += writeSync(this.out!, chunk, off);
      this.size += chunk.length;
    } catch (err) {
      this.log.warn({ consoleLog: this.consoleLog, err: (err as Error).message, lostBytes: chunk.length }, 'cannot write the console file');
    }
  }

  /** Whether the console file is empty or ends with a newline. */
  private endsLine(): boolean {
    if (this.size === 0) return true;
    const last = Buffer.alloc(1);
    try {
      const fd = openSync(this.consoleLog, 'r');
      try {
        readSync(fd, last, 0, 1, this.size - 1);
      } finally {
        closeSync(fd);
      }
    } catch {
      return true;
    }
    return last[0] === 10;
  }

  /** As virtlogd does: console.log → .0 → .1 …, the oldest dropped; the tailer follows (console-tailer.ts). */
  private rotate(): void {
    closeSync(this.out!);
    this.out = undefined;
    rmSync(`${this.consoleLog}.${MAX_BACKUPS - 1}`, { force: true });
    for (let i = MAX_BACKUPS - 2; i >= 0; i--) {
      try {
        renameSync(`${this.consoleLog}.${i}`, `${this.consoleLog}.${i + 1}`);
      } catch {
        // no such backup yet
      }
    }
    renameSync(this.consoleLog, `${this.consoleLog}.0`);
    this.out = openSync(this.consoleLog, 'a', 0o600);
    this.size = 0;
  }

  private end(): void {
    const hadReader = this.reader !== undefined;
    this.reader?.destroy();
    this.reader = undefined;
    if (this.out !== undefined) closeSync(this.out);
    this.out = undefined;
    if (hadReader && this.timer) this.log.info({ consoleLog: this.consoleLog }, 'console pipe closed (QEMU exited)');
  }
}
