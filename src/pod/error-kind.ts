// The CRI-level kind of an error a pod verb throws, for cri/ to map to a status code: a
// VmletError's own kind (the VM driver throws VmletErrors too, so cri/ needs no libvirt import).
import { VmletError, type ErrorKind } from '../errors.js';

/** undefined: not an error vmlet classified (cri/ answers INTERNAL). */
export function errorKind(err: unknown): ErrorKind | undefined {
  if (err instanceof VmletError) return err.kind;
  return undefined;
}
