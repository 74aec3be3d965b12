// The only module that touches the libvirt binding. It normalises errors (not-found vs
// connection vs other: the binding gives messages only, code -1), notices a dead connection
// (the binding may answer a list call with [] instead of failing) and reconnects, so the rest
// of vmlet can treat libvirt as a plain async API and the binding can be replaced later.
import { readFileSync } from 'node:fs';
import { Hypervisor, DomainState, type Domain } from '@unraid/libvirt';
import type { Logger } from '../log.js';
import { AFFECT, DOMAIN_STATS, GET_ALL_DOMAINS_STATS, LibvirtRpc, LibvirtRpcError, type RpcDomain } from './rpc/index.js';

export { DomainState };

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

const NOT_FOUND = /domain not found|no domain with matching|domain .* not found/i;
const CONNECTION =
  /failed to connect|client socket is closed|broken pipe|end of file while reading|connection reset|not connected|no connection|cannot recv data|cannot write data|invalid connection pointer|connection is closed/i;

export function classify(message: string): VirtErrorKind {
  if (NOT_FOUND.test(message)) return 'not-found';
  if (CONNECTION.test(message)) return 'connection';
  return 'other';
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

const VCPU_MAXIMUM = 4; // VIR_DOMAIN_VCPU_MAXIMUM

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

export class Libvirt {
  private hv: Hypervisor | undefined;
  private connecting: Promise<Hypervisor> | undefined;
  /** vmlet's own client of libvirt's RPC protocol, for the calls the binding lacks (tuning, bulk stats). */
  private rpcClient: LibvirtRpc | undefined;

  constructor(
    readonly uri: string,
    private readonly log: Logger,
  ) {}

  /** Opens the connection (once; concurrent callers share the attempt). */
  async connect(): Promise<void> {
    await this.conn();
  }

  async close(): Promise<void> {
    const hv = this.hv;
    this.hv = undefined;
    if (hv) await hv.connectClose().catch(() => undefined);
    const rpc = this.rpcClient;
    this.rpcClient = undefined;
    if (rpc) await rpc.close().catch(() => undefined);
  }

  get connected(): boolean {
    return this.hv !== undefined;
  }

  /** Proves the daemon answers now. nodeGetInfo fails on a dead connection where list calls may not. */
  async ping(): Promise<void> {
    await this.call('ping', (hv) => hv.nodeGetInfo());
  }

  async hostname(): Promise<string> {
    return this.call('hostname', (hv) => hv.connectGetHostname());
  }

  async defineDomain(xml: string): Promise<string> {
    return this.call('define', async (hv) => (await hv.domainDefineXML(xml)).getUUIDString());
  }

  async startDomain(name: string): Promise<void> {
    await this.onDomain('start', name, (d) => d.create());
  }

  /** ACPI power button. */
  async shutdownDomain(name: string): Promise<void> {
    await this.onDomain('shutdown', name, (d) => d.shutdown());
  }

  async destroyDomain(name: string): Promise<void> {
    await this.onDomain('destroy', name, (d) => d.destroy());
  }

  async undefineDomain(name: string): Promise<void> {
    await this.onDomain('undefine', name, (d) => d.undefine());
  }

  async domainXML(name: string): Promise<string> {
    return this.onDomain('xml', name, (d) => d.getXMLDesc());
  }

  async domainInfo(name: string): Promise<DomainInfo> {
    const i = await this.onDomain('info', name, (d) => d.getInfo());
    return { state: i.state, maxMemKiB: i.maxMem, memoryKiB: i.memory, vcpus: i.nrVirtCpu, cpuTimeNs: i.cpuTime };
  }

  /** domainInfo plus the domain's name and when getInfo answered (for rates). */
  async domainSample(name: string): Promise<DomainSample> {
    const i = await this.domainInfo(name);
    return { ...i, name, sampledAtMs: now() };
  }

  /** All domains, running and defined, in one list call plus per-domain name/uuid/state. */
  async listDomains(): Promise<DomainSummary[]> {
    return this.call('list', async (hv) => {
      const domains = await hv.connectListAllDomains();
      if (domains.length === 0) await hv.nodeGetInfo(); // [] may hide a dead connection
      return Promise.all(
        domains.map(async (d) => ({ name: await d.getName(), uuid: await d.getUUIDString(), state: (await d.getInfo()).state })),
      );
    });
  }

  /**
   * Running (active) domains with their info, for stats: one bulk stats call lists them (state
   * only, see ACTIVE_STATE), then getInfo for each one in `names` (all when not given), all sent
   * at once over vmlet's RPC connection. getInfo takes no job and asks no QEMU: 10 domains cost
   * ~1.4 ms, where the bulk call with the groups that carry the same figures costs ~36 ms. A domain
   * that goes away between the list and its getInfo is left out.
   */
  async activeDomainInfo(names?: ReadonlySet<string>): Promise<DomainSample[]> {
    return this.onRpc('stats', async (rpc) => {
      const doms = (await rpc.getAllDomainStats(...ACTIVE_STATE)).map((r) => r.dom).filter((d) => !names || names.has(d.name));
      const samples = await Promise.all(
        doms.map(async (dom): Promise<DomainSample | undefined> => {
          try {
            const i = await rpc.getInfo(dom);
            return { name: dom.name, sampledAtMs: now(), state: i.state as DomainState, maxMemKiB: i.maxMemKiB, memoryKiB: i.memoryKiB, vcpus: i.vcpus, cpuTimeNs: i.cpuTimeNs };
          } catch (err) {
            if (err instanceof LibvirtRpcError && err.kind === 'not-found') return undefined;
            throw err;
          }
        }),
      );
      return samples.filter((s): s is DomainSample => s !== undefined);
    });
  }

  /**
   * Names of the running domains (among `names`, when given), for exit detection: one bulk stats
   * call for the state only, which libvirtd answers from its own records (~0.3 ms for 10 domains,
   * no job taken on any domain, no QEMU asked).
   */
  async activeDomainNames(names?: ReadonlySet<string>): Promise<Set<string>> {
    const records = await this.onRpc('active domains', (rpc) => rpc.getAllDomainStats(...ACTIVE_STATE));
    return new Set(records.map((r) => r.dom.name).filter((n) => !names || names.has(n)));
  }

  /** Online and maximum vCPUs, of the running VM (live) or of its definition. */
  async vcpuCounts(name: string, live: boolean): Promise<{ current: number; max: number }> {
    return this.onRpcDomain('vcpus', name, async (rpc, dom) => {
      const flags = live ? AFFECT.LIVE : AFFECT.CONFIG;
      const [current, max] = await Promise.all([rpc.getVcpus(dom, flags), rpc.getVcpus(dom, flags | VCPU_MAXIMUM)]);
      return { current, max };
    });
  }

  /** CPU hotplug up to the defined maximum. */
  async setVcpus(name: string, n: number, live: boolean): Promise<void> {
    await this.onRpcDomain('set vcpus', name, (rpc, dom) => rpc.setVcpus(dom, n, affect(live)));
  }

  /** The balloon's target (live) and <currentMemory> (definition), in KiB. */
  async setMemory(name: string, kib: number, live: boolean): Promise<void> {
    await this.onRpcDomain('set memory', name, (rpc, dom) => rpc.setMemory(dom, kib, affect(live)));
  }

  async setCpuScheduler(name: string, p: CpuScheduler, live: boolean): Promise<void> {
    const params = [
      ...(p.shares !== undefined ? [{ field: 'cpu_shares', type: 'ullong' as const, value: p.shares }] : []),
      ...(p.globalPeriod !== undefined ? [{ field: 'global_period', type: 'ullong' as const, value: p.globalPeriod }] : []),
      ...(p.globalQuota !== undefined ? [{ field: 'global_quota', type: 'llong' as const, value: p.globalQuota }] : []),
    ];
    if (params.length === 0) return;
    await this.onRpcDomain('set scheduler', name, (rpc, dom) => rpc.setSchedulerParameters(dom, params, affect(live)));
  }

  async cpuScheduler(name: string, live: boolean): Promise<Record<string, number>> {
    return this.onRpcDomain('scheduler', name, (rpc, dom) => rpc.getSchedulerParameters(dom, live ? AFFECT.LIVE : AFFECT.CONFIG));
  }

  /** Pins vCPUs 0..vcpus-1 and the emulator threads to `cpus` (host CPU ids). */
  async pinCpus(name: string, vcpus: number, cpus: readonly number[], live: boolean): Promise<void> {
    await this.onRpcDomain('pin', name, async (rpc, dom) => {
      for (let v = 0; v < vcpus; v++) await rpc.pinVcpu(dom, v, cpus, affect(live));
      await rpc.pinEmulator(dom, cpus, affect(live));
    });
  }

  /** Runs fn with the domain looked up over vmlet's RPC client; one retry after a lost connection. */
  private async onRpcDomain<T>(op: string, name: string, fn: (rpc: LibvirtRpc, dom: RpcDomain) => Promise<T>): Promise<T> {
    return this.onRpc(op, async (rpc) => fn(rpc, await rpc.lookupDomain(name)), name);
  }

  /** Runs fn with vmlet's RPC client; one retry after a lost connection (libvirtd may have restarted). */
  private async onRpc<T>(op: string, fn: (rpc: LibvirtRpc) => Promise<T>, name?: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.rpcClient ??= new LibvirtRpc({ uri: this.uri });
      const rpc = this.rpcClient;
      try {
        return await fn(rpc);
      } catch (err) {
        if (!(err instanceof LibvirtRpcError)) throw err;
        if (err.kind === 'connection' && attempt === 0) {
          this.log.warn({ op, err: err.message }, 'libvirt RPC connection lost; reconnecting');
          continue;
        }
        const kind: VirtErrorKind = err.kind === 'not-found' ? 'not-found' : err.kind === 'connection' ? 'connection' : 'other';
        throw new VirtError(name ? `${op} ${name}: ${err.message}` : `${op}: ${err.message}`, kind, op);
      }
    }
  }

  private async onDomain<T>(op: string, name: string, fn: (d: Domain) => Promise<T>): Promise<T> {
    return this.call(op, async (hv) => fn(await hv.domainLookupByName(name)), name);
  }

  private async conn(): Promise<Hypervisor> {
    if (this.hv) return this.hv;
    this.connecting ??= (async () => {
      const hv = new Hypervisor({ uri: this.uri });
      try {
        await hv.connectOpen();
      } catch (err) {
        throw new VirtError(`cannot connect to libvirt at ${this.uri}: ${messageOf(err)}`, 'connection', 'connect');
      }
      this.hv = hv;
      this.log.info({ uri: this.uri }, 'libvirt connected');
      return hv;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Runs fn; on a connection error reconnects once and retries, as libvirtd may have restarted. */
  private async call<T>(op: string, fn: (hv: Hypervisor) => Promise<T>, domain?: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const hv = await this.conn();
      try {
        return await fn(hv);
      } catch (err) {
        const msg = messageOf(err);
        const kind = classify(msg);
        if (kind === 'connection' && attempt === 0) {
          this.log.warn({ op, err: msg }, 'libvirt connection lost; reconnecting');
          if (this.hv === hv) this.hv = undefined;
          await hv.connectClose().catch(() => undefined);
          continue;
        }
        throw new VirtError(domain ? `${op} ${domain}: ${msg}` : `${op}: ${msg}`, kind, op);
      }
    }
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
 * Version of the libvirt library this process loaded, read from the soname in /proc/self/maps
 * (libvirt.so.0.9000.0 → 9.0.0): the binding has no version call and spawning virsh is too slow.
 */
export function loadedLibvirtVersion(maps = '/proc/self/maps'): string | undefined {
  let text: string;
  try {
    text = readFileSync(maps, 'utf8');
  } catch {
    return undefined;
  }
  const m = /libvirt\.so\.0\.(\d+)\.(\d+)/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]) * 1000 + Number(m[2]);
  return `${Math.floor(n / 1_000_000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
}
