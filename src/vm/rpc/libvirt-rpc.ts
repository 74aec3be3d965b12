// The typed calls: one method per libvirt call vmlet makes, each encoding its *_args struct,
// making the call and decoding its *_ret struct, plus the lifecycle events the daemon sends once
// asked to. Connections, framing and the reply plumbing are session.ts's; the structs are
// protocol.ts's and structs.ts's; libvirt's flag values are constants.ts's.
import { cpuListsFromMaps, cpumapFromList, cpumapLength } from './cpumap.js';
import {
  decodeDomain,
  decodeTypedParam,
  encodeDomain,
  encodeTypedParam,
  Limits,
  MEMORY_STAT_NAMES,
  MEMORY_STAT_NR,
  Proc,
  uuidFromString,
  uuidToString,
  type TypedParam,
  type WireDomain,
} from './protocol.js';
import { RpcSession, type LibvirtRpcOptions } from './session.js';
import {
  decodeDomainInfo,
  decodeDomainState,
  decodeLifecycleMsg,
  decodeListAllDomains,
  decodeNodeInfo,
  encodeEventRegisterArgs,
  encodeListAllDomainsArgs,
  type DomainStateReason,
  type NodeInfo,
  type RpcDomainInfo,
} from './structs.js';
import { XdrError, XdrReader, type XdrWriter } from './xdr.js';

export interface RpcDomain {
  name: string;
  /** The UUID in its string form (8-4-4-4-12 hex). */
  uuid: string;
  /** -1 when the domain is not running. */
  id: number;
}

export type DomainStatsValue = number | bigint | string | boolean;

/** One domain's record from getAllDomainStats: libvirt's field names ("state.state", "cpu.time", ...). */
export interface DomainStatsRecord {
  dom: RpcDomain;
  params: Record<string, DomainStatsValue>;
}

/** A lifecycle event as the daemon sent it (REMOTE_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE). */
export interface RpcLifecycleEvent {
  /** The registration it answers (registerDomainEvent's callbackId). */
  callbackId: number;
  dom: RpcDomain;
  /** virDomainEventType: LIFECYCLE_EVENTS[event] names it. */
  event: number;
  /** virDomainEvent<Event>DetailType, by event. */
  detail: number;
}

export type { LibvirtRpcOptions, RpcDomainInfo, NodeInfo, DomainStateReason };

export class LibvirtRpc extends RpcSession {
  private readonly lifecycleListeners = new Set<(e: RpcLifecycleEvent) => void>();
  private eventErrorHandler: (err: unknown) => void = () => undefined;

  constructor(opts: LibvirtRpcOptions) {
    super(opts);
    this.handleMessages(Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, (payload) => {
      let e: RpcLifecycleEvent;
      try {
        const r = new XdrReader(payload);
        const m = decodeLifecycleMsg(r);
        r.end('lifecycle event');
        e = { callbackId: m.callbackId, dom: fromWire(m.dom), event: m.event, detail: m.detail };
      } catch (err) {
        this.eventErrorHandler(err);
        return;
      }
      for (const fn of this.lifecycleListeners) {
        try {
          fn(e);
        } catch (err) {
          this.eventErrorHandler(err);
        }
      }
    });
  }

  // ---------------------------------------------------------------- connection and node

  /** libvirt's version as major * 1e6 + minor * 1e3 + micro; cheap, so also a ping. */
  async libVersion(): Promise<number> {
    return this.call('libVersion', Proc.CONNECT_GET_LIB_VERSION, undefined, (r) => Number(r.uhyper()));
  }

  /** virNodeGetInfo: goes to the hypervisor driver, so it proves more than the daemon is up. */
  async nodeGetInfo(): Promise<NodeInfo> {
    return this.call('nodeGetInfo', Proc.NODE_GET_INFO, undefined, decodeNodeInfo);
  }

  async hostname(): Promise<string> {
    return this.call('hostname', Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.string(Limits.STRING_MAX));
  }

  // ---------------------------------------------------------------- domain lifecycle

  async lookupDomain(name: string): Promise<RpcDomain> {
    return this.call('lookupDomain', Proc.DOMAIN_LOOKUP_BY_NAME, (w) => w.string(name, Limits.STRING_MAX), (r) => fromWire(decodeDomain(r)));
  }

  /** Domains matching `flags` (LIST_DOMAINS bits; 0 for all), with their name, UUID and id. */
  async listAllDomains(flags: number): Promise<RpcDomain[]> {
    const doms = await this.call('listAllDomains', Proc.CONNECT_LIST_ALL_DOMAINS, (w) => encodeListAllDomainsArgs(w, bits32(flags, 'flags')), decodeListAllDomains);
    return doms.map(fromWire);
  }

  /** virDomainDefineXML: defines (or redefines, by name and UUID) a persistent domain. */
  async defineXML(xml: string): Promise<RpcDomain> {
    return this.call('defineXML', Proc.DOMAIN_DEFINE_XML, (w) => w.string(xml, Limits.STRING_MAX), (r) => fromWire(decodeDomain(r)), this.lifecycleTimeoutMs);
  }

  /** virDomainCreateWithFlags: starts a defined domain; returns it with its new id. */
  async createDomain(dom: RpcDomain, flags = 0): Promise<RpcDomain> {
    return this.call('createDomain', Proc.DOMAIN_CREATE_WITH_FLAGS, domFlags(dom, flags), (r) => fromWire(decodeDomain(r)), this.lifecycleTimeoutMs);
  }

  /** virDomainResume: runs a paused domain's vCPUs. */
  async resumeDomain(dom: RpcDomain): Promise<void> {
    await this.call('resumeDomain', Proc.DOMAIN_RESUME, domOnly(dom), none, this.lifecycleTimeoutMs);
  }

  /** virDomainShutdown: asks the guest to power off (ACPI power button for vmlet's domains). */
  async shutdownDomain(dom: RpcDomain): Promise<void> {
    await this.call('shutdownDomain', Proc.DOMAIN_SHUTDOWN, domOnly(dom), none, this.lifecycleTimeoutMs);
  }

  /** virDomainDestroy: stops QEMU now (SIGTERM, then SIGKILL). */
  async destroyDomain(dom: RpcDomain): Promise<void> {
    await this.call('destroyDomain', Proc.DOMAIN_DESTROY, domOnly(dom), none, this.lifecycleTimeoutMs);
  }

  /** virDomainUndefineFlags (UNDEFINE bits). A running domain stays running, now transient. */
  async undefineDomain(dom: RpcDomain, flags: number): Promise<void> {
    await this.call('undefineDomain', Proc.DOMAIN_UNDEFINE_FLAGS, domFlags(dom, flags), none, this.lifecycleTimeoutMs);
  }

  /** virDomainAttachDeviceFlags: adds a device (AFFECT bits say to the running VM, its definition or both). */
  async attachDevice(dom: RpcDomain, xml: string, flags: number): Promise<void> {
    await this.call('attachDevice', Proc.DOMAIN_ATTACH_DEVICE_FLAGS, domXmlFlags(dom, xml, flags), none, this.lifecycleTimeoutMs);
  }

  /** virDomainDetachDeviceFlags: asks for the device's removal (a running guest must let it go; libvirt waits up to 5 s). */
  async detachDevice(dom: RpcDomain, xml: string, flags: number): Promise<void> {
    await this.call('detachDevice', Proc.DOMAIN_DETACH_DEVICE_FLAGS, domXmlFlags(dom, xml, flags), none, this.lifecycleTimeoutMs);
  }

  /** virDomainGetXMLDesc: the live definition of a running domain, else the persistent one. */
  async getXMLDesc(dom: RpcDomain, flags = 0): Promise<string> {
    return this.call('getXMLDesc', Proc.DOMAIN_GET_XML_DESC, domFlags(dom, flags), (r) => r.string(Limits.STRING_MAX));
  }

  /**
   * virDomainGetInfo. The QEMU driver answers from its own records (state, the balloon's current
   * size as QEMU last reported it, vCPUs) and /proc/<pid>/stat (CPU time, in clock ticks): it
   * takes no job on the domain and does not ask QEMU.
   */
  async getInfo(dom: RpcDomain): Promise<RpcDomainInfo> {
    return this.call('getInfo', Proc.DOMAIN_GET_INFO, domOnly(dom), decodeDomainInfo);
  }

  /** virDomainGetState: the state and why (from libvirtd's records only). */
  async getState(dom: RpcDomain): Promise<DomainStateReason> {
    return this.call('getState', Proc.DOMAIN_GET_STATE, domFlags(dom, 0), decodeDomainState);
  }

  // ---------------------------------------------------------------- events

  /**
   * Asks the daemon to send this connection events of kind `eventId` (EVENT_ID) for `dom`, or for
   * every domain. Returns the registration's id, which its events carry, and the connection it
   * holds on: a registration ends with its connection and must be made again on the next one.
   */
  async registerDomainEvent(eventId: number, dom?: RpcDomain): Promise<{ callbackId: number; generation: number }> {
    const { value, generation } = await this.callOn(
      'registerDomainEvent',
      Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
      (w) => encodeEventRegisterArgs(w, eventId, dom ? wire(dom) : null),
      (r) => r.int(),
    );
    return { callbackId: value, generation };
  }

  async deregisterDomainEvent(callbackId: number): Promise<void> {
    await this.call('deregisterDomainEvent', Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, (w) => w.int(callbackId), none);
  }

  /** Every lifecycle event the daemon sends on any connection of this client; returns the unsubscribe. */
  onLifecycleEvent(fn: (e: RpcLifecycleEvent) => void): () => void {
    this.lifecycleListeners.add(fn);
    return () => this.lifecycleListeners.delete(fn);
  }

  /** Where an event that does not decode, or a listener's exception, is reported (default: dropped). */
  onEventError(fn: (err: unknown) => void): void {
    this.eventErrorHandler = fn;
  }

  // ---------------------------------------------------------------- tuning and stats

  /** Pins one vCPU to host CPUs `cpus`. */
  async pinVcpu(dom: RpcDomain, vcpu: number, cpus: readonly number[], flags: number): Promise<void> {
    await this.call(
      'pinVcpu',
      Proc.DOMAIN_PIN_VCPU_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.uint(vcpu).opaque(cpumapFromList(cpus), Limits.CPUMAP_MAX).uint(flags);
      },
      none,
    );
  }

  /** Pins the emulator threads (QEMU's own, not the vCPUs) to host CPUs `cpus`. */
  async pinEmulator(dom: RpcDomain, cpus: readonly number[], flags: number): Promise<void> {
    await this.call(
      'pinEmulator',
      Proc.DOMAIN_PIN_EMULATOR,
      (w) => {
        encodeDomain(w, wire(dom));
        w.opaque(cpumapFromList(cpus), Limits.CPUMAP_MAX).uint(flags);
      },
      none,
    );
  }

  /** Each vCPU's host CPU list (at most `ncpumaps` vCPUs; `hostCpus` sizes the maps). */
  async getVcpuPinInfo(dom: RpcDomain, ncpumaps: number, hostCpus: number, flags: number): Promise<number[][]> {
    const maplen = cpumapLength(hostCpus);
    const { maps, num } = await this.call(
      'getVcpuPinInfo',
      Proc.DOMAIN_GET_VCPU_PIN_INFO,
      (w) => {
        if (!(ncpumaps > 0 && hostCpus > 0)) throw new XdrError(`ncpumaps and hostCpus must be positive (got ${ncpumaps}, ${hostCpus})`);
        if (ncpumaps * maplen > Limits.CPUMAPS_MAX) throw new XdrError(`${ncpumaps} maps of ${maplen} bytes exceed the protocol's ${Limits.CPUMAPS_MAX}`);
        encodeDomain(w, wire(dom));
        w.int(ncpumaps).int(maplen).uint(flags);
      },
      (r) => ({ maps: r.opaque(Limits.CPUMAPS_MAX), num: r.int() }),
    );
    return cpuListsFromMaps(maps, num, maplen, hostCpus);
  }

  /**
   * The scheduler's tunables (cpu_shares, vcpu_quota, global_period, ...), numbers throughout.
   * The call must say how many parameters it can take, so the scheduler type call asks first.
   */
  async getSchedulerParameters(dom: RpcDomain, flags: number): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of await this.getSchedulerParametersTyped(dom, flags)) {
      if (typeof p.value === 'string') continue; // no scheduler has string tunables; keep the shape numeric
      out[p.field] = Number(p.value); // booleans as 0/1
    }
    return out;
  }

  /** getSchedulerParameters with libvirt's types kept (64-bit values past 2^53 as bigint). */
  async getSchedulerParametersTyped(dom: RpcDomain, flags: number): Promise<TypedParam[]> {
    const { nparams } = await this.schedulerType(dom);
    if (nparams === 0) return [];
    return this.call(
      'getSchedulerParameters',
      Proc.DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.int(nparams).uint(flags);
      },
      (r) => r.array(decodeTypedParam, Limits.SCHEDULER_PARAMETERS_MAX),
    );
  }

  /** The scheduler's name (qemu: "posix") and how many tunables it has. */
  async schedulerType(dom: RpcDomain): Promise<{ type: string; nparams: number }> {
    return this.call('schedulerType', Proc.DOMAIN_GET_SCHEDULER_TYPE, domOnly(dom), (r) => ({ type: r.string(Limits.STRING_MAX), nparams: r.int() }));
  }

  /** Sets tunables; types must be libvirt's (cpu_shares ullong, *_quota llong, *_period ullong). */
  async setSchedulerParameters(dom: RpcDomain, params: TypedParam[], flags: number): Promise<void> {
    await this.call(
      'setSchedulerParameters',
      Proc.DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.array(params, encodeTypedParam, Limits.SCHEDULER_PARAMETERS_MAX).uint(flags);
      },
      none,
    );
  }

  /** Balloon target (or, with MEM_MAXIMUM, the maximum) in KiB. */
  async setMemory(dom: RpcDomain, kib: number, flags: number): Promise<void> {
    await this.call(
      'setMemory',
      Proc.DOMAIN_SET_MEMORY_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.uhyper(kib).uint(flags);
      },
      none,
    );
  }

  async setVcpus(dom: RpcDomain, n: number, flags: number): Promise<void> {
    await this.call(
      'setVcpus',
      Proc.DOMAIN_SET_VCPUS_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.uint(n).uint(flags);
      },
      none,
    );
  }

  async getVcpus(dom: RpcDomain, flags: number): Promise<number> {
    return this.call('getVcpus', Proc.DOMAIN_GET_VCPUS_FLAGS, domFlags(dom, flags), (r) => r.int());
  }

  /** Balloon statistics keyed as `virsh dommemstat` names them (KiB, except counters and last_update). */
  async memoryStats(dom: RpcDomain, flags = 0): Promise<Record<string, number>> {
    const stats = await this.call(
      'memoryStats',
      Proc.DOMAIN_MEMORY_STATS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.uint(MEMORY_STAT_NR).uint(flags);
      },
      (r) => r.array((x) => ({ tag: x.int(), val: x.uhyper() }), Limits.MEMORY_STATS_MAX),
    );
    const out: Record<string, number> = {};
    for (const s of stats) out[MEMORY_STAT_NAMES[s.tag] ?? `tag_${s.tag}`] = Number(s.val);
    return out;
  }

  /**
   * virConnectGetAllDomainStats (no `doms`) or virDomainListGetStats (`doms`, looked up by UUID):
   * the `stats` groups (DOMAIN_STATS bits) of every domain `flags` selects, in one call. Values
   * keep libvirt's types: 64-bit ones are numbers up to 2^53 and bigints past it.
   */
  async getAllDomainStats(stats: number, flags: number, doms?: readonly RpcDomain[]): Promise<DomainStatsRecord[]> {
    const records = await this.call(
      'getAllDomainStats',
      Proc.CONNECT_GET_ALL_DOMAIN_STATS,
      (w) => {
        w.array(doms ?? [], (x, d) => encodeDomain(x, wire(d)), Limits.DOMAIN_LIST_MAX);
        w.uint(bits32(stats, 'stats')).uint(bits32(flags, 'flags'));
      },
      (r) =>
        r.array(
          (x) => ({ dom: decodeDomain(x), params: x.array(decodeTypedParam, Limits.GET_ALL_DOMAIN_STATS_MAX) }),
          Limits.DOMAIN_LIST_MAX,
        ),
    );
    return records.map(({ dom, params }) => ({
      dom: fromWire(dom),
      // fromEntries defines own properties: a field named __proto__ would stay a plain key.
      params: Object.fromEntries(params.map((p) => [p.field, p.value])),
    }));
  }
}

function wire(dom: RpcDomain): WireDomain {
  return { name: dom.name, uuid: uuidFromString(dom.uuid), id: dom.id };
}

function fromWire(d: WireDomain): RpcDomain {
  return { name: d.name, uuid: uuidToString(d.uuid), id: d.id };
}

const none = (): void => undefined;

/** The arguments of the many calls that take just a domain, or a domain and a flags word. */
const domOnly = (dom: RpcDomain) => (w: XdrWriter) => encodeDomain(w, wire(dom));
const domFlags = (dom: RpcDomain, flags: number) => (w: XdrWriter) => {
  encodeDomain(w, wire(dom));
  w.uint(flags);
};

/** remote_domain_{attach,detach}_device_flags_args: the domain, the device's XML, flags. */
const domXmlFlags = (dom: RpcDomain, xml: string, flags: number) => (w: XdrWriter) => {
  encodeDomain(w, wire(dom));
  w.string(xml, Limits.STRING_MAX);
  w.uint(bits32(flags, 'flags'));
};

/** An unsigned int of flag bits; also takes the negative number `|` makes of a set bit 31. */
function bits32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0xffff_ffff) throw new XdrError(`${what}: ${v} is not 32 bits of flags`);
  return v >>> 0;
}
