// ExecSync: a command in the guest through qemu-guest-agent (guest-exec), its output and exit code
// (exec probes). Exec: the same through the streaming server (crictl/kubectl exec without a TTY):
// the RPC checks and registers the request, the stream runs execSync when the client connects.
// No container lock: an exec may run as long as it likes and must not hold up Stop or Status.
import { invalidArgument, failedPrecondition, VmletError } from '../errors.js';
import { existingAgentSocket, guestAgentFor, GuestAgentError } from '../vm/guest-agent.js';
import { guestExec } from '../vm/guest-exec.js';
import type { StreamServer } from '../stream/server.js';
import type { ExecStreamRequest } from '../stream/backend.js';
import type { PodManager } from './manager.js';
import { requireRunning } from './records.js';
import { execSyncSandboxed } from './sandboxed-exec.js';

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/**
 * Runs `cmd` in the container's VM. `timeoutSec` 0 means no limit; past a positive limit the call
 * fails with 'deadline-exceeded' (the kubelet counts an exec probe as timed out) and the command
 * is killed in the guest, best effort. A command ended by a signal exits with 128 + signal; one
 * the guest cannot start exits with 127 (not found) or 126 (not executable), the agent's message
 * on stderr, as a shell does. `stdin` is for callers other than the ExecSync RPC (which has none).
 */
export async function execSync(m: PodManager, containerId: string, cmd: string[], timeoutSec: number, stdin?: Buffer): Promise<ExecSyncResult> {
  const path = requireCommand(cmd);
  if (!Number.isFinite(timeoutSec) || timeoutSec < 0) throw invalidArgument(`timeout must be 0 (no limit) or a positive number of seconds, not ${timeoutSec}`);
  const c = m.mustContainer(containerId);
  if (c.kind === 'sandboxed') return execSyncSandboxed(m, c, cmd, timeoutSec, stdin);
  requireRunning(c, 'exec needs a running container');
  const socket = existingAgentSocket(m.store.containerDir(c.sandboxId, c.id), c.id);
  const agent = guestAgentFor(socket, { log: m.log });
  const started = performance.now();
  const fields = { containerId: c.id, podSandboxId: c.sandboxId, command: path }; // never the arguments: they may carry secrets
  const ms = () => Math.round((performance.now() - started) * 10) / 10;
  let res: ExecSyncResult;
  try {
    const r = await guestExec(agent, { path, args: cmd.slice(1), ...(stdin ? { input: stdin } : {}) }, { timeoutMs: timeoutSec * 1000 });
    res = { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
    if (r.truncated) m.log.warn({ ...fields }, 'exec output cut at the guest agent limit (16 MiB a stream)');
  } catch (err) {
    const notStarted = cannotStart(err);
    if (!notStarted) {
      m.log.warn({ ...fields, durationMs: ms(), err: (err as Error).message, kind: err instanceof VmletError ? err.kind : 'internal' }, 'exec failed');
      throw err;
    }
    res = notStarted;
  }
  m.log.info({ ...fields, exitCode: res.exitCode, durationMs: ms() }, 'exec');
  return res;
}

/** Exec: the streaming URL the client connects to. No TTY: qemu-guest-agent cannot give one. */
export function execContainer(m: PodManager, streams: Pick<StreamServer, 'registerExec'>, req: ExecStreamRequest): string {
  const c = m.mustContainer(req.containerId);
  requireCommand(req.cmd);
  requireRunning(c, 'exec needs a running VM');
  if (req.tty && c.kind !== 'sandboxed') {
    throw failedPrecondition('exec with a TTY (-t) needs a terminal in the guest, and qemu-guest-agent cannot provide one: run the command without -t, or use attach for the serial console');
  }
  return streams.registerExec({ ...req, containerId: c.id, tty: req.tty && c.kind === 'sandboxed' });
}

/** cmd[0], the command to run; InvalidArgument when there is none. */
function requireCommand(cmd: readonly string[]): string {
  const path = cmd[0];
  if (!path) throw invalidArgument('cmd is required: cmd[0] is the command to run in the guest');
  return path;
}

/**
 * The agent could not spawn the command. qemu-ga 7.2 says: "Guest agent command failed, error was
 * 'Failed to execute child process “nope” (No such file or directory)'" (glib's message inside).
 */
function cannotStart(err: unknown): ExecSyncResult | undefined {
  if (!(err instanceof GuestAgentError) || err.command !== 'guest-exec') return undefined;
  const why = /Failed to execute child process[^']*/.exec(err.desc)?.[0];
  if (!why) return undefined;
  return { stdout: Buffer.alloc(0), stderr: Buffer.from(why + '\n'), exitCode: /No such file or directory/.test(why) ? 127 : 126 };
}
