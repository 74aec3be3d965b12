// Exec, ExecSync and Attach for sandboxed pods' containers, through vmlet's guest agent: a real
// process in the container's rootfs with its own stdio stream, with or without a TTY.
import type { Readable } from 'node:stream';
import { deadlineExceeded, failedPrecondition, VmletError } from '../errors.js';
import type { AgentClient } from '../guest/agent-client.js';
import type { AttachStreamRequest, ExecResult, ExecStreamRequest, StreamIO } from '../stream/backend.js';
import type { TerminalSize } from '../stream/channel.js';
import type { PodManager } from './manager.js';
import { podVmOf } from './podvm-boot.js';
import type { PodVm } from './podvm.js';
import { requireRunning, type ContainerRecord } from './records.js';

/** Each of ExecSync's outputs is kept up to this; the rest is dropped (and said in the log). */
const EXEC_SYNC_MAX_BYTES = 16 * 1024 * 1024;
/** kubectl and crictl send the terminal's size right after connecting; a TTY exec waits this long for it. */
const INITIAL_SIZE_WAIT_MS = 250;

export interface SyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

function running(m: PodManager, c: ContainerRecord, what: string): PodVm {
  requireRunning(c, `${what} needs a running container`);
  const s = m.mustSandbox(c.sandboxId);
  const p = podVmOf(m, s);
  if (!p) throw failedPrecondition(`pod ${s.id}'s VM is not running`);
  return p;
}

/** The agent refused to start the command: as a shell would say it (127 not found, 126 not runnable). */
function notStarted(err: unknown): SyncResult | undefined {
  if (!(err instanceof VmletError) || (err.kind !== 'not-found' && err.kind !== 'invalid-argument')) return undefined;
  return { stdout: Buffer.alloc(0), stderr: Buffer.from(err.message + '\n'), exitCode: err.kind === 'not-found' ? 127 : 126 };
}

async function killExec(agent: AgentClient, c: ContainerRecord, stream: number): Promise<void> {
  await agent.signal(c.id, 9, stream).catch(() => undefined);
}

export async function execSyncSandboxed(m: PodManager, c: ContainerRecord, cmd: string[], timeoutSec: number, stdin?: Buffer): Promise<SyncResult> {
  const p = running(m, c, 'exec');
  const agent = await p.agent();
  const stream = p.execStream();
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const size = { stdout: 0, stderr: 0 };
  let truncated = false;
  const keep = (which: 'stdout' | 'stderr') => (d: Buffer) => {
    const room = EXEC_SYNC_MAX_BYTES - size[which];
    if (d.length > room) truncated = true;
    if (room > 0) {
      out[which].push(d.subarray(0, room));
      size[which] += Math.min(room, d.length);
    }
  };
  const detach = agent.attachSink(stream, { stdout: keep('stdout'), stderr: keep('stderr') });
  const exited = p.waitExit(stream, timeoutSec * 1000);
  try {
    try {
      await agent.exec({ id: c.id, stream, args: cmd, env: [], tty: false, stdin: !!stdin });
    } catch (err) {
      const res = notStarted(err);
      if (res) return res;
      throw err;
    }
    if (stdin) {
      agent.writeStdin(stream, stdin);
      agent.closeStdin(stream);
    }
    const e = await exited;
    if (!e) {
      await killExec(agent, c, stream);
      throw deadlineExceeded(`command ${JSON.stringify(cmd[0])} timed out after ${timeoutSec} s`);
    }
    if (truncated) m.log.warn({ containerId: c.id }, 'exec output cut at 16 MiB a stream');
    return { stdout: Buffer.concat(out.stdout), stderr: Buffer.concat(out.stderr), exitCode: e.exitCode };
  } finally {
    detach();
  }
}

const write = (w: NodeJS.WritableStream | undefined, d: Buffer) =>
  new Promise<void>((resolve) => {
    if (!w) return resolve();
    w.write(d, () => resolve());
  });

/**
 * Terminal size changes → the stream's pty. Those before started() are held and the last one
 * applied then; first() waits a little for the size a client sends as soon as it connects.
 */
function followResizes(agent: AgentClient, stream: number, io: StreamIO): { first(ms: number): Promise<TerminalSize | undefined>; started(): Promise<void> } {
  let last: TerminalSize | undefined;
  let live = false;
  let wake: (() => void) | undefined;
  io.onResize((sz) => {
    last = sz;
    wake?.();
    if (live) void agent.resize(stream, sz.width, sz.height).catch(() => undefined);
  });
  return {
    async first(ms) {
      if (!last) await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      return last;
    },
    async started() {
      live = true;
      if (last) await agent.resize(stream, last.width, last.height).catch(() => undefined);
    },
  };
}

function pumpStdin(agent: AgentClient, stream: number, stdin: Readable, closeAtEnd: boolean): void {
  stdin.on('data', (d: Buffer) => agent.writeStdin(stream, Buffer.from(d)));
  stdin.once('end', () => {
    if (closeAtEnd) agent.closeStdin(stream);
  });
}

export async function execStreamSandboxed(m: PodManager, req: ExecStreamRequest, io: StreamIO): Promise<ExecResult> {
  const c = m.mustContainer(req.containerId);
  const p = running(m, c, 'exec');
  const agent = await p.agent();
  const stream = p.execStream();
  const detach = agent.attachSink(stream, {
    stdout: (d) => write(io.stdout, d),
    stderr: (d) => write(io.stderr ?? (req.tty ? io.stdout : undefined), d),
  });
  const exited = p.waitExit(stream, 0, io.signal);
  // kubectl sends the terminal's size as soon as the stream opens, before the process exists:
  // the latest size is kept and applied once it does.
  const resizes = followResizes(agent, stream, io);
  const size = req.tty ? await resizes.first(INITIAL_SIZE_WAIT_MS) : undefined;
  try {
    try {
      await agent.exec({ id: c.id, stream, args: req.cmd, env: [], tty: req.tty, stdin: !!io.stdin, ...(size ? { cols: size.width, rows: size.height } : {}) });
    } catch (err) {
      const res = notStarted(err);
      if (!res) throw err;
      await write(io.stderr ?? io.stdout, res.stderr);
      return { exitCode: res.exitCode };
    }
    await resizes.started();
    if (io.stdin) pumpStdin(agent, stream, io.stdin, true);
    const e = await exited;
    if (!e) {
      await killExec(agent, c, stream); // the client went away: its command does not outlive it
      return { exitCode: 137 };
    }
    return { exitCode: e.exitCode };
  } finally {
    detach();
  }
}

/** Attach: the container's own stdio, both ways, until the client leaves or the container exits. */
export async function attachSandboxed(m: PodManager, req: AttachStreamRequest, io: StreamIO): Promise<void> {
  const c = m.mustContainer(req.containerId);
  const p = running(m, c, 'attach');
  const agent = await p.agent();
  const stream = c.stream!;
  if (io.stdin && c.config.stdin) pumpStdin(agent, stream, io.stdin, !!c.config.stdin_once);
  if (c.config.tty) await followResizes(agent, stream, io).started();
  await p.ioOf(c.id, c.logPath).attach({ stdout: req.stdout ? io.stdout : undefined, stderr: req.stderr ? io.stderr : undefined }, io.signal);
}
