import { describe, expect, it } from 'vitest';
import { formatCpuList, hostShares, hostTopology, parseCpuList, parseCpuTune } from '../../src/vm/cputune.js';
import { invalidArgumentFrom as rejection } from '../helpers/errors.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/vmlet.js';

const host = { cpus: 8, numaNodes: 2 };

describe('cpu lists', () => {
  it('parse the kernel format, sorted and without duplicates', () => {
    expect(parseCpuList('0-3,6', 'f', 8)).toEqual([0, 1, 2, 3, 6]);
    expect(parseCpuList(' 5,1-2,2 ', 'f', 8)).toEqual([1, 2, 5]);
  });
  it('reject junk, reversed ranges and CPUs the host lacks, naming the field', () => {
    expect(rejection(() => parseCpuList('0-', 'linux.cpuset_cpus', 8)).message).toBe('linux.cpuset_cpus="0-" is invalid: allowed a list like "0-3,6" of numbers 0–7');
    expect(rejection(() => parseCpuList('3-1', 'x', 8)).message).toMatch(/^x="3-1" is invalid/);
    expect(rejection(() => parseCpuList('8', 'x', 8)).message).toMatch(/\(this node has 8\)$/);
  });
  it('format back to ranges', () => {
    expect(formatCpuList([6, 0, 1, 2, 3])).toBe('0-3,6');
    expect(formatCpuList([1, 3, 5])).toBe('1,3,5');
    expect(formatCpuList([4])).toBe('4');
  });
  it('read the host topology from sysfs, with one node when NUMA is not shown', () => {
    const sys = tempDir('vmlet-sys-');
    mkdirSync(join(sys, 'cpu'));
    writeFileSync(join(sys, 'cpu', 'online'), '0-5,7\n');
    expect(hostTopology(sys)).toEqual({ cpus: 8, numaNodes: 1 });
  });
});

describe('parseCpuTune', () => {
  it('maps shares, quota/period, cpuset and mems', () => {
    expect(parseCpuTune({ cpu_shares: '512', cpu_quota: '50000', cpu_period: '100000', cpuset_cpus: '0-1', cpuset_mems: '1' }, 'linux', host)).toEqual({
      shares: 512, quotaUs: 50_000, periodUs: 100_000, cpuset: [0, 1], memNodes: [1],
    });
  });
  it('treats 0 and -1 as unset (no limit) and defaults the period', () => {
    expect(parseCpuTune({ cpu_shares: '0', cpu_quota: '-1', cpu_period: '0', cpuset_cpus: '' }, 'linux', host)).toEqual({});
    expect(parseCpuTune({ cpu_quota: 20000 }, 'linux', host)).toEqual({ quotaUs: 20_000, periodUs: 100_000 });
    expect(parseCpuTune(null, 'linux', host)).toEqual({});
  });
  it('rejects values libvirt or the kernel would refuse, naming the field', () => {
    expect(rejection(() => parseCpuTune({ cpu_shares: '1' }, 'linux', host)).message).toBe('linux.cpu_shares=1 is invalid: allowed 2–262144 (0 = unset)');
    expect(rejection(() => parseCpuTune({ cpu_quota: '999' }, 'linux', host)).message).toMatch(/^linux\.cpu_quota=999 is invalid: allowed 1000–/);
    expect(rejection(() => parseCpuTune({ cpu_period: '2000000' }, 'linux', host)).message).toMatch(/^linux\.cpu_period=2000000 is invalid: allowed 1000–1000000 µs/);
    expect(rejection(() => parseCpuTune({ cpuset_mems: '2' }, 'linux', host)).message).toMatch(/^linux\.cpuset_mems="2" is invalid: .*\(this node has 2\)$/);
  });
});

describe('hostShares', () => {
  it('keeps cgroup v1 shares and converts to cpu.weight on v2 as runc does', () => {
    expect(hostShares(1024, false)).toBe(1024);
    expect(hostShares(2, true)).toBe(1);
    expect(hostShares(262144, true)).toBe(10000);
    expect(hostShares(1024, true)).toBe(39);
  });
});
