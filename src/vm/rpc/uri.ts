// Which UNIX socket a libvirt URI means, and the name to open once connected. Only the local
// system daemon is supported: session daemons and remote transports (ssh, tls, tcp) need
// libvirt's own client (spawned daemons, SSH, TLS, SASL), which this small client does not do.
import { existsSync } from 'node:fs';
import { LibvirtRpcError } from './errors.js';

/** The monolithic daemon's socket, and virtqemud's on hosts with the modular daemons. */
export const LIBVIRTD_SOCKET = '/run/libvirt/libvirt-sock';
export const VIRTQEMUD_SOCKET = '/run/libvirt/virtqemud-sock';

interface LocalUri {
  driver: string;
  url: URL;
}

function parseLocal(uri: string): LocalUri {
  const unsupported = (why: string) =>
    new LibvirtRpcError(`libvirt URI ${uri}: ${why}; only local system sockets are supported (e.g. qemu:///system)`, {
      kind: 'other',
      op: 'connect',
    });
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw unsupported('not a URI');
  }
  const [driver = '', transport, ...more] = url.protocol.replace(/:$/, '').split('+');
  if (more.length > 0 || (transport !== undefined && transport !== 'unix')) throw unsupported(`transport ${transport ?? ''} is remote`);
  if (url.host !== '' || url.username !== '') throw unsupported(`host ${url.host} is remote`);
  if (url.pathname !== '/system') throw unsupported(`${url.pathname || '(no path)'} is not a system daemon`);
  return { driver, url };
}

/**
 * The socket for `uri`: its `?socket=` parameter, else libvirtd's socket, else virtqemud's when
 * only that one exists. Throws LibvirtRpcError (kind 'other') for session or remote URIs.
 */
export function socketPathForUri(uri: string, exists: (p: string) => boolean = existsSync): string {
  const { url } = parseLocal(uri);
  const explicit = url.searchParams.get('socket');
  if (explicit) return explicit;
  if (!exists(LIBVIRTD_SOCKET) && exists(VIRTQEMUD_SOCKET)) return VIRTQEMUD_SOCKET;
  return LIBVIRTD_SOCKET;
}

/**
 * The name for CONNECT_OPEN: the URI without the client-side parts (the +unix transport and
 * the socket parameter), as libvirt's own remote driver sends it.
 */
export function daemonUri(uri: string): string {
  const { driver, url } = parseLocal(uri);
  const q = new URLSearchParams(url.search);
  q.delete('socket');
  const rest = q.toString();
  return `${driver}:///system${rest ? `?${rest}` : ''}`;
}
