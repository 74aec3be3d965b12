// Wire facts of libvirt's remote protocol (src/rpc/virnetprotocol.x, src/remote/remote_protocol.x)
// for the calls this client makes, and the structs they share (the bigger replies and the event
// messages are in structs.ts). Procedure numbers are ABI: libvirt never renumbers them, so a
// table of constants is safe across daemon versions.
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
/** libvirt's keepalive program ('keep'): its PINGs are not replies to anything we sent. */
export const KEEPALIVE_PROGRAM = 0x6b656570;

/** REMOTE_PROC_* of remote_protocol.x, in number order. */
export const Proc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  NODE_GET_INFO: 6,
  DOMAIN_DEFINE_XML: 11,
  DOMAIN_DESTROY: 12,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_GET_INFO: 16,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_RESUME: 28,
  DOMAIN_SHUTDOWN: 33,
  DOMAIN_GET_SCHEDULER_TYPE: 56,
  CONNECT_GET_HOSTNAME: 59,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_MEMORY_STATS: 159,
  DOMAIN_ATTACH_DEVICE_FLAGS: 160,
  DOMAIN_DETACH_DEVICE_FLAGS: 161,
  DOMAIN_CREATE_WITH_FLAGS: 196,
  DOMAIN_SET_VCPUS_FLAGS: 199,
  DOMAIN_GET_VCPUS_FLAGS: 200,
  DOMAIN_SET_MEMORY_FLAGS: 204,
  DOMAIN_GET_STATE: 212,
  DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS: 219,
  DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS: 223,
  DOMAIN_PIN_VCPU_FLAGS: 225,
  DOMAIN_GET_VCPU_PIN_INFO: 230,
  DOMAIN_UNDEFINE_FLAGS: 231,
  CONNECT_LIST_ALL_DOMAINS: 273,
  DOMAIN_PIN_EMULATOR: 279,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  /** Sent by the daemon (type MESSAGE) to a connection with a lifecycle callback registered. */
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  CONNECT_GET_ALL_DOMAIN_STATS: 344,
} as const;

/** virNetMessageType. */
export const MessageType = { CALL: 0, REPLY: 1, MESSAGE: 2, STREAM: 3, CALL_WITH_FDS: 4, REPLY_WITH_FDS: 5 } as const;
/** virNetMessageStatus. */
export const MessageStatus = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;
/** remote_auth_type. */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** The length word counts itself. */
export const LEN_SIZE = 4;
export const HEADER_SIZE = 24;
/** VIR_NET_MESSAGE_MAX: header + payload; the length word comes on top. */
export const MESSAGE_MAX = 16_777_216;

/** Limits from remote_protocol.x, enforced by the daemon's decoder too. */
export const Limits = {
  STRING_MAX: 4_194_304,
  CPUMAP_MAX: 256,
  CPUMAPS_MAX: 16_384,
  SCHEDULER_PARAMETERS_MAX: 16,
  MEMORY_STATS_MAX: 1024,
  /** REMOTE_DOMAIN_LIST_MAX: domains in a list call's arguments or reply. */
  DOMAIN_LIST_MAX: 16_384,
  /** REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX: typed params in one domain's stats record. */
  GET_ALL_DOMAIN_STATS_MAX: 4096,
  AUTH_TYPE_LIST_MAX: 20,
  UUID_BUFLEN: 16,
} as const;

export interface MessageHeader {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

export function encodeHeader(w: XdrWriter, h: MessageHeader): void {
  w.uint(h.prog).uint(h.vers).int(h.proc).int(h.type).uint(h.serial).int(h.status);
}

export function decodeHeader(r: XdrReader): MessageHeader {
  return { prog: r.uint(), vers: r.uint(), proc: r.int(), type: r.int(), serial: r.uint(), status: r.int() };
}

/** One whole packet: length word (including itself), header, payload. */
export function encodePacket(h: MessageHeader, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const w = new XdrWriter(LEN_SIZE + HEADER_SIZE + payload.length);
  w.uint(0); // patched below once the size is known
  encodeHeader(w, h);
  const out = Buffer.concat([w.bytes(), payload]);
  if (out.length - LEN_SIZE > MESSAGE_MAX) throw new XdrError(`message of ${out.length} bytes exceeds libvirt's ${MESSAGE_MAX}`);
  out.writeUInt32BE(out.length, 0);
  return out;
}

/** Splits a packet (length word included) into header and payload. */
export function decodePacket(packet: Buffer): { header: MessageHeader; payload: Buffer } {
  const r = new XdrReader(packet);
  const len = r.uint();
  if (len !== packet.length) throw new XdrError(`packet length word says ${len}, packet has ${packet.length} bytes`);
  const header = decodeHeader(r);
  return { header, payload: packet.subarray(r.offset) };
}

// ---------------------------------------------------------------- structs

/** remote_nonnull_domain with the uuid as raw bytes. */
export interface WireDomain {
  name: string;
  uuid: Buffer;
  id: number;
}

export function encodeDomain(w: XdrWriter, d: WireDomain): void {
  w.string(d.name, Limits.STRING_MAX).fixedOpaque(d.uuid, Limits.UUID_BUFLEN).int(d.id);
}

export function decodeDomain(r: XdrReader): WireDomain {
  return { name: r.string(Limits.STRING_MAX), uuid: r.fixedOpaque(Limits.UUID_BUFLEN), id: r.int() };
}

export function uuidToString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function uuidFromString(s: string): Buffer {
  // libvirt accepts the hex digits with or without dashes (virUUIDParse); so do we.
  const hex = s.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new XdrError(`not a UUID: ${JSON.stringify(s)}`);
  return Buffer.from(hex, 'hex');
}

/** virTypedParameterType: the discriminant of remote_typed_param_value. */
export const TypedParamType = { int: 1, uint: 2, llong: 3, ullong: 4, double: 5, boolean: 6, string: 7 } as const;
export type TypedParamTypeName = keyof typeof TypedParamType;

export type TypedParam = {
  field: string;
  type: TypedParamTypeName;
  value: number | bigint | boolean | string;
};

const TYPE_NAMES = new Map<number, TypedParamTypeName>(
  Object.entries(TypedParamType).map(([k, v]) => [v, k as TypedParamTypeName]),
);

function numeric(p: TypedParam): number | bigint {
  if (typeof p.value === 'number' || typeof p.value === 'bigint') return p.value;
  throw new XdrError(`typed param ${p.field} (${p.type}) needs a number, got ${typeof p.value}`);
}

function asNumber(p: TypedParam): number {
  const v = numeric(p);
  return typeof v === 'bigint' ? Number(v) : v;
}

export function encodeTypedParam(w: XdrWriter, p: TypedParam): void {
  const disc = TypedParamType[p.type];
  if (disc === undefined) throw new XdrError(`typed param ${p.field}: unknown type ${String(p.type)}`);
  w.string(p.field, Limits.STRING_MAX).int(disc);
  switch (p.type) {
    case 'int':
      w.int(asNumber(p));
      break;
    case 'uint':
      w.uint(asNumber(p));
      break;
    case 'llong':
      w.hyper(numeric(p));
      break;
    case 'ullong':
      w.uhyper(numeric(p));
      break;
    case 'double':
      w.double(asNumber(p));
      break;
    case 'boolean':
      if (typeof p.value !== 'boolean' && p.value !== 0 && p.value !== 1) {
        throw new XdrError(`typed param ${p.field} (boolean) needs true/false, got ${String(p.value)}`);
      }
      w.bool(Boolean(p.value));
      break;
    case 'string':
      if (typeof p.value !== 'string') throw new XdrError(`typed param ${p.field} (string) needs a string, got ${typeof p.value}`);
      w.string(p.value, Limits.STRING_MAX);
      break;
  }
}

/** 64-bit values come back as number when exactly representable, else as bigint. */
const narrow = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

export function decodeTypedParam(r: XdrReader): TypedParam {
  const field = r.string(Limits.STRING_MAX);
  const disc = r.int();
  const type = TYPE_NAMES.get(disc);
  if (type === undefined) throw new XdrError(`typed param ${field}: unknown type ${disc}`);
  switch (type) {
    case 'int':
      return { field, type, value: r.int() };
    case 'uint':
      return { field, type, value: r.uint() };
    case 'llong':
      return { field, type, value: narrow(r.hyper()) };
    case 'ullong':
      return { field, type, value: narrow(r.uhyper()) };
    case 'double':
      return { field, type, value: r.double() };
    case 'boolean':
      // libvirt sends any non-zero int as true (it is a C char on the other side).
      return { field, type, value: r.int() !== 0 };
    case 'string':
      return { field, type, value: r.string(Limits.STRING_MAX) };
  }
}

/** remote_error; dom and net are unused by libvirt but on the wire, so they are read and dropped. */
export interface RemoteError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

export function decodeRemoteError(r: XdrReader): RemoteError {
  const str = (x: XdrReader) => x.string(Limits.STRING_MAX);
  const code = r.int();
  const domain = r.int();
  const message = r.optional(str);
  const level = r.int();
  r.optional(decodeDomain);
  const str1 = r.optional(str);
  const str2 = r.optional(str);
  const str3 = r.optional(str);
  const int1 = r.int();
  const int2 = r.int();
  r.optional((x) => ({ name: str(x), uuid: x.fixedOpaque(Limits.UUID_BUFLEN) })); // remote_nonnull_network
  return { code, domain, message, level, str1, str2, str3, int1, int2 };
}

/** Encoder for tests and fakes: the daemon's side of remote_error. */
export function encodeRemoteError(w: XdrWriter, e: Partial<RemoteError> & { code: number; domain: number }): void {
  const str = (x: XdrWriter, s: string) => x.string(s, Limits.STRING_MAX);
  w.int(e.code).int(e.domain).optional(e.message, str).int(e.level ?? 2);
  w.optional(null, encodeDomain);
  w.optional(e.str1, str).optional(e.str2, str).optional(e.str3, str);
  w.int(e.int1 ?? 0).int(e.int2 ?? 0);
  w.optional(null, () => undefined);
}

/** virDomainMemoryStatTags, named as `virsh dommemstat` prints them. */
export const MEMORY_STAT_NAMES: readonly string[] = [
  'swap_in',
  'swap_out',
  'major_fault',
  'minor_fault',
  'unused',
  'available',
  'actual',
  'rss',
  'usable',
  'last_update',
  'disk_caches',
  'hugetlb_pgalloc',
  'hugetlb_pgfail',
];
/** VIR_DOMAIN_MEMORY_STAT_NR in libvirt 9.0: how many stats we ask for (what virsh asks for). */
export const MEMORY_STAT_NR = 13;
