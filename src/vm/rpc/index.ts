// A small pure-TypeScript client of libvirt's remote RPC protocol (as go-libvirt is for Go),
// for the calls the native binding lacks (tuning, bulk stats). Local system sockets only; no
// keepalive, no events, no streams.
export {
  LibvirtRpc,
  AFFECT,
  VCPU_MAXIMUM,
  MEM_MAXIMUM,
  DOMAIN_STATS,
  GET_ALL_DOMAINS_STATS,
  type RpcDomain,
  type RpcDomainInfo,
  type LibvirtRpcOptions,
  type DomainStatsRecord,
  type DomainStatsValue,
} from './libvirt-rpc.js';
export { LibvirtRpcError, VirErr, type LibvirtRpcErrorKind } from './errors.js';
export type { TypedParam, TypedParamTypeName } from './protocol.js';
export { socketPathForUri } from './uri.js';
