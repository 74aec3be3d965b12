// vmlet's one entry point to libvirt, over vmlet's own client of libvirt's RPC protocol
// (./rpc/): lifecycle calls, tuning, stats and domain lifecycle events. It turns the client's
// errors into VirtError (not-found / connection / other, from libvirt's error codes), retries
// once after a lost connection (libvirtd may have restarted), and keeps the event registration
// alive across reconnects (./domain-events.ts), so the rest of vmlet can treat libvirt as a
// plain async API.
import type { Logger } from '../log.js';
import { DomainEvents, type LifecycleEvent } from './domain-events.js';
import { libvirtReconnected } from '../metrics/vmlet.js';
import {
  AFFECT,
  DOMAIN_STATS,
  DomainState,
  GET_ALL_DOMAINS_STATS,
  LibvirtRpc,
  LibvirtRpcError,
  LIST_DOMAINS,
  START,
  UNDEFINE,
  VCPU_MAXIMUM,
  type RpcDomain,
} from './rpc/index.js';

export { DomainState };
export type { LifecycleEvent, LifecycleEventName } from './domain-events.js';

export type VirtErrorKind = 'not-found' | 'connection' | 'other';

export class VirtError extends Error {
  override name = 'VirtError';
  constructor(
    message: string,
    readonly kind: VirtErrorKind,
    readonly op: string,
  ) {
    super(message);
  }
}

export interface DomainSummary {
  name: string;
  uuid: string;
  state: DomainState;
}

export interface DomainInfo {
  state: DomainState;
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

/** One domain's getInfo, with its name and when it was taken (for rates). */
export interface DomainSample extends DomainInfo {
  name: string;
  /** Wall clock when getInfo answered, in ms since the epoch with sub-ms precision. */
  sampledAtMs: number;
}

/** Scheduler parameters vmlet sets (libvirt's names: cpu_shares, global_period, global_quota). */
export interface CpuScheduler {
  shares?: number;
  globalPeriod?: number;
  /** µs per period for the whole domain; -1 = no limit. */
  globalQuota?: number;
}

/**
 * The bulk stats call as vmlet uses it: the state of the running domains, which libvirtd answers
 * from its own records. On libvirt 9.0 with QEMU 7.2 the groups with CPU time, vCPUs and the
 * balloon (CPU_TOTAL, VCPU, BALLOON) each make libvirtd take a query job on every domain in turn
 * and ask its QEMU over the monitor (query-stats; query-balloon and qom-get): ~36 ms for 10 TCG
 * VMs against ~0.3 ms for STATE alone; the call then waits for a domain busy with another job
 * (unless NOWAIT) and hangs on a stuck QEMU (even with NOWAIT). See bench/domain-stats.ts and
 * test/integration/libvirt-rpc.test.ts.
 */
const ACTIVE_STATE = [DOMAIN_STATS.STATE, GET_ALL_DOMAINS_STATS.ACTIVE] as const;

/**
 * Undefine as RemoveContainer means it: whatever libvirt keeps beside the definition goes too
 * (managed save image, snapshot and checkpoint metadata), except the NVRAM file, which is the
 * container's own file and deleted with its others. Without these flags libvirt refuses to
 * undefine a domain that has any of them.
 */
const UNDEFINE_FLAGS = UNDEFINE.MANAGED_SAVE | UNDEFINE.SNAPSHOTS_METADATA | UNDEFINE.CHECKPOINTS_METADATA | UNDEFINE.KEEP_NVRAM;

/** The daemon's libvirt version as the last connection of this process found it (see loadedLibvirtVersion). */
let daemonVersion: string | undefined;

export class Libvirt {
  private readonly rpc: LibvirtRpc;
  private readonly events: DomainEvents;

  constructor(
    readonly uri: string,
    private readonly log: Logger,
  ) {
    this.rpc = new LibvirtRpc({ uri });
    this.events = new DomainEvents(this.rpc, log);
    this.rpc.onOpen(() => this.rpc.generation > 1 && libvirtReconnected()); // vmlet_libvirt_reconnects_total
  }

  /** Opens the connection (once; concurrent callers share the attempt) and learns the daemon's version. */
  async connect(): Promise<void> {
    try {
      await this.recordVersion();
    } catch (err) {
      throw new VirtError(`cannot connect to libvirt at ${this.uri}: ${messageOf(err)}`, 'connection', 'connect');
    }
    this.log.info({ uri: this.uri, libvirt: daemonVersion }, 'libvirt connected');
  }

  /** Closes the connection; lifecycle listeners stay and are registered again by the next call. */
  async close(): Promise<void> {
    this.events.stop();
    await this.rpc.close().catch(() => undefined);
  }

  /** When libvirtd last answered a call (performance.now()); -Infinity before the first. */
  private lastAnswerMs = -Infinity;

  get connected(): boolean {
    return this.rpc.connected;
  }

  /** Proves the daemon and its QEMU driver answer now (virNodeGetInfo); also refreshes the version. */
  async ping(): Promise<void> {
    await this.onRpc('ping', async (rpc) => {
      await Promise.all([rpc.nodeGetInfo(), this.recordVersion()]);
    });
  }

  /**
   * Whether libvirtd answers, for Status (the kubelet asks every few seconds): a call answered
   * within `maxAgeMs` on a connection still open says so without a round trip (vmlet's stats
   * and event calls keep it fresh on a busy node); otherwise a ping. A closed connection is seen
   * at once (the socket's end), a hung daemon within maxAgeMs.
   */
  async healthy(maxAgeMs = 2000): Promise<void> {
    if (this.rpc.connected && performance.now() - this.lastAnswerMs < maxAgeMs) return;
    await this.ping();
  }

  /** The libvirt version of the daemon, e.g. "9.0.0". */
  async libvirtVersion(): Promise<string> {
    return this.onRpc('version', () => this.recordVersion());
  }

  async hostname(): Promise<string> {
    return this.onRpc('hostname', (rpc) => rpc.hostname());
  }

  /** Defines (or redefines) a persistent domain; returns its UUID. */
  async defineDomain(xml: string): Promise<string> {
    return this.onRpc('define', async (rpc) => (await rpc.defineXML(xml)).uuid);
  }

  /** `paused`: QEMU runs with its vCPUs stopped (VIR_DOMAIN_START_PAUSED) until resumeDomain. */
  async startDomain(name: string, paused = false): Promise<void> {
    await this.onDomain('start', name, (rpc, dom) => rpc.createDomain(dom, paused ? START.PAUSED : 0));
  }

  async resumeDomain(name: string): Promise<void> {
    await this.onDomain('resume', name, (rpc, dom) => rpc.resumeDomain(dom));
  }

  /** ACPI power button. */
  async shutdownDomain(name: string): Promise<void> {
    await this.onDomain('shutdown', name, (rpc, dom) => rpc.shutdownDomain(dom));
  }

  async destroyDomain(name: string): Promise<void> {
    await this.onDomain('destroy', name, (rpc, dom) => rpc.destroyDomain(dom));
  }

  /** Removes the definition (see UNDEFINE_FLAGS); a running domain goes on, now transient. */
  async undefineDomain(name: string): Promise<void> {
    await this.onDomain('undefine', name, (rpc, dom) => rpc.undefineDomain(dom, UNDEFINE_FLAGS));
  }

  async domainXML(name: string): Promise<string> {
    return this.onDomain('xml', name, (rpc, dom) => rpc.getXMLDesc(dom));
  }

  async domainInfo(name: string): Promise<DomainInfo> {
    const i = await this.onDomain('info', name, (rpc, dom) => rpc.getInfo(dom));
    return { state: i.state as DomainState, maxMemKiB: i.maxMemKiB, memoryKiB: i.memoryKiB, vcpus: i.vcpus, cpuTimeNs: i.cpuTimeNs };
  }

  /** domainInfo plus the domain's name and when getInfo answered (for rates). */
  async domainSample(name: string): Promise<DomainSample> {
    const i = await this.domainInfo(name);
    return { ...i, name, sampledAtMs: now() };
  }

  /** All domains, running and defined: one list call, then each one's state (all sent at once). A domain gone meanwhile is left out. */
  async listDomains(): Promise<DomainSummary[]> {
    return this.onRpc('list', async (rpc) => {
      const doms = await rpc.listAllDomains(LIST_DOMAINS.ACTIVE | LIST_DOMAINS.INACTIVE);
      const out = await Promise.all(
        doms.map(async (d): Promise<DomainSummary | undefined> => {
          const s = await ifFound(rpc.getState(d));
          return s && { name: d.name, uuid: d.uuid, state: s.state as DomainState };
        }),
      );
      return out.filter((d): d is DomainSummary => d !== undefined);
    });
  }

  /**
   * Running (active) domains with their info, for stats: one bulk stats call lists them (state
   * only, see ACTIVE_STATE), then getInfo for each one in `names` (all when not given), all sent
   * at once. getInfo takes no job and asks no QEMU: 10 domains cost ~1.4 ms, where the bulk call
   * with the groups that carry the same figures costs ~36 ms. A domain that goes away between the
   * list and its getInfo is left out.
   */
  async activeDomainInfo(names?: ReadonlySet<string>): Promise<DomainSample[]> {
    return this.onRpc('stats', async (rpc) => {
      const doms = (await rpc.getAllDomainStats(...ACTIVE_STATE)).map((r) => r.dom).filter((d) => !names || names.has(d.name));
      const samples = await Promise.all(
        doms.map(async (dom): Promise<DomainSample | undefined> => {
          const i = await ifFound(rpc.getInfo(dom));
          return i && { name: dom.name, sampledAtMs: now(), state: i.state as DomainState, maxMemKiB: i.maxMemKiB, memoryKiB: i.memoryKiB, vcpus: i.vcpus, cpuTimeNs: i.cpuTimeNs };
        }),
      );
      return samples.filter((s): s is DomainSample => s !== undefined);
    });
  }

  /**
   * Names of the running domains (among `names`, when given): one bulk stats call for the state
   * only, which libvirtd answers from its own records (~0.3 ms for 10 domains, no job taken on
   * any domain, no QEMU asked). With onLifecycle, this is the safety net after onReconnect.
   */
  async activeDomainNames(names?: ReadonlySet<string>): Promise<Set<string>> {
    const records = await this.onRpc('active domains', (rpc) => rpc.getAllDomainStats(...ACTIVE_STATE));
    return new Set(records.map((r) => r.dom.name).filter((n) => !names || names.has(n)));
  }

  /**
   * Domain lifecycle events, pushed by libvirtd, for every domain on this libvirt: `listener`
   * hears each domain's `{ name, uuid, event, detail }` as it happens (event: 'defined',
   * 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended',
   * 'crashed'; detail: libvirt's virDomainEvent<Event>DetailType, e.g. for 'stopped' 0 guest
   * shutdown, 1 destroyed, 5 failed (QEMU died: kill -9 lands here)). A VM whose QEMU exits for
   * any reason gives 'stopped'; 'shutdown' only says the guest began powering off.
   *
   * The first listener registers on the connection (at once, in the background; eventsReady()
   * waits for it), and the registration is made again on every new connection: after libvirtd
   * went away, vmlet reconnects by itself (backing off from 0.1 s to 5 s). Events libvirtd sent
   * while no connection was up are lost: onReconnect tells when to look for them. A listener
   * must not throw (a throw is logged). Returns the unsubscribe; the last one out deregisters.
   */
  onLifecycle(listener: (e: LifecycleEvent) => void): () => void {
    return this.events.onLifecycle(listener);
  }

  /**
   * `listener` runs each time the lifecycle registration is back in place on a new connection
   * after the previous one was lost (libvirtd restarted, the socket broke): events of the gap are
   * lost, so this is when to poll once (activeDomainNames) as a safety net. Not called for the
   * first connection, nor after close(). Returns the unsubscribe.
   */
  onReconnect(listener: () => void): () => void {
    return this.events.onReconnect(listener);
  }

  /** Resolves once lifecycle events flow (no-op without listeners); rejects (VirtError) when libvirt cannot be reached now, while retries go on. */
  async eventsReady(): Promise<void> {
    await this.events.ready().catch((err: unknown) => {
      throw toVirtError('events', err);
    });
  }

  /** Online and maximum vCPUs, of the running VM (live) or of its definition. */
  async vcpuCounts(name: string, live: boolean): Promise<{ current: number; max: number }> {
    return this.onDomain('vcpus', name, async (rpc, dom) => {
      const flags = live ? AFFECT.LIVE : AFFECT.CONFIG;
      const [current, max] = await Promise.all([rpc.getVcpus(dom, flags), rpc.getVcpus(dom, flags | VCPU_MAXIMUM)]);
      return { current, max };
    });
  }

  /** CPU hotplug up to the defined maximum. */
  async setVcpus(name: string, n: number, live: boolean): Promise<void> {
    await this.onDomain('set vcpus', name, (rpc, dom) => rpc.setVcpus(dom, n, affect(live)));
  }

  /** The balloon's target (live) and <currentMemory> (definition), in KiB. */
  async setMemory(name: string, kib: number, live: boolean): Promise<void> {
    await this.onDomain('set memory', name, (rpc, dom) => rpc.setMemory(dom, kib, affect(live)));
  }

  async setCpuScheduler(name: string, p: CpuScheduler, live: boolean): Promise<void> {
    const params = [
      ...(p.shares !== undefined ? [{ field: 'cpu_shares', type: 'ullong' as const, value: p.shares }] : []),
      ...(p.globalPeriod !== undefined ? [{ field: 'global_period', type: 'ullong' as const, value: p.globalPeriod }] : []),
      ...(p.globalQuota !== undefined ? [{ field: 'global_quota', type: 'llong' as const, value: p.globalQuota }] : []),
    ];
    if (params.length === 0) return;
    await this.onDomain('set scheduler', name, (rpc, dom) => rpc.setSchedulerParameters(dom, params, affect(live)));
  }

  async cpuScheduler(name: string, live: boolean): Promise<Record<string, number>> {
    return this.onDomain('scheduler', name, (rpc, dom) => rpc.getSchedulerParameters(dom, live ? AFFECT.LIVE : AFFECT.CONFIG));
  }

  /** Pins vCPUs 0..vcpus-1 and the emulator threads to `cpus` (host CPU ids). */
  async pinCpus(name: string, vcpus: number, cpus: readonly number[], live: boolean): Promise<void> {
    await this.onDomain('pin', name, async (rpc, dom) => {
      for (let v = 0; v < vcpus; v++) await rpc.pinVcpu(dom, v, cpus, affect(live));
      await rpc.pinEmulator(dom, cpus, affect(live));
    });
  }

  private async recordVersion(): Promise<string> {
    const n = await this.rpc.libVersion();
    daemonVersion = `${Math.floor(n / 1_000_000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
    return daemonVersion;
  }

  /** Runs fn with the domain looked up by name; one retry after a lost connection. */
  private async onDomain<T>(op: string, name: string, fn: (rpc: LibvirtRpc, dom: RpcDomain) => Promise<T>): Promise<T> {
    return this.onRpc(op, async (rpc) => fn(rpc, await rpc.lookupDomain(name)), name);
  }

  /**
   * Runs fn; when the connection was lost (libvirtd may have restarted) runs it once more on a
   * new one. A call that timed out on a live connection is not repeated: it may still be running.
   */
  private async onRpc<T>(op: string, fn: (rpc: LibvirtRpc) => Promise<T>, name?: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await fn(this.rpc);
        this.lastAnswerMs = performance.now();
        return out;
      } catch (err) {
        if (err instanceof LibvirtRpcError && err.kind === 'connection' && attempt === 0 && !this.rpc.connected) {
          this.log.warn({ op, err: err.message }, 'libvirt connection lost; reconnecting');
          continue;
        }
        throw toVirtError(name ? `${op} ${name}` : op, err, op);
      }
    }
  }
}

/** `where: libvirt's message`, with the kind from libvirt's error code ('invalid' counts as other). */
function toVirtError(where: string, err: unknown, op = where): unknown {
  if (!(err instanceof LibvirtRpcError)) return err;
  const kind: VirtErrorKind = err.kind === 'not-found' ? 'not-found' : err.kind === 'connection' ? 'connection' : 'other';
  return new VirtError(`${where}: ${err.message}`, kind, op);
}

/** The call's value, or undefined when libvirt says the domain does not exist (any more). */
async function ifFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof LibvirtRpcError && err.kind === 'not-found') return undefined;
    throw err;
  }
}

/** A running VM changes now and in its definition; a defined one only in its definition. */
function affect(live: boolean): number {
  return live ? AFFECT.LIVE | AFFECT.CONFIG : AFFECT.CONFIG;
}

const now = () => performance.timeOrigin + performance.now();

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The libvirt version ("9.0.0") of the daemon the last connection of this process talked to,
 * learnt at Libvirt.connect() and refreshed by every ping(); undefined before any connection.
 * (It was the version of the libvirt library the native binding loaded, from /proc/self/maps.)
 * Libvirt.libvirtVersion() asks the daemon now.
 */
export function loadedLibvirtVersion(): string | undefined {
  return daemonVersion;
}
