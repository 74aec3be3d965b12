import { describe, expect, it } from 'vitest';
import { TokenStore } from '../../src/stream/tokens.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('TokenStore', () => {
  it('issues unguessable 32-byte base64url tokens', () => {
    const s = new TokenStore<string>();
    const a = s.issue('exec', 'x');
    const b = s.issue('exec', 'x');
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, 'base64url')).toHaveLength(32);
    expect(a).not.toBe(b);
  });

  it('is single use and bound to its request', () => {
    const s = new TokenStore<{ id: string }>();
    const t = s.issue('attach', { id: 'c1' });
    expect(s.peek('attach', t)).toEqual({ id: 'c1' });
    expect(s.consume('attach', t)).toEqual({ id: 'c1' });
    expect(s.consume('attach', t)).toBeUndefined();
    expect(s.peek('attach', t)).toBeUndefined();
  });

  it('is bound to its kind: a token for attach does not open exec (and is not used up by trying)', () => {
    const s = new TokenStore<string>();
    const t = s.issue('attach', 'r');
    expect(s.consume('exec', t)).toBeUndefined();
    expect(s.consume('portforward', t)).toBeUndefined();
    expect(s.consume('attach', t)).toBe('r');
  });

  it('expires after the ttl', () => {
    const c = clock();
    const s = new TokenStore<string>(60_000, c.now);
    const t = s.issue('exec', 'r');
    c.advance(59_999);
    expect(s.peek('exec', t)).toBe('r');
    c.advance(1);
    expect(s.consume('exec', t)).toBeUndefined();
    expect(s.size).toBe(0);
  });

  it('sweeps expired tokens and caps how many are live', () => {
    const c = clock();
    const s = new TokenStore<number>(1000, c.now, 3);
    s.issue('exec', 1);
    c.advance(2000);
    s.sweep();
    expect(s.size).toBe(0);
    const toks = [1, 2, 3, 4].map((n) => s.issue('exec', n));
    expect(s.size).toBe(3);
    expect(s.peek('exec', toks[0]!)).toBeUndefined(); // the oldest made room
    expect(s.peek('exec', toks[3]!)).toBe(4);
  });

  it('rejects unknown tokens', () => {
    const s = new TokenStore<string>();
    expect(s.consume('exec', 'A'.repeat(43))).toBeUndefined();
  });
});
