// Maps vmlet's errors to gRPC status codes. Anything unexpected becomes INTERNAL with its message.
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js';
import { VmletError, type ErrorKind } from '../errors.js';
import { VirtError } from '../vm/libvirt.js';

const CODES: Record<ErrorKind, Status> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  'permission-denied': Status.PERMISSION_DENIED,
  unavailable: Status.UNAVAILABLE,
  unimplemented: Status.UNIMPLEMENTED,
  'deadline-exceeded': Status.DEADLINE_EXCEEDED,
  internal: Status.INTERNAL,
};

export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status; details: string } {
  let code = Status.INTERNAL;
  const details = err instanceof Error ? err.message : String(err);
  if (err instanceof VmletError) code = CODES[err.kind];
  else if (err instanceof VirtError) code = err.kind === 'connection' ? Status.UNAVAILABLE : err.kind === 'not-found' ? Status.NOT_FOUND : Status.INTERNAL;
  return { code, details, message: details, metadata: new Metadata() };
}

export function codeName(code: Status): string {
  return Status[code] ?? String(code);
}
