// 64-hex ids like other runtimes', and prefix lookup the way crictl users type them.
import { randomBytes } from 'node:crypto';
import { invalidArgument } from '../errors.js';

export const newId = (): string => randomBytes(32).toString('hex');

/** Exact id, or the one id that starts with `prefix`; undefined when none; error when several. */
export function resolveId<T>(prefix: string, items: Map<string, T>, what: string): T | undefined {
  if (!prefix) return undefined;
  const exact = items.get(prefix);
  if (exact) return exact;
  let hit: T | undefined;
  let n = 0;
  for (const [id, v] of items) {
    if (id.startsWith(prefix)) {
      hit = v;
      n++;
    }
  }
  if (n > 1) throw invalidArgument(`${what} id prefix ${prefix} is ambiguous: it matches ${n} ${what}s`);
  return hit;
}
