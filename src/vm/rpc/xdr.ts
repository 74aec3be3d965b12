// XDR (RFC 4506) as libvirt's RPC uses it: big-endian, every item a multiple of 4 bytes.
// Only what the remote protocol needs. 64-bit integers are bigint so values above 2^53
// (unsigned hypers such as memory sizes in bytes, -1 sentinels) survive the round trip.

/** Malformed input to encode, or a payload that does not decode as expected. */
export class XdrError extends Error {
  override name = 'XdrError';
}

const INT_MIN = -0x8000_0000;
const INT_MAX = 0x7fff_ffff;
const UINT_MAX = 0xffff_ffff;
const HYPER_MIN = -(1n << 63n);
const HYPER_MAX = (1n << 63n) - 1n;
const UHYPER_MAX = (1n << 64n) - 1n;

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function toBigInt(v: bigint | number, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new XdrError(`${what}: ${v} is not a safe integer (pass a bigint)`);
  return BigInt(v);
}

export class XdrWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.alloc(initialSize);
  }

  /** Claims n bytes and returns their offset. It may replace this.buf: call it before reading this.buf. */
  private reserve(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len += n;
    return at;
  }

  int(v: number): this {
    if (!Number.isInteger(v) || v < INT_MIN || v > INT_MAX) throw new XdrError(`int out of range: ${v}`);
    const at = this.reserve(4);
    this.buf.writeInt32BE(v, at);
    return this;
  }

  uint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > UINT_MAX) throw new XdrError(`unsigned int out of range: ${v}`);
    const at = this.reserve(4);
    this.buf.writeUInt32BE(v, at);
    return this;
  }

  hyper(v: bigint | number): this {
    const b = toBigInt(v, 'hyper');
    if (b < HYPER_MIN || b > HYPER_MAX) throw new XdrError(`hyper out of range: ${b}`);
    const at = this.reserve(8);
    this.buf.writeBigInt64BE(b, at);
    return this;
  }

  uhyper(v: bigint | number): this {
    const b = toBigInt(v, 'unsigned hyper');
    if (b < 0n || b > UHYPER_MAX) throw new XdrError(`unsigned hyper out of range: ${b}`);
    const at = this.reserve(8);
    this.buf.writeBigUInt64BE(b, at);
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  double(v: number): this {
    const at = this.reserve(8);
    this.buf.writeDoubleBE(v, at);
    return this;
  }

  /** Fixed-length opaque: exactly `size` bytes, then zero padding to 4. */
  fixedOpaque(bytes: Uint8Array, size: number): this {
    if (bytes.length !== size) throw new XdrError(`fixed opaque needs ${size} bytes, got ${bytes.length}`);
    return this.raw(bytes);
  }

  /** Variable-length opaque: length word, bytes, zero padding to 4. */
  opaque(bytes: Uint8Array, max = UINT_MAX): this {
    if (bytes.length > max) throw new XdrError(`opaque of ${bytes.length} bytes exceeds its limit of ${max}`);
    this.uint(bytes.length);
    return this.raw(bytes);
  }

  /** UTF-8 string: byte length, bytes, zero padding (libvirt strings are C strings: no NUL). */
  string(s: string, max = UINT_MAX): this {
    const bytes = Buffer.from(s, 'utf8');
    if (bytes.includes(0)) throw new XdrError('string contains a NUL byte');
    return this.opaque(bytes, max);
  }

  /** Optional data (an XDR pointer): a bool "present", then the value when present. */
  optional<T>(v: T | null | undefined, enc: (w: this, v: T) => void): this {
    if (v === null || v === undefined) return this.bool(false);
    this.bool(true);
    enc(this, v);
    return this;
  }

  /** Variable-length array: element count, then each element. */
  array<T>(items: readonly T[], enc: (w: this, v: T) => void, max = UINT_MAX): this {
    if (items.length > max) throw new XdrError(`array of ${items.length} items exceeds its limit of ${max}`);
    this.uint(items.length);
    for (const it of items) enc(this, it);
    return this;
  }

  /** Fixed-length array: no count on the wire. */
  fixedArray<T>(items: readonly T[], size: number, enc: (w: this, v: T) => void): this {
    if (items.length !== size) throw new XdrError(`fixed array needs ${size} items, got ${items.length}`);
    for (const it of items) enc(this, it);
    return this;
  }

  private raw(bytes: Uint8Array): this {
    const p = pad4(bytes.length);
    const at = this.reserve(bytes.length + p);
    this.buf.set(bytes, at);
    this.buf.fill(0, at + bytes.length, at + bytes.length + p);
    return this;
  }

  get length(): number {
    return this.len;
  }

  /** The bytes written so far (a copy: the writer may be reused). */
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

export class XdrReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private take(n: number, what: string): number {
    if (n > this.remaining) throw new XdrError(`truncated XDR: ${what} needs ${n} bytes, ${this.remaining} left at offset ${this.pos}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int(): number {
    return this.buf.readInt32BE(this.take(4, 'int'));
  }

  uint(): number {
    return this.buf.readUInt32BE(this.take(4, 'unsigned int'));
  }

  hyper(): bigint {
    return this.buf.readBigInt64BE(this.take(8, 'hyper'));
  }

  uhyper(): bigint {
    return this.buf.readBigUInt64BE(this.take(8, 'unsigned hyper'));
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`bool must be 0 or 1, got ${v}`);
    return v === 1;
  }

  double(): number {
    return this.buf.readDoubleBE(this.take(8, 'double'));
  }

  fixedOpaque(size: number): Buffer {
    const at = this.take(size + pad4(size), `opaque[${size}]`);
    return Buffer.from(this.buf.subarray(at, at + size));
  }

  opaque(max = UINT_MAX): Buffer {
    const n = this.uint();
    if (n > max) throw new XdrError(`opaque of ${n} bytes exceeds its limit of ${max}`);
    return this.fixedOpaque(n);
  }

  string(max = UINT_MAX): string {
    return this.opaque(max).toString('utf8');
  }

  optional<T>(dec: (r: this) => T): T | null {
    return this.bool() ? dec(this) : null;
  }

  array<T>(dec: (r: this) => T, max = UINT_MAX): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`array of ${n} items exceeds its limit of ${max}`);
    // Each element takes at least 4 bytes: refuse counts the payload cannot hold before allocating.
    if (n > this.remaining / 4) throw new XdrError(`array claims ${n} items but only ${this.remaining} bytes are left`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(dec(this));
    return out;
  }

  fixedArray<T>(size: number, dec: (r: this) => T): T[] {
    const out: T[] = [];
    for (let i = 0; i < size; i++) out.push(dec(this));
    return out;
  }

  /** Fails when bytes are left over: a reply longer than its struct means the layouts disagree. */
  end(what = 'payload'): void {
    if (this.remaining !== 0) throw new XdrError(`${this.remaining} unexpected trailing bytes after ${what}`);
  }
}
