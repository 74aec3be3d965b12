// A VM-image container's read-only virtiofs shares: virtiofs has no read-only mode (libvirt
// refuses <readonly/> for it), so the share's source is a read-only bind mount of the volume at
// <container dir>/ro-shares/<n>, and the host's kernel refuses the guest's writes, as QEMU does
// for a read-only 9p share. The binds go with the container dir (records.ts removeUnmounted).
import { join } from 'node:path';
import { bindContainerMounts } from '../guest/shared-mounts.js';
import type { VmShare } from '../vm/spec.js';

export const RO_SHARES_DIR = 'ro-shares';

/** The shares with each read-only virtiofs one's source bound read-only under `containerDir`; a failure undoes the binds made. */
export async function bindReadOnlyShares(containerDir: string, shares: VmShare[]): Promise<VmShare[]> {
  const ro = shares.filter((sh) => sh.virtiofs && sh.readonly);
  if (!ro.length) return shares;
  await bindContainerMounts(containerDir, RO_SHARES_DIR, ro.map((sh) => ({ hostPath: sh.source, readonly: true })));
  let i = 0;
  return shares.map((sh) => (sh.virtiofs && sh.readonly ? { ...sh, source: join(containerDir, RO_SHARES_DIR, String(i++)) } : sh));
}
