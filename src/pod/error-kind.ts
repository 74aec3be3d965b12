// The CRI-level kind of an error a pod verb throws, for cri/ to map to a status code: a
// VmletError's own kind (the VM driver throws VmletErrors too, so cri/ needs no libvirt import).
import { isNoSpace, VmletError, type ErrorKind } from '../errors.js';

/** undefined: not an error vmlet classified (cri/ answers INTERNAL). A full disk is RESOURCE_EXHAUSTED wherever it is met. */
export function errorKind(err: unknown): ErrorKind | undefined {
  if (err instanceof VmletError) return err.kind;
  if (isNoSpace(err)) return 'resource-exhausted';
  return undefined;
}
