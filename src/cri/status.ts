// Maps vmlet's errors to gRPC status codes. Anything unexpected becomes INTERNAL with its message.
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js';
import type { ErrorKind } from '../errors.js';
import { errorKind } from '../pod/error-kind.js';

const CODES: Record<ErrorKind, Status> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  'permission-denied': Status.PERMISSION_DENIED,
  unavailable: Status.UNAVAILABLE,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  unimplemented: Status.UNIMPLEMENTED,
  'deadline-exceeded': Status.DEADLINE_EXCEEDED,
  internal: Status.INTERNAL,
};

export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status; details: string } {
  const details = err instanceof Error ? err.message : String(err);
  const kind = errorKind(err);
  const code = kind ? CODES[kind] : Status.INTERNAL;
  return { code, details, message: details, metadata: new Metadata() };
}
