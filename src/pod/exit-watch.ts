// Running VMs' QEMU (VM-image containers', pod VMs'), watched through vmlet's own QMP monitor (vm/qmp-watch.ts):
// an exit is known the moment QEMU's sockets close, ~200 ms before libvirtd's lifecycle event.
// libvirtd is still tearing the domain down meanwhile (it deletes the VM's tap by name, restores
// file labels), so what would collide with that waits for it: StartContainer in the same pod (its
// new tap has the same name), RemoveContainer and RemovePodSandbox (undefine, files) call
// settled() first.
import type { Logger } from '../log.js';
import type { VmDriver } from '../vm/driver.js';
import { QmpWatch, type QmpEnd } from '../vm/qmp-watch.js';

/** Longest wait for libvirtd to finish a domain whose QEMU is gone (it gives a stuck one 15 s). */
const SETTLE_MAX_MS = 20_000;
const SETTLE_POLL_MS = 20;

export interface ExitWatchDeps {
  vm: VmDriver;
  log: Logger;
  /** QEMU of `domain` is gone; `end` as qmp-watch says (undefined: libvirtd's event will say why). */
  onEnd(domain: string, end: QmpEnd): void;
}

/** What is watched: a container's VM (key: its id) or a pod's VM (key: `pod:<sandbox id>`). */
export interface WatchedVm {
  key: string;
  domain: string;
  /** Its monitor socket (vm/qmp-watch.ts monitorSocketBeside). */
  socket: string;
  /** For the log. */
  ids: Record<string, string>;
}

export class ExitWatches {
  private readonly watches = new Map<string, QmpWatch>();
  /** Domains whose QEMU is gone while libvirtd may still be tearing them down. */
  private readonly ending = new Map<string, Promise<void>>();

  constructor(private readonly d: ExitWatchDeps) {}

  /** Watches a VM (replacing a watch under its key); resolves once events flow or there is nothing to watch. */
  async watch(v: WatchedVm): Promise<void> {
    this.unwatch(v.key);
    const w = new QmpWatch(v.socket, {
      log: this.d.log,
      onEnd: (end) => {
        if (this.watches.get(v.key) !== w) return;
        this.watches.delete(v.key);
        this.ended(v.domain);
        this.d.log.debug({ ...v.ids, domain: v.domain, end: end ?? 'libvirt will say' }, "QEMU gone (vmlet's monitor closed)");
        this.d.onEnd(v.domain, end);
      },
      // Dropped (QEMU sent what the watch does not keep): libvirt's events report this VM's end.
      onDrop: () => {
        if (this.watches.get(v.key) === w) this.watches.delete(v.key);
      },
    });
    this.watches.set(v.key, w);
    const watching = await w.connect();
    if (watching) this.d.log.debug({ ...v.ids, domain: v.domain }, "watching QEMU through vmlet's monitor");
    if (!watching && this.watches.get(v.key) === w) {
      // No socket (a VM started by a vmlet before this one), or QEMU already gone: libvirt's events say.
      w.close();
      this.watches.delete(v.key);
    }
  }

  unwatch(key: string): void {
    this.watches.get(key)?.close();
    this.watches.delete(key);
  }

  /** Whether `key`'s VM is watched now. */
  watching(key: string): boolean {
    return this.watches.has(key);
  }

  closeAll(): void {
    for (const w of this.watches.values()) w.close();
    this.watches.clear();
  }

  /** Resolves once libvirtd no longer runs any of these domains (at once for those not ending). */
  async settled(domains: Iterable<string>): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const n of domains) {
      const p = this.ending.get(n);
      if (p) waits.push(p);
    }
    await Promise.all(waits);
  }

  /** QEMU of `domain` is gone: until libvirtd says it is no longer active, settled() waits for it. */
  private ended(domain: string): void {
    if (this.ending.has(domain)) return;
    const p = this.untilInactive(domain).finally(() => this.ending.delete(domain));
    this.ending.set(domain, p);
  }

  private async untilInactive(domain: string): Promise<void> {
    const deadline = performance.now() + SETTLE_MAX_MS;
    for (;;) {
      // libvirtd answers a domain's state only once its teardown lets go of the domain.
      const st = await this.d.vm.state(domain).catch(() => 'absent' as const);
      if (st !== 'running' && st !== 'paused' && st !== 'blocked' && st !== 'shutdown') return;
      if (performance.now() > deadline) {
        this.d.log.warn({ domain, state: st, waitedMs: SETTLE_MAX_MS }, 'QEMU is gone but libvirt still has the domain active; going on');
        return;
      }
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
    }
  }
}
