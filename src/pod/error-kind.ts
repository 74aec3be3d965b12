// The CRI-level kind of an error a pod verb throws, for cri/ to map to a status code: a
// VmletError's own kind, or a libvirt error's by its class (so cri/ needs no libvirt import).
import { VmletError, type ErrorKind } from '../errors.js';
import { VirtError } from '../vm/libvirt.js';

/** undefined: not an error vmlet classified (cri/ answers INTERNAL). */
export function errorKind(err: unknown): ErrorKind | undefined {
  if (err instanceof VmletError) return err.kind;
  if (err instanceof VirtError) return err.kind === 'connection' ? 'unavailable' : err.kind === 'not-found' ? 'not-found' : 'internal';
  return undefined;
}
