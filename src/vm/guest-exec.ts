// A command in the guest through qemu-ga's guest-exec: start, poll its status, collect output,
// and kill it through the agent when the caller's deadline passes.
import { deadlineExceeded, invalidArgument } from '../errors.js';
import type { GuestAgent } from './guest-agent.js';

/** qemu-ga keeps at most this much of each output stream (GUEST_EXEC_MAX_OUTPUT). */
export const GUEST_EXEC_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * Most stdin vmlet hands to guest-exec. qemu-ga takes it whole, base64 in the request, so vmlet
 * holds all of it (and its base64) in memory: 16 MiB, as much as the agent keeps of each output
 * stream, is 21.4 MiB of base64, well under QEMU's 64 MiB JSON token limit.
 */
export const GUEST_EXEC_MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** The error for stdin past GUEST_EXEC_MAX_INPUT_BYTES (streams raise it before reading more). */
export function execInputTooLarge(limit = GUEST_EXEC_MAX_INPUT_BYTES): Error {
  return invalidArgument(
    `exec stdin is larger than ${limit / 1024 / 1024} MiB (${limit} bytes), the most vmlet passes to a VM's qemu-guest-agent, which takes stdin whole`,
  );
}

export interface GuestExecRequest {
  /** argv[0]; the agent searches its PATH when it has no slash. */
  path: string;
  args?: string[];
  /** KEY=VALUE; when given, the command gets only these (the agent's own environment otherwise). */
  env?: string[];
  /** Written to the command's stdin, which is then closed; /dev/null without it. */
  input?: Buffer;
}

export interface GuestExecResult {
  pid: number;
  stdout: Buffer;
  stderr: Buffer;
  /** The exit status, or 128 + signal when a signal ended the command (a shell's convention). */
  exitCode: number;
  signal?: number;
  /** The agent keeps at most GUEST_EXEC_MAX_OUTPUT_BYTES of each stream. */
  truncated: boolean;
}

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  'out-data'?: string;
  'err-data'?: string;
  'out-truncated'?: boolean;
  'err-truncated'?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs a command in the guest (guest-exec with captured output) and polls guest-exec-status with
 * backoff (10 ms doubling to 100 ms) until it exits. With timeoutMs, a command still running then
 * fails the call with 'deadline-exceeded'. The agent (QEMU 7.2, and no later version either) has
 * no command to stop a guest-exec'd process, so vmlet runs `/bin/sh -c 'kill -9 <pid>'` through
 * guest-exec, best effort, and collects both statuses so the agent frees its records.
 */
export async function guestExec(agent: GuestAgent, req: GuestExecRequest, opts: { timeoutMs?: number } = {}): Promise<GuestExecResult> {
  if (req.input && req.input.length > GUEST_EXEC_MAX_INPUT_BYTES) throw execInputTooLarge();
  const started = Date.now();
  const { pid } = await agent.request<{ pid: number }>('guest-exec', {
    path: req.path,
    arg: req.args ?? [],
    ...(req.env ? { env: req.env } : {}),
    ...(req.input && req.input.length > 0 ? { 'input-data': req.input.toString('base64') } : {}),
    'capture-output': true,
  });
  const deadline = opts.timeoutMs && opts.timeoutMs > 0 ? started + opts.timeoutMs : Infinity;
  let delay = 10;
  for (;;) {
    const wait = Math.min(delay, deadline - Date.now());
    if (wait > 0) await sleep(wait);
    const st = await agent.request<ExecStatus>('guest-exec-status', { pid });
    if (st.exited) return execResult(pid, st);
    if (Date.now() >= deadline) {
      void killAndReap(agent, pid);
      throw deadlineExceeded(`command ${JSON.stringify(req.path)} did not finish within ${opts.timeoutMs! / 1000} s (killed, pid ${pid} in the guest)`);
    }
    delay = Math.min(delay * 2, 100);
  }
}

function execResult(pid: number, st: ExecStatus): GuestExecResult {
  const signal = st.signal;
  return {
    pid,
    stdout: Buffer.from(st['out-data'] ?? '', 'base64'),
    stderr: Buffer.from(st['err-data'] ?? '', 'base64'),
    exitCode: signal !== undefined && signal > 0 ? 128 + signal : (st.exitcode ?? 0),
    ...(signal !== undefined && signal > 0 ? { signal } : {}),
    truncated: !!(st['out-truncated'] || st['err-truncated']),
  };
}

/** Best effort: kill a timed-out command and collect its status (and the kill's) so qemu-ga forgets both. */
async function killAndReap(agent: GuestAgent, pid: number): Promise<void> {
  const reap = async (p: number) => {
    for (let i = 0; i < 20; i++) {
      const st = await agent.request<ExecStatus>('guest-exec-status', { pid: p });
      if (st.exited) return;
      await sleep(100);
    }
  };
  try {
    const { pid: killer } = await agent.request<{ pid: number }>('guest-exec', { path: '/bin/sh', arg: ['-c', `kill -9 ${pid}`], 'capture-output': true });
    await reap(killer);
    await reap(pid);
  } catch {
    // The guest has no /bin/sh, or the agent went away: nothing more to do.
  }
}
