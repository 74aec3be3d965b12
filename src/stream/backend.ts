// What the streaming server needs from the rest of vmlet, as plain data and Node streams, so
// it never imports pod/ or vm/ internals. pod/ (or serve.ts) implements StreamBackend; the
// building blocks for a VM runtime are in console-attach.ts, port-forward.ts and here.
import type { Duplex, Readable, Writable } from 'node:stream';
import type { TerminalSize } from './channel.js';

/** The CRI ExecRequest fields a stream depends on. */
export interface ExecStreamRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** The CRI AttachRequest fields a stream depends on. */
export interface AttachStreamRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** The CRI PortForwardRequest: the only ports a session reaches (a `?port=` may pick among them; server.ts). */
export interface PortForwardStreamRequest {
  podSandboxId: string;
  ports: number[];
}

/** The client's side of one exec/attach session. */
export interface StreamIO {
  /** Bytes the client types; ends when the client closes stdin. Undefined if stdin was not asked for. */
  stdin: Readable | undefined;
  /** Where output goes; undefined if not asked for. With tty, stderr is undefined (merged). */
  stdout: Writable | undefined;
  stderr: Writable | undefined;
  /** Terminal size changes (tty only). */
  onResize(listener: (size: TerminalSize) => void): void;
  /** Aborted when the client goes away (detach, network loss, server shutdown). */
  signal: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
}

export interface StreamBackend {
  /**
   * Streams the container's console until the client leaves (io.signal) or the console ends
   * (the VM stopped). Must never stop the VM. Rejects if the console cannot be opened.
   */
  attach(req: AttachStreamRequest, io: StreamIO): Promise<void>;
  /** Runs the command; resolves with its exit code, rejects when it cannot be run. */
  exec(req: ExecStreamRequest, io: StreamIO): Promise<ExecResult>;
  /** A byte stream to `port` inside the pod; rejects (message shown to the user) if it cannot connect. */
  portForward(podSandboxId: string, port: number): Promise<Duplex>;
}

export class ExecUnavailableError extends Error {
  override name = 'ExecUnavailableError';
  constructor() {
    super('exec streaming is not available yet');
  }
}

/** The exec stub until guest-agent exec lands (ExecSync first). */
export async function execUnavailable(_req: ExecStreamRequest, _io: StreamIO): Promise<ExecResult> {
  throw new ExecUnavailableError();
}
