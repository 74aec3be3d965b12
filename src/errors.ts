// Errors that carry what went wrong in CRI terms without knowing about gRPC: cri/ maps each
// kind to a status code. Messages name the field or annotation and what is allowed.
export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'permission-denied'
  | 'unavailable'
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
