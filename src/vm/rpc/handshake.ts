// What a fresh connection must do before any other call: authenticate (AUTH_LIST, then
// AUTH_POLKIT when the daemon asks for it: libvirtd lets root through without asking polkitd)
// and CONNECT_OPEN the driver. SASL would need a SASL library and is refused with the reason.
import type { RpcConnection } from './client.js';
import { LibvirtRpcError, VirErr } from './errors.js';
import { AuthType, Limits, Proc } from './protocol.js';
import { XdrReader, XdrWriter } from './xdr.js';

const AUTH_NAMES: Record<number, string> = { [AuthType.NONE]: 'none', [AuthType.SASL]: 'sasl', [AuthType.POLKIT]: 'polkit' };

/** Authenticates and opens `name` (e.g. qemu:///system); returns the auth types the daemon offered. */
export async function handshake(c: RpcConnection, name: string, timeoutMs: number): Promise<number[]> {
  const op = 'connect';
  const list = new XdrReader(await c.call(Proc.AUTH_LIST, undefined, op, timeoutMs));
  const types = list.array((r) => r.int(), Limits.AUTH_TYPE_LIST_MAX);
  list.end('remote_auth_list_ret');

  // An empty list is what a daemon with auth "none" on this socket sends.
  if (types.length > 0 && !types.includes(AuthType.NONE)) {
    if (types.includes(AuthType.POLKIT)) {
      const r = new XdrReader(await c.call(Proc.AUTH_POLKIT, undefined, op, timeoutMs));
      const complete = r.int();
      r.end('remote_auth_polkit_ret');
      if (!complete) throw new LibvirtRpcError('libvirt polkit authentication did not complete', { kind: 'other', op, code: VirErr.AUTH_FAILED });
    } else {
      const offered = types.map((t) => AUTH_NAMES[t] ?? `type ${t}`).join(', ');
      const what = types.includes(AuthType.SASL) ? 'SASL authentication is not supported' : 'no supported authentication offered';
      throw new LibvirtRpcError(`libvirt socket asks for ${offered}: ${what} by this client (use a socket with auth none or polkit)`, {
        kind: 'other',
        op,
      });
    }
  }

  const args = new XdrWriter().optional(name, (w, s) => w.string(s, Limits.STRING_MAX)).uint(0);
  new XdrReader(await c.call(Proc.CONNECT_OPEN, args.bytes(), op, timeoutMs)).end('connect open reply');
  return types;
}
