// A small pure-TypeScript client of libvirt's remote RPC protocol (as go-libvirt is for Go),
// for the tuning calls the native binding lacks. Local system sockets only; no keepalive, no
// events, no streams.
export { LibvirtRpc, AFFECT, VCPU_MAXIMUM, MEM_MAXIMUM, type RpcDomain, type LibvirtRpcOptions } from './libvirt-rpc.js';
export { LibvirtRpcError, VirErr, type LibvirtRpcErrorKind } from './errors.js';
export type { TypedParam, TypedParamTypeName } from './protocol.js';
export { socketPathForUri } from './uri.js';
