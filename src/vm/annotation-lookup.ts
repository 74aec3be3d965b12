// The one precedence rule for pod and container annotations, and the shape of a rejection. Every
// setting has one vmlet.io/ name and maybe Virtlet's names for it (aliases). Its value comes from
//   the container's annotations, else the pod's (scope first: the container is the more specific
//   request), and within that one set from the vmlet.io/ name, else the first alias present.
// The losing annotations are not read at all, so a bad value that loses is not an error.
// A rejection is InvalidArgument naming the annotation as the user wrote it and what is allowed.
import { invalidArgument } from '../errors.js';
import { parseQuantityBytes, QuantityError } from './quantity.js';

export const PREFIX = 'vmlet.io/';

/** The two sets of annotations a VM's settings come from; the container's first. */
export interface AnnotationSets {
  container: Record<string, string>;
  pod: Record<string, string>;
}

/** One annotation as found: its value, its name and the scope that supplied it. */
export interface Found {
  key: string;
  value: string;
  /** 'container annotation vmlet.io/vcpus', 'pod annotation VirtletVCPUCount', … */
  source: string;
}

/** The set that decides a setting: the first scope holding any of its names, or undefined. */
export function winningSet(sets: AnnotationSets, names: readonly string[]): { scope: string; annotations: Record<string, string> } | undefined {
  const scopes: Array<[string, Record<string, string>]> = [
    ['container annotation', sets.container],
    ['pod annotation', sets.pod],
  ];
  for (const [scope, annotations] of scopes) {
    if (names.some((n) => annotations[n] !== undefined)) return { scope, annotations };
  }
  return undefined;
}

/** A setting's annotation under the one rule: names are [the vmlet.io/ name, …aliases]. */
export function findAnnotation(sets: AnnotationSets, names: readonly string[]): Found | undefined {
  const set = winningSet(sets, names);
  if (!set) return undefined;
  const key = names.find((n) => set.annotations[n] !== undefined)!;
  return { key, value: set.annotations[key]!, source: `${set.scope} ${key}` };
}

/** Every vmlet.io/ key in either set must be one vmlet knows: a typo is refused, not ignored. */
export function checkUnknown(sets: AnnotationSets, known: readonly string[]): void {
  const names = new Set(known);
  for (const [where, annotations] of [['pod', sets.pod], ['container', sets.container]] as const) {
    for (const key of Object.keys(annotations)) {
      if (key.startsWith(PREFIX) && !names.has(key)) {
        throw invalidArgument(`unknown ${where} annotation ${key}: known vmlet.io annotations are ${[...names].sort().join(', ')}`);
      }
    }
  }
}

export const bad = (f: Found, allowed: string) => invalidArgument(`annotation ${f.key}=${JSON.stringify(f.value)} is invalid: allowed ${allowed}`);

export function oneOf<T extends string>(f: Found, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(f.value)) return f.value as T;
  throw bad(f, allowed.join(' | '));
}

export function intIn(f: Found, min: number, max: number): number {
  const n = /^\d{1,6}$/.test(f.value) ? Number(f.value) : NaN;
  if (!(n >= min && n <= max)) throw bad(f, `an integer ${min}–${max}`);
  return n;
}

export function bytesOf(f: Found, allowed: string): number {
  try {
    return parseQuantityBytes(f.value);
  } catch (err) {
    if (err instanceof QuantityError) throw bad(f, `${allowed} (${err.message})`);
    throw err;
  }
}
