// Errors that carry what went wrong in CRI terms without knowing about gRPC: cri/ maps each
// kind to a status code. Messages name the field or annotation and what is allowed.
export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'permission-denied'
  | 'unavailable'
  /** The node ran out of something the call needs: disk space on the state dir's filesystem. */
  | 'resource-exhausted'
  | 'unimplemented'
  /** A call's own time limit ran out (ExecSync's timeout: the kubelet counts it as a probe timeout). */
  | 'deadline-exceeded'
  | 'internal';

export class VmletError extends Error {
  override name = 'VmletError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (msg: string) => new VmletError('invalid-argument', msg);
export const notFound = (msg: string) => new VmletError('not-found', msg);
export const alreadyExists = (msg: string) => new VmletError('already-exists', msg);
export const failedPrecondition = (msg: string) => new VmletError('failed-precondition', msg);
export const unavailable = (msg: string) => new VmletError('unavailable', msg);
export const deadlineExceeded = (msg: string) => new VmletError('deadline-exceeded', msg);

/** ENOSPC or EDQUOT: a write found its filesystem (or the quota on it) full. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || (err instanceof VmletError && err.kind === 'resource-exhausted');
}

/** RESOURCE_EXHAUSTED for `what` that found no space on the filesystem of `dir`, with the cause's words. */
export function noSpace(what: string, dir: string, cause: unknown): VmletError {
  return new VmletError('resource-exhausted', `${what}: no space left on the filesystem of ${dir} (${(cause as Error).message}); free space there and retry`, { cause });
}
