// Property-based request generation for the CRI fuzz test, from the proto itself: every field of
// every request message gets random and boundary values (empty, huge, negative, path traversal,
// NUL, non-UTF-8-looking text, …), maps get vmlet's own annotation keys with random values. Seeded
// (mulberry32), so a failure is replayed with FUZZ_SEED. fast-check would do the shrinking too; the
// npm registry was unreachable when this was written, and a seed plus the printed request is
// enough to reproduce a finding.
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { LOADER_OPTIONS, PROTO_PATH } from '../../src/grpc/cri-proto.js';
import { ANNOTATIONS, VIRTLET_ALIASES, POD_KIND_ANNOTATION } from '../../src/vm/annotations.js';

interface FieldDescriptor {
  name: string;
  label: 'LABEL_OPTIONAL' | 'LABEL_REPEATED' | 'LABEL_REQUIRED';
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: Array<MessageDescriptor & { options: { mapEntry?: boolean } | null }>;
}

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** mulberry32: [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const ANNOTATION_KEYS = [...Object.values(ANNOTATIONS), ...Object.values(VIRTLET_ALIASES), POD_KIND_ANNOTATION, 'vmlet.io/unknown', 'io.kubernetes.cri.sandbox-id'];
const STRINGS = [
  '', ' ', '0', '-1', 'a', 'vmlet', 'true', 'null', '..', '../../../../etc/passwd', '/etc/shadow', '/', '//', '/proc/self/root',
  'a/b', 'a\0b', '\n', 'x'.repeat(256), 'é', '\u202e', '%s%n', '${HOME}', '$(reboot)', '`id`', ';rm -rf /', '*', 'a:b:c',
  '1Gi', '-1Gi', '0Mi', '99999999999Ti', '1e308', 'NaN', '16', '257', '0x10', 'host-passthrough', 'sandboxed', 'vm', 'auto',
  'tcp', 'unix:///x', '127.0.0.1', '::1', '255.255.255.255', '10.0.0.1/33', 'fe80::1%eth0', 'sha256:' + '0'.repeat(64),
];
const INT64 = ['0', '1', '-1', '2', '100000', '-100000', '2147483647', '2147483648', '4294967296', '9223372036854775807', '-9223372036854775808'];
const INT32 = [0, 1, -1, 2, 65535, 65536, 2147483647, -2147483648];
const UINT32 = [0, 1, 2, 65535, 65536, 2147483647, 4294967295];

export class RequestGen {
  readonly def: PackageDefinition;
  constructor(readonly rng: Rng) {
    this.def = loadSync(PROTO_PATH, LOADER_OPTIONS);
  }

  string(): string {
    const r = this.rng;
    if (r.chance(0.6)) return r.pick(STRINGS);
    const len = r.chance(0.05) ? 4096 + r.int(60_000) : r.int(80);
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(r.chance(0.9) ? 32 + r.int(95) : r.int(0x3000));
    return s;
  }

  private scalar(type: string, enumName: string): unknown {
    const r = this.rng;
    switch (type) {
      case 'TYPE_STRING':
        return this.string();
      case 'TYPE_BYTES':
        return Buffer.from(Array.from({ length: r.int(64) }, () => r.int(256)));
      case 'TYPE_BOOL':
        return r.chance(0.5);
      case 'TYPE_INT64':
      case 'TYPE_SINT64':
      case 'TYPE_SFIXED64':
        return r.chance(0.7) ? r.pick(INT64) : String(r.int(2 ** 31) - 2 ** 30);
      case 'TYPE_UINT64':
      case 'TYPE_FIXED64':
        return r.pick(INT64.filter((x) => !x.startsWith('-')));
      case 'TYPE_INT32':
      case 'TYPE_SINT32':
      case 'TYPE_SFIXED32':
        return r.pick(INT32);
      case 'TYPE_UINT32':
      case 'TYPE_FIXED32':
        return r.pick(UINT32);
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return r.pick([0, -1, 1.5, 1e308, -1e-308]);
      case 'TYPE_ENUM': {
        const e = this.def[`runtime.v1.${enumName}`] as { type: { value: Array<{ name: string; number: number }> } } | undefined;
        const values = e?.type.value ?? [];
        return r.chance(0.9) && values.length ? r.pick(values).name : 7 + r.int(100); // an unknown number too
      }
      default:
        return undefined;
    }
  }

  private descriptor(typeName: string): MessageDescriptor {
    const t = this.def[`runtime.v1.${typeName}`] as { type: unknown } | undefined;
    if (!t) throw new Error(`no message type runtime.v1.${typeName} in the CRI proto`);
    return t.type as MessageDescriptor;
  }

  /** A random message of `typeName` (e.g. 'RunPodSandboxRequest'). */
  message(typeName: string, depth = 0): Record<string, unknown> {
    return this.messageOf(this.descriptor(typeName), depth);
  }

  private messageOf(d: MessageDescriptor, depth: number): Record<string, unknown> {
    const r = this.rng;
    const out: Record<string, unknown> = {};
    for (const f of d.field) {
      if (r.chance(depth > 3 ? 0.85 : 0.4)) continue;
      const map = f.label === 'LABEL_REPEATED' && f.type === 'TYPE_MESSAGE' ? d.nestedType.find((n) => n.name === f.typeName && n.options?.mapEntry) : undefined;
      if (map) {
        const entries: Record<string, unknown> = {};
        const valueField = map.field.find((x) => x.name === 'value')!;
        for (let i = r.int(5); i > 0; i--) {
          const key = r.chance(0.6) ? r.pick(ANNOTATION_KEYS) : this.string();
          entries[key] = valueField.type === 'TYPE_MESSAGE' ? this.message(valueField.typeName, depth + 1) : this.scalar(valueField.type, valueField.typeName);
        }
        out[f.name] = entries;
        continue;
      }
      const one = () => (f.type === 'TYPE_MESSAGE' ? (depth > 5 ? {} : this.message(f.typeName, depth + 1)) : this.scalar(f.type, f.typeName));
      out[f.name] = f.label === 'LABEL_REPEATED' ? Array.from({ length: r.int(4) }, one) : one();
    }
    return out;
  }
}

/**
 * Image references that reach no registry: malformed ones, and loopback port 9 (discard; nothing
 * listens). The fuzz test puts them wherever the generator wrote an ImageSpec, so no request sends
 * traffic off this machine.
 */
export const SAFE_IMAGES = ['', 'UPPER/case', '::', '../x', 'a@sha256:zz', 'x'.repeat(300), '127.0.0.1:9/fuzz/none:1', '127.0.0.1:9/fuzz/none@sha256:' + 'a'.repeat(64), 'sha256:' + 'b'.repeat(64)];

/** Replaces every ImageSpec's image (and any `image` string) in `v` by a safe reference. */
export function safeImages(v: unknown, rng: Rng): void {
  if (Array.isArray(v)) {
    for (const x of v) safeImages(x, rng);
    return;
  }
  if (!v || typeof v !== 'object' || Buffer.isBuffer(v)) return;
  const o = v as Record<string, unknown>;
  for (const [k, x] of Object.entries(o)) {
    if (k === 'image' && typeof x === 'string') o[k] = rng.pick(SAFE_IMAGES);
    else if (k === 'image' && x && typeof x === 'object' && !Array.isArray(x)) (x as Record<string, unknown>).image = rng.pick(SAFE_IMAGES);
    else safeImages(x, rng);
  }
}
