// Domain lifecycle events for the rest of vmlet, over vmlet's RPC client: one registration for
// every domain's lifecycle events on the client's connection while anyone listens, made again on
// every new connection (a registration dies with its connection), and a retry loop that brings
// the connection back after libvirtd went away, so events resume without anyone calling libvirt.
// Events sent while no connection was up are lost: onReconnect says when to look for them.
import type { Logger } from '../log.js';
import { EVENT_ID, LIFECYCLE_EVENTS, type LibvirtRpc, type LifecycleEventName, type RpcLifecycleEvent } from './rpc/index.js';

export type { LifecycleEventName };

/** One domain's lifecycle event. */
export interface LifecycleEvent {
  name: string;
  uuid: string;
  /** virDomainEventType by name: 'stopped' when QEMU went away (any reason), 'started', … */
  event: LifecycleEventName;
  /**
   * virDomainEvent<Event>DetailType, whose meaning depends on `event`: for 'stopped',
   * STOPPED_DETAIL (0 shutdown, 1 destroyed, 2 crashed, 5 failed: QEMU died or was killed, …).
   */
  detail: number;
}

/** First retry after a lost connection, and the most it backs off to. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

export class DomainEvents {
  private readonly lifecycle = new Set<(e: LifecycleEvent) => void>();
  private readonly reconnect = new Set<() => void>();
  /** The registration in place, and the connection (generation) it holds on. */
  private registered: { generation: number; callbackId: number } | undefined;
  private registering: Promise<void> | undefined;
  /** Registrations given up on this connection (nobody listens any more): their late events are dropped. */
  private readonly dropped = new Set<number>();
  /** A connection holding a registration was lost: say so once a new registration is in place. */
  private lost = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MIN_MS;
  private failures = 0;

  constructor(
    private readonly rpc: LibvirtRpc,
    private readonly log: Logger,
  ) {
    // Not awaited: a registration that reconnects runs this hook and must not wait for itself.
    rpc.onOpen(() => {
      if (this.lifecycle.size > 0) this.register().catch((err: unknown) => this.failed(err));
    });
    rpc.onDisconnect((err, byClient) => {
      const had = this.registered !== undefined;
      this.registered = undefined;
      this.dropped.clear();
      if (byClient || this.lifecycle.size === 0) return; // close(): the next connection registers again
      this.lost = true;
      if (had) this.log.warn({ err: err.message }, 'libvirt connection lost: domain events stop until it is back; reconnecting');
      this.schedule(RETRY_MIN_MS);
    });
    rpc.onEventError((err) => this.log.error({ err: (err as Error).message }, 'libvirt lifecycle event dropped'));
    rpc.onLifecycleEvent((e) => this.deliver(e));
  }

  /** See Libvirt.onLifecycle. */
  onLifecycle(fn: (e: LifecycleEvent) => void): () => void {
    this.lifecycle.add(fn);
    if (this.lifecycle.size === 1) void this.ready().catch(() => undefined); // failures are logged and retried
    return () => {
      if (!this.lifecycle.delete(fn) || this.lifecycle.size > 0) return;
      this.cancelRetry();
      const r = this.registered;
      this.registered = undefined;
      if (r && r.generation === this.rpc.generation) {
        this.dropped.add(r.callbackId);
        this.rpc.deregisterDomainEvent(r.callbackId).catch((err: unknown) => this.log.debug({ err: (err as Error).message }, 'cannot deregister lifecycle events'));
      }
    };
  }

  /** See Libvirt.onReconnect. */
  onReconnect(fn: () => void): () => void {
    this.reconnect.add(fn);
    return () => this.reconnect.delete(fn);
  }

  /** Connects and registers now if needed (no-op without listeners); rejects when that fails, while retries go on. */
  async ready(): Promise<void> {
    if (this.lifecycle.size === 0) return;
    try {
      await this.rpc.connect();
      await this.register(); // the one a new connection's open hook started, if it did
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  /** Stops retrying (Libvirt.close); listeners stay, and the next connection registers for them. */
  stop(): void {
    this.cancelRetry();
  }

  private get isRegistered(): boolean {
    return this.registered?.generation === this.rpc.generation && this.rpc.connected;
  }

  /** Registers on the current connection unless a registration holds there already; one attempt at a time. */
  private register(): Promise<void> {
    if (this.isRegistered) return Promise.resolve();
    this.registering ??= this.registerNow().finally(() => (this.registering = undefined));
    return this.registering;
  }

  private async registerNow(): Promise<void> {
    while (this.lifecycle.size > 0 && !this.isRegistered) {
      const { callbackId, generation } = await this.rpc.registerDomainEvent(EVENT_ID.LIFECYCLE);
      if (this.lifecycle.size === 0) {
        // Everyone left while it was on its way.
        this.dropped.add(callbackId);
        await this.rpc.deregisterDomainEvent(callbackId).catch(() => undefined);
        return;
      }
      if (generation !== this.rpc.generation) continue; // that connection is gone: register on the new one
      this.registered = { generation, callbackId };
    }
    if (!this.isRegistered) return;
    this.cancelRetry();
    this.failures = 0;
    this.retryMs = RETRY_MIN_MS;
    if (!this.lost) return;
    this.lost = false;
    this.log.info('libvirt connection back: domain events resume');
    for (const fn of this.reconnect) {
      try {
        fn();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'libvirt reconnect listener failed');
      }
    }
  }

  private failed(err: unknown): void {
    if (this.lifecycle.size === 0) return;
    // The first failure in a row is worth a warning; the retries that follow only at debug.
    const level = this.failures++ === 0 ? 'warn' : 'debug';
    this.log[level]({ err: (err as Error).message, retryInMs: this.retryMs }, 'cannot register for libvirt domain events; retrying');
    this.schedule(this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private schedule(ms: number): void {
    if (this.retryTimer || this.lifecycle.size === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.ready().catch(() => undefined); // failed() has logged it and scheduled the next try
    }, ms);
    this.retryTimer.unref(); // retrying must not keep the process alive
  }

  private cancelRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private deliver(e: RpcLifecycleEvent): void {
    if (this.dropped.has(e.callbackId)) return;
    const event = LIFECYCLE_EVENTS[e.event];
    if (event === undefined) {
      this.log.debug({ domain: e.dom.name, event: e.event, detail: e.detail }, 'libvirt lifecycle event of an unknown type ignored');
      return;
    }
    const out: LifecycleEvent = { name: e.dom.name, uuid: e.dom.uuid, event, detail: e.detail };
    for (const fn of this.lifecycle) {
      try {
        fn(out);
      } catch (err) {
        this.log.error({ domain: out.name, event, err: (err as Error).message }, 'lifecycle event listener failed');
      }
    }
  }
}
