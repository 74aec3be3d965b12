// Errors of the RPC client. libvirtd's errors keep libvirt's code, domain and message; the kind
// is what callers branch on (the same three-way split as ../libvirt.ts, plus 'invalid' for
// requests libvirt refused as wrong rather than failed).

/** virErrorNumber values (include/libvirt/virterror.h) this client gives meaning to. */
export const VirErr = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  AUTH_FAILED: 45,
  OPERATION_INVALID: 55,
  CONFIG_UNSUPPORTED: 67,
  ARGUMENT_UNSUPPORTED: 74,
} as const;

/** Code and domain of errors raised by this client itself rather than by libvirtd. */
export const LOCAL_ERROR = -1;

export type LibvirtRpcErrorKind = 'not-found' | 'connection' | 'invalid' | 'other';

const INVALID_CODES: ReadonlySet<number> = new Set([
  VirErr.INVALID_ARG,
  VirErr.OPERATION_INVALID,
  VirErr.CONFIG_UNSUPPORTED,
  VirErr.ARGUMENT_UNSUPPORTED,
]);

/** The kind of an error libvirtd returned (connection errors never come from the daemon's reply). */
export function kindForCode(code: number): LibvirtRpcErrorKind {
  if (code === VirErr.NO_DOMAIN) return 'not-found';
  if (INVALID_CODES.has(code)) return 'invalid';
  return 'other';
}

export class LibvirtRpcError extends Error {
  override name = 'LibvirtRpcError';
  /** virErrorNumber from libvirtd, or LOCAL_ERROR when this client raised it. */
  readonly code: number;
  /** virErrorDomain (which libvirt subsystem), or LOCAL_ERROR. */
  readonly domain: number;
  readonly kind: LibvirtRpcErrorKind;
  /** The API call that failed, e.g. 'pinVcpu'. */
  readonly op: string;

  constructor(message: string, o: { code?: number; domain?: number; kind: LibvirtRpcErrorKind; op: string; cause?: unknown }) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.code = o.code ?? LOCAL_ERROR;
    this.domain = o.domain ?? LOCAL_ERROR;
    this.kind = o.kind;
    this.op = o.op;
  }
}

export const connectionError = (op: string, message: string, cause?: unknown) =>
  new LibvirtRpcError(message, { kind: 'connection', op, cause });

export const invalidError = (op: string, message: string, cause?: unknown) =>
  new LibvirtRpcError(message, { kind: 'invalid', op, cause });
