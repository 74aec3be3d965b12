// The VM's MAC address: derived from the pod's id, so it is the same after a vmlet restart or a
// domain redefinition without storing anything, and locally administered + unicast (first
// octet 0x02), so it never collides with a vendor's address.
import { VmletError } from '../errors.js';
import { createHash } from 'node:crypto';

/** `02:xx:xx:xx:xx:xx` from the first 5 bytes of sha256(id). */
export function macFromId(id: string): string {
  if (!id) throw new VmletError('internal', 'macFromId: empty id');
  const h = createHash('sha256').update(id).digest();
  const bytes = [0x02, ...h.subarray(0, 5)];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isMac(s: string): boolean {
  return MAC_RE.test(s);
}
