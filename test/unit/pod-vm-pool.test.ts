// Which pods may take a warm-pool VM (pod/podvm-pool.ts): the same machine but for vCPUs and
// guest RAM, which grow or shrink live within the pool VM's maxima; and config podVmPool.
import { describe, expect, it } from 'vitest';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { sizePodVm } from '../../src/pod/podvm-boot.js';
import { poolVmSettings } from '../../src/pod/podvm-pool.js';
import { fitsPoolVm, podVmKey } from '../../src/pod/pool-vm.js';
import { ConfigError, defaults, validate } from '../../src/config.js';

const MiB = 2 ** 20;
const pod = (annotations: Record<string, string>, memoryBytes = 0, cpuQuota = 0) =>
  sizePodVm(parseVmSettings({
    sandboxAnnotations: annotations,
    containerAnnotations: {},
    imageLabels: {},
    containerResources: null,
    sandboxResources: memoryBytes || cpuQuota ? { memory_limit_in_bytes: String(memoryBytes), cpu_quota: String(cpuQuota), cpu_period: '100000' } : null,
    defaults: NODE_DEFAULTS,
  }));
const poolVm = (maxMemoryMiB = 2048) => {
  const settings = poolVmSettings({ size: 1, maxMemoryMiB });
  return { settings, key: podVmKey(settings) };
};

describe('warm pool: which pods fit a pool VM', () => {
  it('a pool VM is a default pod VM that can grow to the configured RAM', () => {
    const s = poolVmSettings({ size: 1, maxMemoryMiB: 2048 });
    expect(s).toMatchObject({ vcpus: 1, memoryMiB: NODE_DEFAULTS.memoryMiB, maxMemoryMiB: 2048 });
    expect(podVmKey(s)).toBe(podVmKey(pod({})));
  });
  it('takes pods with no annotations, and pods whose resources fit its maxima', () => {
    expect(fitsPoolVm(poolVm(), pod({}))).toBe(true);
    expect(fitsPoolVm(poolVm(), pod({}, 512 * MiB, 200_000))).toBe(true); // 768 MiB, 2 vCPUs (on a host with ≥ 2)
    expect(fitsPoolVm(poolVm(1024), pod({}, 1024 * MiB))).toBe(false); // 1280 MiB > 1024
    expect(fitsPoolVm(poolVm(2048), pod({}, 1024 * MiB))).toBe(true);
  });
  it('refuses pods whose VM is another machine: disk size, kernel args, io threads, max vCPUs', () => {
    for (const a of <Array<Record<string, string>>>[
      { 'vmlet.io/root-disk-size': '20Gi' },
      { 'vmlet.io/kernel-args': 'quiet' },
      { 'vmlet.io/io-threads': '2' },
      { 'vmlet.io/max-vcpus': '1' },
    ]) {
      expect(fitsPoolVm(poolVm(), pod(a)), JSON.stringify(a)).toBe(false);
    }
  });
  it('the key ignores where settings came from and what changes live', () => {
    const a = pod({});
    const b = { ...a, vcpus: 2, memoryMiB: 900, maxMemoryMiB: 900, sources: { memory: 'elsewhere' } };
    expect(podVmKey(a)).toBe(podVmKey(b));
  });
});

describe('config podVmPool', () => {
  const base = { ...defaults } as Record<string, unknown>;
  it('is off by default', () => {
    expect(validate(base).podVmPool).toEqual({ size: 0, maxMemoryMiB: 2048 });
  });
  it('takes a size and a maximum, as numbers or digit strings (env)', () => {
    expect(validate({ ...base, podVmPool: { size: '2', maxMemoryMiB: '4096' } }).podVmPool).toEqual({ size: 2, maxMemoryMiB: 4096 });
  });
  it('refuses what is not a pool, naming the key', () => {
    expect(() => validate({ ...base, podVmPool: { size: 65 } })).toThrow(/podVmPool\.size.*0 \(off\) to 64/);
    expect(() => validate({ ...base, podVmPool: { size: -1 } })).toThrow(ConfigError);
    expect(() => validate({ ...base, podVmPool: { maxMemoryMiB: 100 } })).toThrow(/podVmPool\.maxMemoryMiB.*at least 512/);
    expect(() => validate({ ...base, podVmPool: { sise: 1 } })).toThrow(/unknown key "sise"/);
    expect(() => validate({ ...base, podVmPool: 3 })).toThrow(/must be a mapping/);
  });
});
