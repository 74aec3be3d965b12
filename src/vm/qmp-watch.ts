// A VM's end, heard from QEMU itself: vmlet's own QMP monitor on a socket QEMU listens on
// (domain-xml.ts monitorArgs), held open while the VM runs. When QEMU dies its end of the socket
// closes, at the moment libvirtd's own monitor sees EOF. libvirtd's lifecycle event comes later:
// it first sends the dying QEMU SIGTERM and, finding it not yet reaped, sleeps 200 ms before
// looking again (virProcessKillPainfully: 202 ms from its monitor's EOF to its stop in libvirtd's
// debug log). bench/exit-detect.ts: this watch hears a kill -9 ~30 ms after it, libvirtd's event
// comes at ~280 ms.
//
// Why the VM ended, told the way libvirtd tells it: QEMU sends every monitor a SHUTDOWN event
// before a clean exit ({"guest": true} when the guest powered off), written before the exit, so
// on this one socket it always precedes the close (libvirtd classifies on the same order: "closed
// without SHUTDOWN event; assuming the domain crashed"). A close after a guest SHUTDOWN is a
// 'shutdown'; with no SHUTDOWN at all QEMU was killed or crashed: 'crashed'. A host-initiated
// SHUTDOWN (someone's SIGTERM, libvirt's destroy) leaves the reason to libvirtd, which knows
// whether its destroy did it: `undefined`.
//
// QEMU is not the guest, but some event fields carry guest-chosen strings: a line longer than
// MAX_LINE_BYTES drops the connection (not an end: the watch just stops).
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { Logger } from '../log.js';

/** Longest QMP line kept; QEMU's events are a few hundred bytes. */
export const MAX_LINE_BYTES = 64 * 1024;

/** How a watched VM ended: libvirt's words for it, or undefined when libvirtd must say. */
export type QmpEnd = 'shutdown' | 'crashed' | undefined;

/** What the event stream says so far: pure, so its rules are tested without QEMU. */
export class QmpEndState {
  private guestShutdown = false;
  private hostShutdown = false;
  /** Capabilities negotiated: QEMU sends events only after that. */
  ready = false;

  /** One parsed QMP message. */
  push(msg: unknown): void {
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as { return?: unknown; event?: unknown; data?: { guest?: unknown } };
    if (!this.ready && 'return' in m) this.ready = true;
    if (m.event === 'SHUTDOWN') {
      if (m.data?.guest === true) this.guestShutdown = true;
      else this.hostShutdown = true;
    } else if (m.event === 'RESET') {
      // A guest reboot resets in place (on_reboot restart): an earlier poweroff request no longer
      // says how this run ends.
      this.guestShutdown = false;
      this.hostShutdown = false;
    }
  }

  /** The end a close of the socket now means. Before the negotiation: not known (libvirtd says). */
  end(): QmpEnd {
    if (!this.ready) return undefined;
    if (this.guestShutdown) return 'shutdown';
    if (this.hostShutdown) return undefined;
    return 'crashed';
  }
}

/** Longest wait for QEMU to answer the negotiation: a QEMU that does not must not hold up a StartContainer. */
export const CONNECT_TIMEOUT_MS = 5_000;

export interface QmpWatchOptions {
  log: Logger;
  /** Default CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /** Called once, when QEMU closed the socket (QEMU is gone); not after close(). */
  onEnd: (end: QmpEnd) => void;
  /** Called once if the watch gives up by itself after it was watching (a line over MAX_LINE_BYTES): no end is known. */
  onDrop?: () => void;
}

/** One VM's watch: connect(), then onEnd when QEMU goes away. */
export class QmpWatch {
  private sock: Socket | undefined;
  private readonly state = new QmpEndState();
  private closed = false;
  private buf = '';

  constructor(
    readonly socketPath: string,
    private readonly o: QmpWatchOptions,
  ) {}

  /**
   * Connects and negotiates; resolves true once events flow, false when there is nothing to
   * watch (no socket: a VM started before vmlet gave QEMU one, or QEMU already gone).
   */
  connect(): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.o.log.warn({ socket: this.socketPath, timeoutMs: this.o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS }, "QMP watch: QEMU did not answer; not watched (libvirt's events still report the VM's end)");
        this.close();
        resolve(false);
      }, this.o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS);
      timer.unref();
      const done = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      const sock = connect(this.socketPath);
      this.sock = sock;
      let connected = false;
      sock.setEncoding('utf8');
      sock.unref(); // a watch must not keep vmlet alive
      sock.once('connect', () => {
        connected = true;
        sock.write('{"execute":"qmp_capabilities"}\n');
      });
      sock.on('data', (chunk: string) => {
        this.buf += chunk;
        let nl;
        while ((nl = this.buf.indexOf('\n')) >= 0) {
          const line = this.buf.slice(0, nl).trim();
          this.buf = this.buf.slice(nl + 1);
          if (!line) continue;
          const wasReady = this.state.ready;
          try {
            this.state.push(JSON.parse(line));
          } catch {
            this.o.log.debug({ socket: this.socketPath }, 'QMP watch: a line that is not JSON ignored');
          }
          if (!wasReady && this.state.ready) done(true);
        }
        if (this.buf.length > MAX_LINE_BYTES) {
          this.o.log.warn({ socket: this.socketPath, bytes: this.buf.length }, `QMP watch: a line over ${MAX_LINE_BYTES} bytes; watch dropped (libvirt's events still report the VM's end)`);
          this.close();
          done(false);
          this.o.onDrop?.();
        }
      });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        // ENOENT / ECONNREFUSED: no socket, or QEMU gone before we came; 'close' follows.
        if (!connected) this.o.log.debug({ socket: this.socketPath, err: err.code ?? err.message }, 'QMP watch: cannot connect');
      });
      sock.on('close', () => {
        done(false);
        if (this.closed) return;
        this.closed = true;
        if (connected) this.o.onEnd(this.state.end());
      });
    });
  }

  /** Stops watching; onEnd is not called. */
  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = undefined;
  }
}

/**
 * vmlet's monitor socket of a VM: beside its agent's socket (guest-agent.ts agentSocketPath), in
 * the same directory of QEMU's own, for a container's VM and a pod VM alike.
 */
export function monitorSocketBeside(agentSocket: string): string {
  return join(dirname(agentSocket), 'qmp.sock');
}
