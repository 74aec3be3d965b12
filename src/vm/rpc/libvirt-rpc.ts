// The public client: a lazily opened, self-healing connection plus one method per libvirt call
// vmlet needs and the native binding lacks (pinning, scheduler, balloon, vCPU count, bulk domain
// stats). Each method encodes its *_args struct, makes the call and decodes its *_ret struct.
import { RpcConnection } from './client.js';
import { cpuListsFromMaps, cpumapFromList, cpumapLength } from './cpumap.js';
import { invalidError, LibvirtRpcError } from './errors.js';
import { handshake } from './handshake.js';
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
import { daemonUri, socketPathForUri } from './uri.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

export interface RpcDomain {
  name: string;
  /** The UUID in its string form (8-4-4-4-12 hex). */
  uuid: string;
  /** -1 when the domain is not running. */
  id: number;
}

/** virDomainModificationImpact (VIR_DOMAIN_AFFECT_*): which definition a change applies to. */
export const AFFECT = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
/** VIR_DOMAIN_VCPU_MAXIMUM / VIR_DOMAIN_MEM_MAXIMUM: the maximum rather than the current value. */
export const VCPU_MAXIMUM = 4;
export const MEM_MAXIMUM = 4;

/**
 * virDomainStatsTypes (VIR_DOMAIN_STATS_*): the groups getAllDomainStats reports; 0 asks for
 * every group the driver has. The QEMU driver (libvirt 9.0, QEMU 7.2) answers STATE, INTERFACE,
 * PERF and MEMORY from its own records and the host; for CPU_TOTAL, VCPU and BALLOON it takes a
 * query job on each domain in turn and asks its QEMU over the monitor (query-stats; query-balloon
 * and qom-get), which costs ~1-2 ms per domain and group under TCG and waits for a busy or stuck
 * domain (see NOWAIT). Only the monitor's share is left out when the job cannot be had: cpu.time,
 * vcpu.current and balloon.current/maximum come from libvirtd's records either way.
 */
export const DOMAIN_STATS = {
  STATE: 1 << 0,
  CPU_TOTAL: 1 << 1,
  BALLOON: 1 << 2,
  VCPU: 1 << 3,
  INTERFACE: 1 << 4,
  BLOCK: 1 << 5,
  PERF: 1 << 6,
  IOTHREAD: 1 << 7,
  MEMORY: 1 << 8,
  DIRTYRATE: 1 << 9,
  VM: 1 << 10,
} as const;

/**
 * virConnectGetAllDomainStatsFlags (VIR_CONNECT_GET_ALL_DOMAINS_STATS_*): the list filters are
 * VIR_CONNECT_LIST_DOMAINS_*'s. ENFORCE_STATS is bit 31: `x | ENFORCE_STATS` is a negative
 * number in JavaScript, which getAllDomainStats takes as the same 32 bits.
 */
export const GET_ALL_DOMAINS_STATS = {
  ACTIVE: 1 << 0,
  INACTIVE: 1 << 1,
  PERSISTENT: 1 << 2,
  TRANSIENT: 1 << 3,
  RUNNING: 1 << 4,
  PAUSED: 1 << 5,
  SHUTOFF: 1 << 6,
  OTHER: 1 << 7,
  /**
   * Skip (rather than wait up to 30 s for) the stats that need a domain's job while another job
   * holds it. A free job is still taken: a stuck QEMU still stalls the call.
   */
  NOWAIT: 1 << 29,
  BACKING: 1 << 30,
  /** Fail, rather than leave a group out, when the driver cannot report a requested group. */
  ENFORCE_STATS: 0x8000_0000,
} as const;

/** virDomainInfo: what virDomainGetInfo reports (memory in KiB, CPU time in ns). */
export interface RpcDomainInfo {
  /** virDomainState: 1 running, 3 paused, 5 shut off, ... */
  state: number;
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

export type DomainStatsValue = number | bigint | string | boolean;

/** One domain's record from getAllDomainStats: libvirt's field names ("state.state", "cpu.time", ...). */
export interface DomainStatsRecord {
  dom: RpcDomain;
  params: Record<string, DomainStatsValue>;
}

export interface LibvirtRpcOptions {
  /** A local system URI, e.g. qemu:///system (see socketPathForUri). */
  uri: string;
  /** Overrides the socket derived from the URI. */
  socketPath?: string;
  /** Per call, and for connecting plus the handshake. Default 30 s. */
  callTimeoutMs?: number;
}

type Encode = (w: XdrWriter) => void;

export class LibvirtRpc {
  readonly uri: string;
  private readonly socketPath: string | undefined;
  private readonly timeoutMs: number;
  private conn: RpcConnection | undefined;
  private connecting: Promise<RpcConnection> | undefined;
  private offeredAuth: number[] = [];

  constructor(opts: LibvirtRpcOptions) {
    this.uri = opts.uri;
    this.socketPath = opts.socketPath;
    this.timeoutMs = opts.callTimeoutMs ?? 30_000;
    if (!(this.timeoutMs > 0)) throw new RangeError(`callTimeoutMs must be positive, got ${this.timeoutMs}`);
  }

  /** Auth types (remote_auth_type) the daemon listed at the last handshake; [] means none needed. */
  get authTypes(): readonly number[] {
    return this.offeredAuth;
  }

  get connected(): boolean {
    return this.conn !== undefined && !this.conn.closed;
  }

  /** Opens the connection if it is not open (concurrent callers share one attempt). */
  async connect(): Promise<void> {
    await this.connection('connect');
  }

  /** Closes the connection; a later call opens a new one. */
  async close(): Promise<void> {
    await this.connecting?.catch(() => undefined);
    const c = this.conn;
    this.conn = undefined;
    if (!c || c.closed) return;
    // CONNECT_CLOSE lets the daemon release the driver connection now rather than on EOF.
    await c.call(Proc.CONNECT_CLOSE, undefined, 'close', Math.min(this.timeoutMs, 5_000)).catch(() => undefined);
    c.close();
  }

  /** libvirt's version as major * 1e6 + minor * 1e3 + micro; cheap, so also a ping. */
  async libVersion(): Promise<number> {
    return this.call('libVersion', Proc.CONNECT_GET_LIB_VERSION, undefined, (r) => Number(r.uhyper()));
  }

  async lookupDomain(name: string): Promise<RpcDomain> {
    const d = await this.call('lookupDomain', Proc.DOMAIN_LOOKUP_BY_NAME, (w) => w.string(name, Limits.STRING_MAX), decodeDomain);
    return { name: d.name, uuid: uuidToString(d.uuid), id: d.id };
  }

  /**
   * virDomainGetInfo. The QEMU driver answers from its own records (state, the balloon's current
   * size as QEMU last reported it, vCPUs) and /proc/<pid>/stat (CPU time, in clock ticks): it
   * takes no job on the domain and does not ask QEMU.
   */
  async getInfo(dom: RpcDomain): Promise<RpcDomainInfo> {
    return this.call(
      'getInfo',
      Proc.DOMAIN_GET_INFO,
      (w) => encodeDomain(w, wire(dom)),
      // unsigned char and unsigned short take a whole XDR word each.
      (r) => ({ state: r.uint(), maxMemKiB: Number(r.uhyper()), memoryKiB: Number(r.uhyper()), vcpus: r.uint(), cpuTimeNs: Number(r.uhyper()) }),
    );
  }

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
    return this.call(
      'schedulerType',
      Proc.DOMAIN_GET_SCHEDULER_TYPE,
      (w) => encodeDomain(w, wire(dom)),
      (r) => ({ type: r.string(Limits.STRING_MAX), nparams: r.int() }),
    );
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
    return this.call(
      'getVcpus',
      Proc.DOMAIN_GET_VCPUS_FLAGS,
      (w) => {
        encodeDomain(w, wire(dom));
        w.uint(flags);
      },
      (r) => r.int(),
    );
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
      dom: { name: dom.name, uuid: uuidToString(dom.uuid), id: dom.id },
      // fromEntries defines own properties: a field named __proto__ would stay a plain key.
      params: Object.fromEntries(params.map((p) => [p.field, p.value])),
    }));
  }

  // ---------------------------------------------------------------- plumbing

  private async call<T>(op: string, proc: number, encode: Encode | undefined, decode: (r: XdrReader) => T): Promise<T> {
    let args: Buffer | undefined;
    if (encode) {
      const w = new XdrWriter();
      try {
        encode(w);
      } catch (err) {
        // Bad arguments are refused here, before they cost a round trip.
        if (err instanceof XdrError) throw invalidError(op, `${op}: ${err.message}`, err);
        throw err;
      }
      args = w.bytes();
    }
    const c = await this.connection(op);
    const reply = await c.call(proc, args, op, this.timeoutMs);
    return decodeReply(op, reply, decode);
  }

  private async connection(op: string): Promise<RpcConnection> {
    if (this.conn && !this.conn.closed) return this.conn;
    this.conn = undefined;
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    try {
      return await this.connecting;
    } catch (err) {
      // Every caller sees the failure under its own operation name.
      if (err instanceof LibvirtRpcError && err.op !== op) {
        throw new LibvirtRpcError(err.message, { code: err.code, domain: err.domain, kind: err.kind, op, cause: err });
      }
      throw err;
    }
  }

  private async open(): Promise<RpcConnection> {
    const name = daemonUri(this.uri); // refuses session and remote URIs before touching a socket
    const path = this.socketPath ?? socketPathForUri(this.uri);
    const c = await RpcConnection.open(path, this.timeoutMs);
    try {
      this.offeredAuth = await handshake(c, name, this.timeoutMs);
    } catch (err) {
      c.close('libvirt handshake failed');
      if (err instanceof XdrError) throw new LibvirtRpcError(`libvirt handshake: ${err.message}`, { kind: 'other', op: 'connect', cause: err });
      throw err;
    }
    this.conn = c;
    c.onClose(() => {
      if (this.conn === c) this.conn = undefined; // the next call reconnects
    });
    return c;
  }
}

function wire(dom: RpcDomain): WireDomain {
  return { name: dom.name, uuid: uuidFromString(dom.uuid), id: dom.id };
}

const none = (): void => undefined;

/** An unsigned int of flag bits; also takes the negative number `|` makes of a set bit 31. */
function bits32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0xffff_ffff) throw new XdrError(`${what}: ${v} is not 32 bits of flags`);
  return v >>> 0;
}

function decodeReply<T>(op: string, payload: Buffer, decode: (r: XdrReader) => T): T {
  try {
    const r = new XdrReader(payload);
    const v = decode(r);
    r.end(`${op} reply`);
    return v;
  } catch (err) {
    if (err instanceof XdrError) {
      throw new LibvirtRpcError(`${op}: reply does not decode: ${err.message}`, { kind: 'other', op, cause: err });
    }
    throw err;
  }
}
