// Single-use, short-lived tokens for streaming URLs. A token is 32 random bytes (base64url),
// bound to one kind of stream and to the request it was issued for; it is consumed the first
// time a client upgrades with it and is worthless after `ttlMs` either way.
import { randomBytes } from 'node:crypto';

export type StreamKind = 'exec' | 'attach' | 'portforward';

export const TOKEN_TTL_MS = 60_000;
/** Upper bound on live tokens, so a caller looping on Exec cannot grow memory without end. */
export const MAX_TOKENS = 10_000;

interface Entry<T> {
  kind: StreamKind;
  request: T;
  expiresAt: number;
}

export class TokenStore<T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(
    private readonly ttlMs = TOKEN_TTL_MS,
    private readonly now: () => number = Date.now,
    private readonly maxTokens = MAX_TOKENS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  issue(kind: StreamKind, request: T): string {
    this.sweep();
    if (this.entries.size >= this.maxTokens) {
      // Drop the oldest (Map keeps insertion order); it would expire first anyway.
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    const token = randomBytes(32).toString('base64url');
    this.entries.set(token, { kind, request, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** The request a live token of this kind was issued for, without using the token up. */
  peek(kind: StreamKind, token: string): T | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    if (e.expiresAt <= this.now()) {
      this.entries.delete(token);
      return undefined;
    }
    return e.kind === kind ? e.request : undefined;
  }

  /** Like peek, and the token is gone afterwards: a second use finds nothing. */
  consume(kind: StreamKind, token: string): T | undefined {
    const req = this.peek(kind, token);
    if (req !== undefined) this.entries.delete(token);
    return req;
  }

  /** Forgets expired tokens. */
  sweep(): void {
    const t = this.now();
    for (const [k, e] of this.entries) if (e.expiresAt <= t) this.entries.delete(k);
  }

  clear(): void {
    this.entries.clear();
  }
}
