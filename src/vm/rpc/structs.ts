// The *_args / *_ret structs of remote_protocol.x that are more than a domain and a flags word,
// and the event messages the daemon sends, each with its decoder and (for tests and fake daemons,
// which play the daemon's side) its encoder. Field order and types are the .x file's.
import { decodeDomain, encodeDomain, Limits, type WireDomain } from './protocol.js';
import { XdrError, type XdrReader, type XdrWriter } from './xdr.js';

// ---------------------------------------------------------------- remote_node_get_info_ret

/** virNodeInfo (memory in KiB). */
export interface NodeInfo {
  model: string;
  memoryKiB: number;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

/** `char model[32]`: a fixed array of chars, and XDR gives each char a whole word. */
const MODEL_CHARS = 32;

export function decodeNodeInfo(r: XdrReader): NodeInfo {
  const chars = r.fixedArray(MODEL_CHARS, (x) => x.int() & 0xff);
  const end = chars.indexOf(0);
  const model = Buffer.from(end < 0 ? chars : chars.slice(0, end)).toString('latin1');
  return { model, memoryKiB: Number(r.uhyper()), cpus: r.int(), mhz: r.int(), nodes: r.int(), sockets: r.int(), cores: r.int(), threads: r.int() };
}

export function encodeNodeInfo(w: XdrWriter, n: NodeInfo): void {
  const bytes = Buffer.alloc(MODEL_CHARS);
  bytes.write(n.model.slice(0, MODEL_CHARS - 1), 'latin1');
  // libvirt's char is signed: bytes past 127 go out as negative ints.
  w.fixedArray([...bytes], MODEL_CHARS, (x, b) => x.int(b > 127 ? b - 256 : b));
  w.uhyper(n.memoryKiB).int(n.cpus).int(n.mhz).int(n.nodes).int(n.sockets).int(n.cores).int(n.threads);
}

// ---------------------------------------------------------------- remote_domain_get_info_ret

/** virDomainInfo: what virDomainGetInfo reports (memory in KiB, CPU time in ns). */
export interface RpcDomainInfo {
  /** virDomainState (DomainState): 1 running, 3 paused, 5 shut off, ... */
  state: number;
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

/** `unsigned char state` and `unsigned short nrVirtCpu` take a whole XDR word each. */
export function decodeDomainInfo(r: XdrReader): RpcDomainInfo {
  return { state: r.uint(), maxMemKiB: Number(r.uhyper()), memoryKiB: Number(r.uhyper()), vcpus: r.uint(), cpuTimeNs: Number(r.uhyper()) };
}

export function encodeDomainInfo(w: XdrWriter, i: RpcDomainInfo): void {
  w.uint(i.state).uhyper(i.maxMemKiB).uhyper(i.memoryKiB).uint(i.vcpus).uhyper(i.cpuTimeNs);
}

// ---------------------------------------------------------------- remote_domain_get_state_ret

/** virDomainGetState: the state and its reason (virDomain<State>Reason, by state). */
export interface DomainStateReason {
  state: number;
  reason: number;
}

export function decodeDomainState(r: XdrReader): DomainStateReason {
  return { state: r.int(), reason: r.int() };
}

export function encodeDomainState(w: XdrWriter, s: DomainStateReason): void {
  w.int(s.state).int(s.reason);
}

// ---------------------------------------------------------------- remote_connect_list_all_domains

/** _args: `need_results` asks for the list itself (0 would return only the count). */
export function encodeListAllDomainsArgs(w: XdrWriter, flags: number): void {
  w.int(1).uint(flags);
}

/** _ret: the domains, then their count (`ret`), which must agree. */
export function decodeListAllDomains(r: XdrReader): WireDomain[] {
  const doms = r.array(decodeDomain, Limits.DOMAIN_LIST_MAX);
  const count = r.uint();
  if (count !== doms.length) throw new XdrError(`list of ${doms.length} domains says it has ${count}`);
  return doms;
}

export function encodeListAllDomains(w: XdrWriter, doms: readonly WireDomain[]): void {
  w.array(doms, encodeDomain, Limits.DOMAIN_LIST_MAX).uint(doms.length);
}

// ---------------------------------------------------------------- domain events

/**
 * remote_connect_domain_event_callback_register_any_args: the event kind (EVENT_ID) and the one
 * domain to watch, or none for every domain. The _ret is the callbackID (an int) that the
 * daemon's event messages carry.
 */
export function encodeEventRegisterArgs(w: XdrWriter, eventId: number, dom: WireDomain | null): void {
  w.int(eventId).optional(dom, encodeDomain);
}

/** remote_domain_event_callback_lifecycle_msg: callbackID, then remote_domain_event_lifecycle_msg. */
export interface LifecycleMsg {
  callbackId: number;
  dom: WireDomain;
  /** virDomainEventType (LIFECYCLE_EVENTS). */
  event: number;
  /** virDomainEvent<Event>DetailType, by event (e.g. STOPPED_DETAIL). */
  detail: number;
}

export function decodeLifecycleMsg(r: XdrReader): LifecycleMsg {
  return { callbackId: r.int(), dom: decodeDomain(r), event: r.int(), detail: r.int() };
}

export function encodeLifecycleMsg(w: XdrWriter, m: LifecycleMsg): void {
  w.int(m.callbackId);
  encodeDomain(w, m.dom);
  w.int(m.event).int(m.detail);
}
