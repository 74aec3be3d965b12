// The StreamBackend for VM pods, from two lookups the caller supplies (pod/ or serve.ts knows
// the records and the libvirt connection; this file does not):
//   consolePty(containerId): the serial pty path of a running container's domain (read the live
//     domain XML through the VM driver's consolePty); throw if the container is not running.
//   podAddress(podSandboxId): the pod IP (routable from the host netns).
//   exec(req, io): runs a command in the guest (optional: without it exec answers 'not available').
//     qemu-guest-agent takes stdin whole, so exec reads it to its end before running anything:
//     the stdin it sees stops with an error past GUEST_EXEC_MAX_INPUT_BYTES, so that a client
//     cannot make vmlet buffer an endless stdin.
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { GUEST_EXEC_MAX_INPUT_BYTES, execInputTooLarge } from '../vm/guest-exec.js';
import { execUnavailable, type StreamBackend } from './backend.js';
import { ConsoleAttacher } from './console-attach.js';
import { dialTcp } from './port-forward.js';

export interface VmStreamLookups {
  consolePty(containerId: string): Promise<string>;
  podAddress(podSandboxId: string): Promise<string>;
  exec?: StreamBackend['exec'];
}

export function vmStreamBackend(lookups: VmStreamLookups, attacher = new ConsoleAttacher()): StreamBackend {
  return {
    async attach(req, io) {
      await attacher.attach(await lookups.consolePty(req.containerId), io);
    },
    exec: lookups.exec ? (req, io) => lookups.exec!(req, io.stdin ? { ...io, stdin: capped(io.stdin, GUEST_EXEC_MAX_INPUT_BYTES) } : io) : execUnavailable,
    async portForward(podSandboxId, port): Promise<Duplex> {
      return dialTcp(await lookups.podAddress(podSandboxId), port);
    },
  };
}

/**
 * `src` passed through until `max` bytes; one byte more destroys both (src stops buffering what
 * the client still sends) and the reader gets execInputTooLarge().
 */
export function capped(src: Readable, max: number): Readable {
  const out = new PassThrough();
  let n = 0;
  src.on('data', (c: Buffer) => {
    n += c.length;
    if (n > max) {
      src.destroy();
      out.destroy(execInputTooLarge(max));
      return;
    }
    if (!out.write(c)) src.pause();
  });
  out.on('drain', () => src.resume());
  src.on('end', () => out.end());
  src.on('error', (err) => out.destroy(err));
  return out;
}
