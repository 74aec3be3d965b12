// A small pure-TypeScript client of libvirt's remote RPC protocol (as go-libvirt is for Go): all
// of vmlet's libvirt calls (lifecycle, tuning, stats) and domain lifecycle events. Local system
// sockets only; no keepalive, no streams.
//   xdr.ts, protocol.ts, structs.ts, constants.ts   the mechanical part: XDR, framing, the
//                                                   procedure table, the structs, libvirt's enums
//   client.ts, handshake.ts, session.ts             one connection, its auth, reconnecting
//   libvirt-rpc.ts                                  the typed calls and events
export {
  LibvirtRpc,
  type RpcDomain,
  type RpcDomainInfo,
  type RpcLifecycleEvent,
  type NodeInfo,
  type DomainStateReason,
  type LibvirtRpcOptions,
  type DomainStatsRecord,
  type DomainStatsValue,
} from './libvirt-rpc.js';
export {
  AFFECT,
  VCPU_MAXIMUM,
  MEM_MAXIMUM,
  DOMAIN_STATS,
  GET_ALL_DOMAINS_STATS,
  LIST_DOMAINS,
  START,
  UNDEFINE,
  EVENT_ID,
  LIFECYCLE_EVENTS,
  STOPPED_DETAIL,
  DomainState,
  type LifecycleEventName,
} from './constants.js';
export { LibvirtRpcError, VirErr, type LibvirtRpcErrorKind } from './errors.js';
export type { TypedParam, TypedParamTypeName } from './protocol.js';
export type { DisconnectListener } from './session.js';
export { socketPathForUri } from './uri.js';
