// Errors a test expects: the test fails if nothing is thrown or something else is.
import { expect } from 'vitest';
import { VmletError } from '../../src/errors.js';
import { LibvirtRpcError } from '../../src/vm/rpc/index.js';

/** The InvalidArgument a synchronous call throws. */
export function invalidArgumentFrom(fn: () => unknown): VmletError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VmletError);
    expect((err as VmletError).kind).toBe('invalid-argument');
    return err as VmletError;
  }
  throw new Error('expected an InvalidArgument error');
}

/** The LibvirtRpcError a promise rejects with (the test fails if it resolves or rejects otherwise). */
export async function rpcRejection(p: Promise<unknown>): Promise<LibvirtRpcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LibvirtRpcError);
  return err as LibvirtRpcError;
}
