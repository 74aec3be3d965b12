// fast-check arbitraries for CRI requests, built from the proto itself: every field of every
// request message is absent or gets a random or boundary value (empty, huge, negative, int64
// extremes, path traversal, NUL, any code point, unknown enum numbers), maps get vmlet's own
// annotation keys with random values. fast-check's shrinking cuts a failing request down (fields
// dropped, strings and arrays shortened) before it is reported, with the seed that replays it.
import fc from 'fast-check';
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

export type Message = Record<string, unknown>;

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

/**
 * Image references that reach no registry: malformed ones, and loopback port 9 (discard; nothing
 * listens). Every string field named `image` (ImageSpec's, and any other) takes one of these, so
 * no request sends traffic off this machine.
 */
export const SAFE_IMAGES = ['', 'UPPER/case', '::', '../x', 'a@sha256:zz', 'x'.repeat(300), '127.0.0.1:9/fuzz/none:1', '127.0.0.1:9/fuzz/none@sha256:' + 'a'.repeat(64), 'sha256:' + 'b'.repeat(64)];

/** Mostly the listed edge cases, then short text of any code point, one in 58 of 4-60 KB. */
export const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 36, arbitrary: fc.constantFrom(...STRINGS) },
  { weight: 21, arbitrary: fc.string({ unit: 'binary', maxLength: 80, size: 'max' }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 4096, max: 60_000 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 16 }))
      .map(([n, s]) => s.repeat(Math.ceil(n / s.length)).slice(0, n)),
  },
);

const int64 = fc.oneof({ weight: 7, arbitrary: fc.constantFrom(...INT64) }, { weight: 3, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String) });
const uint64 = fc.oneof({ weight: 7, arbitrary: fc.constantFrom(...INT64.filter((x) => !x.startsWith('-'))) }, { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String) });
const int32 = fc.oneof(fc.constantFrom(...INT32), fc.integer());
const uint32 = fc.oneof(fc.constantFrom(...UINT32), fc.integer({ min: 0, max: 0xffffffff }));

export class RequestArbs {
  readonly def: PackageDefinition;
  private readonly memo = new Map<string, fc.Arbitrary<Message>>();

  constructor() {
    this.def = loadSync(PROTO_PATH, LOADER_OPTIONS);
  }

  /** Any message of `typeName` (e.g. 'RunPodSandboxRequest'), every field optional. */
  request(typeName: string): fc.Arbitrary<Message> {
    return this.message(typeName, 0);
  }

  private descriptor(typeName: string): MessageDescriptor {
    const t = this.def[`runtime.v1.${typeName}`] as { type: unknown } | undefined;
    if (!t) throw new Error(`no message type runtime.v1.${typeName} in the CRI proto`);
    return t.type as MessageDescriptor;
  }

  // Memoized per type and depth; below depth 5 a nested message is empty, so recursive types end.
  private message(typeName: string, depth: number): fc.Arbitrary<Message> {
    if (depth > 5) return fc.constant({});
    const key = `${typeName}@${depth}`;
    let arb = this.memo.get(key);
    if (!arb) {
      arb = this.messageOf(this.descriptor(typeName), depth);
      this.memo.set(key, arb);
    }
    return arb;
  }

  private messageOf(d: MessageDescriptor, depth: number): fc.Arbitrary<Message> {
    const model: Record<string, fc.Arbitrary<unknown>> = {};
    for (const f of d.field) {
      const map = f.label === 'LABEL_REPEATED' && f.type === 'TYPE_MESSAGE' ? d.nestedType.find((n) => n.name === f.typeName && n.options?.mapEntry) : undefined;
      if (map) {
        const valueField = map.field.find((x) => x.name === 'value')!;
        const key = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...ANNOTATION_KEYS) }, { weight: 4, arbitrary: text });
        model[f.name] = fc.dictionary(key, this.field(valueField, depth + 1), { maxKeys: 5, size: 'max' });
        continue;
      }
      const one = this.field(f, depth + 1);
      model[f.name] = f.label === 'LABEL_REPEATED' ? fc.array(one, { maxLength: 3, size: 'max' }) : one;
    }
    return fc.record(model, { requiredKeys: [] });
  }

  private field(f: FieldDescriptor, depth: number): fc.Arbitrary<unknown> {
    if (f.name === 'image' && f.type === 'TYPE_STRING') return fc.constantFrom(...SAFE_IMAGES);
    switch (f.type) {
      case 'TYPE_MESSAGE':
        return this.message(f.typeName, depth);
      case 'TYPE_STRING':
        return text;
      case 'TYPE_BYTES':
        return fc.uint8Array({ maxLength: 64, size: 'max' }).map((b) => Buffer.from(b));
      case 'TYPE_BOOL':
        return fc.boolean();
      case 'TYPE_INT64':
      case 'TYPE_SINT64':
      case 'TYPE_SFIXED64':
        return int64;
      case 'TYPE_UINT64':
      case 'TYPE_FIXED64':
        return uint64;
      case 'TYPE_INT32':
      case 'TYPE_SINT32':
      case 'TYPE_SFIXED32':
        return int32;
      case 'TYPE_UINT32':
      case 'TYPE_FIXED32':
        return uint32;
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return fc.oneof(fc.constantFrom(0, -1, 1.5, 1e308, -1e-308), fc.double());
      case 'TYPE_ENUM': {
        const e = this.def[`runtime.v1.${f.typeName}`] as { type: { value: Array<{ name: string; number: number }> } } | undefined;
        const names = (e?.type.value ?? []).map((x) => x.name);
        const unknown = fc.integer({ min: 7, max: 106 }); // a number the proto does not name
        return names.length ? fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: unknown }) : unknown;
      }
      default:
        throw new Error(`field ${f.name}: no arbitrary for ${f.type}`);
    }
  }
}
