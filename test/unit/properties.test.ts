// Property-based tests (fast-check, with shrinking: a failure is cut down to its smallest input
// and replayed with the seed it prints) of the pure parsers every CreateContainer and
// RunPodSandbox goes through: any annotation value is either taken or refused with
// INVALID_ARGUMENT naming its annotation, never another error; any size string is a whole
// number of bytes or a QuantityError; any pod name gives a libvirt-safe domain name of at most
// 80 bytes that keeps the ids. The RPC-level fuzz on a real socket is cri-fuzz.test.ts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ANNOTATIONS, NODE_DEFAULTS, parseVmSettings, VIRTLET_ALIASES } from '../../src/vm/annotations.js';
import { parseQuantityBytes, QuantityError } from '../../src/vm/quantity.js';
import { domainName } from '../../src/vm/spec.js';
import { VmletError } from '../../src/errors.js';

const RUNS = { numRuns: 2000 };

/** Values as people and fuzzers write them: numbers, sizes, words, and any string. */
const value = fc.oneof(
  fc.string(),
  fc.integer({ min: -1_000_000, max: 1_000_000_000 }).map(String),
  fc.tuple(fc.nat(100_000), fc.constantFrom('', 'Ki', 'Mi', 'Gi', 'Ti', 'k', 'M', 'G', 'm', 'e3', 'Xi')).map(([n, s]) => `${n}${s}`),
  fc.constantFrom('true', 'false', 'q35', 'pc', 'microvm', 'uefi', 'bios', 'virtio', 'scsi', 'sata', 'host-passthrough', '2Mi', '1Gi', ''),
);

describe('properties (fast-check)', () => {
  it('an annotation value is taken or refused with INVALID_ARGUMENT naming the annotation, never anything else', () => {
    const keys = [...Object.values(ANNOTATIONS), ...Object.values(VIRTLET_ALIASES)];
    fc.assert(
      fc.property(fc.constantFrom(...keys), value, fc.boolean(), (key, v, onPod) => {
        const annotations = { [key]: v };
        try {
          parseVmSettings({ sandboxAnnotations: onPod ? annotations : {}, containerAnnotations: onPod ? {} : annotations, defaults: NODE_DEFAULTS });
        } catch (err) {
          expect(err).toBeInstanceOf(VmletError);
          expect((err as VmletError).kind).toBe('invalid-argument');
          expect((err as Error).message).toContain(key);
        }
      }),
      RUNS,
    );
  });

  it('any container limits with any annotations are taken or refused with INVALID_ARGUMENT, never anything else', () => {
    const keys = [...Object.values(ANNOTATIONS), ...Object.values(VIRTLET_ALIASES)];
    const limits = fc.record(
      {
        memory_limit_in_bytes: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String), fc.nat().map(String)),
        cpu_quota: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String), fc.integer({ min: -1, max: 10_000_000 }).map(String)),
        cpu_period: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String), fc.integer({ min: 0, max: 1_000_000 }).map(String)),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 4 }), limits, fc.option(limits, { nil: null }), (annotations, container, sandbox) => {
        try {
          parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: annotations, containerResources: container, sandboxResources: sandbox, defaults: NODE_DEFAULTS });
        } catch (err) {
          expect(err).toBeInstanceOf(VmletError);
          expect((err as VmletError).kind).toBe('invalid-argument');
        }
      }),
      RUNS,
    );
  });

  it('a size is a whole, safe, non-negative number of bytes, or a QuantityError; n<suffix> is n times the unit', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), value), (text) => {
        try {
          const n = parseQuantityBytes(text);
          expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(QuantityError);
        }
      }),
      RUNS,
    );
    const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1000, M: 1e6, G: 1e9 } as const;
    fc.assert(
      fc.property(fc.nat(1_000_000), fc.constantFrom(...(Object.keys(unit) as Array<keyof typeof unit>)), (n, s) => {
        expect(parseQuantityBytes(`${n}${s}`)).toBe(n * unit[s]);
      }),
      RUNS,
    );
  });

  it('any pod name and namespace give a libvirt-safe domain name of at most 80 bytes that keeps both ids', () => {
    const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 });
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), hex, fc.option(hex, { nil: undefined }), (pod, ns, sid, cid) => {
        const name = domainName(pod, ns, sid, cid);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(80);
        expect(name).toMatch(/^vmlet-[A-Za-z0-9_.-]+$/);
        expect(name.endsWith(sid.slice(0, 8) + (cid ? `-${cid.slice(0, 8)}` : ''))).toBe(true);
      }),
      RUNS,
    );
  });
});
