import { describe, expect, it } from 'vitest';
import { formatBytes, parseQuantityBytes, QuantityError } from '../../src/vm/quantity.js';

describe('Kubernetes quantities as bytes', () => {
  it.each([
    ['0', 0],
    ['1', 1],
    ['512', 512],
    ['1Ki', 1024],
    ['512Mi', 512 * 2 ** 20],
    ['2Gi', 2 * 2 ** 30],
    ['1Ti', 2 ** 40],
    ['1Pi', 2 ** 50],
    ['1k', 1000],
    ['1M', 1e6],
    ['1G', 1e9],
    ['1T', 1e12],
    ['1P', 1e15],
    ['0.001E', 1e15], // exa itself is beyond a safe integer
    ['1.5Gi', 1.5 * 2 ** 30],
    ['0.5Mi', 2 ** 19],
    ['.5Ki', 512],
    ['5.Ki', 5 * 1024],
    ['1.1Gi', Math.ceil(1.1 * 2 ** 30)], // 1181116006.4 → rounded up
    ['1e9', 1e9],
    ['1E9', 1e9],
    ['2.5e3', 2500],
    ['1e+3', 1000],
    ['15e-1', 2], // 1.5 bytes rounds up
    ['+1Mi', 2 ** 20],
    ['-0', 0],
    ['007Mi', 7 * 2 ** 20],
  ])('%s → %d bytes', (text, bytes) => {
    expect(parseQuantityBytes(text)).toBe(bytes);
  });

  it('handles the exa binary suffix exactly up to the safe-integer limit', () => {
    expect(parseQuantityBytes('4Pi')).toBe(4 * 2 ** 50);
    expect(() => parseQuantityBytes('8Ei')).toThrow(/too large/);
    expect(() => parseQuantityBytes('1e30')).toThrow(/too large/);
  });

  it.each(['', ' ', 'abc', 'Mi', '1.2.3', '1 Gi', '1gi', '1KB', '1K', '1mi', '1e', '1e1.5', '0x10', '1Mi ', '--1', '1,5Gi', '.', '1Gib'])(
    'rejects %j with a clear message',
    (text) => {
      expect(() => parseQuantityBytes(text)).toThrow(QuantityError);
      expect(() => parseQuantityBytes(text)).toThrow(/not a Kubernetes quantity.*Ki, Mi, Gi/);
    },
  );

  it('rejects negative sizes and millibytes with a hint', () => {
    expect(() => parseQuantityBytes('-1Gi')).toThrow(/negative/);
    expect(() => parseQuantityBytes('512m')).toThrow(/millibytes.*Mi/);
  });

  it('rejects absurd exponents without trying to compute them', () => {
    expect(() => parseQuantityBytes('1e99999')).toThrow(/exponent/);
  });

  it('formats exact binary sizes for messages', () => {
    expect(formatBytes(32 * 2 ** 20)).toBe('32Mi');
    expect(formatBytes(16 * 2 ** 40)).toBe('16Ti');
    expect(formatBytes(1536 * 2 ** 20)).toBe('1536Mi');
    expect(formatBytes(1000)).toBe('1000');
  });
});
