// Kubernetes resource quantities (resource.Quantity) as byte counts. Exact arithmetic in BigInt,
// so '1.1Gi' or '1e9' never suffer float rounding; fractions of a byte round up, as
// Quantity.Value() does. The milli suffix 'm' is valid Kubernetes but never a sensible byte size
// ('512m' is half a kilobyte's worth of millibytes), so it is rejected with a hint instead.

export class QuantityError extends Error {
  override name = 'QuantityError';
}

const BINARY: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL: Record<string, number> = { '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

export const QUANTITY_HELP = 'a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent like 1e9';

// sign, digits with an optional fraction (either side may be empty, not both), then a suffix.
const QUANTITY = /^([+-]?)(\d*)(?:\.(\d*))?(?:([eE])([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?)$/;

/** Parses a Kubernetes quantity to a whole number of bytes (rounded up). Throws QuantityError. */
export function parseQuantityBytes(text: string): number {
  const m = QUANTITY.exec(text);
  const [, sign = '', int = '', frac = '', expMark, exp, suffix = ''] = m ?? [];
  if (!m || (int === '' && frac === '')) {
    throw new QuantityError(`"${text}" is not a Kubernetes quantity: expected ${QUANTITY_HELP}`);
  }
  if (suffix === 'm') throw new QuantityError(`"${text}" is in millibytes (suffix m); for mebibytes write Mi`);
  if (sign === '-' && /[1-9]/.test(int + frac)) throw new QuantityError(`"${text}" is negative; a size must be 0 or more`);
  if (exp !== undefined && exp.replace(/^[+-]/, '').length > 4) throw new QuantityError(`"${text}" has an exponent out of range`);

  // value = digits / 10^frac.length × multiplier, kept as numerator/denominator.
  let num = BigInt((int + frac).replace(/^0+(?=\d)/, '') || '0');
  let den = 10n ** BigInt(frac.length);
  if (expMark) {
    const e = Number(exp);
    if (e >= 0) num *= 10n ** BigInt(e);
    else den *= 10n ** BigInt(-e);
  } else if (suffix in BINARY) {
    num *= BINARY[suffix]!;
  } else {
    num *= 10n ** BigInt(DECIMAL[suffix]!);
  }
  const bytes = (num + den - 1n) / den;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new QuantityError(`"${text}" is too large`);
  return Number(bytes);
}

/** Short human form for messages: 536870912 → '512Mi'; exact binary units only, else bytes. */
export function formatBytes(bytes: number): string {
  for (const [suffix, mult] of Object.entries(BINARY).reverse()) {
    const m = Number(mult);
    if (bytes >= m && bytes % m === 0) return `${bytes / m}${suffix}`;
  }
  return String(bytes);
}
