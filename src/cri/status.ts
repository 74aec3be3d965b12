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

/**
 * The most of a message sent as grpc-message, in UTF-8 bytes. It travels percent-encoded in the
 * trailers, up to 3x larger: a message that echoes a huge field (a 60 KB container id) would
 * pass the client's header size limit (16 KiB in Go's, 64 KiB in Node's HTTP/2), and the client
 * then drops its whole connection, every call on it failing (found by the CRI fuzz).
 */
export const MAX_DETAILS_BYTES = 2048;

/** `message` cut to MAX_DETAILS_BYTES of UTF-8 (on a character boundary), saying how much was left out. */
export function capDetails(message: string): string {
  const bytes = Buffer.byteLength(message);
  if (bytes <= MAX_DETAILS_BYTES) return message;
  let out = '';
  let used = 0;
  for (const ch of message) {
    const n = Buffer.byteLength(ch);
    if (used + n > MAX_DETAILS_BYTES - 64) break;
    out += ch;
    used += n;
  }
  return `${out}… (${bytes - used} more bytes)`;
}

export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status; details: string } {
  const details = capDetails(err instanceof Error ? err.message : String(err));
  const kind = errorKind(err);
  const code = kind ? CODES[kind] : Status.INTERNAL;
  return { code, details, message: details, metadata: new Metadata() };
}
