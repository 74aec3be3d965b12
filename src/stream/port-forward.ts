// Port-forward into a VM pod: the pod IP is routed from the host netns (the CNI bridge, the same
// path the kubelet's HTTP probes take), so vmlet dials <pod ip>:<port> directly. No netns entry,
// no helper process.
import { VmletError } from '../errors.js';
import { connect, type Socket } from 'node:net';

export const CONNECT_TIMEOUT_MS = 10_000;

/** A connected TCP socket to host:port; rejects with a message fit for the user. */
export function dialTcp(host: string, port: number, timeoutMs = CONNECT_TIMEOUT_MS): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new VmletError('unavailable', `connecting to ${host}:${port}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve(sock);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new VmletError('unavailable', `connecting to ${host}:${port}: ${err.message}`, { cause: err }));
    };
    sock.once('error', onError);
  });
}
