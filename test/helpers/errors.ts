// The InvalidArgument a synchronous call throws (the test fails if it throws nothing or another kind).
import { expect } from 'vitest';
import { VmletError } from '../../src/errors.js';

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
