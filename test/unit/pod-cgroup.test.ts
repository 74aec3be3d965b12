// The pod cgroup's pure parts: cgroup_parent → path for both drivers (and refusals naming the
// field), the host layout from mountinfo, which directories a pod's process joins, libvirt's leaf name.
import { describe, expect, it } from 'vitest';
import { expandSlice, joinDirs, libvirtLeafName, parseMountinfo, podCgroupPath, resolveCgroupDriver } from '../../src/vm/pod-cgroup.js';
import { VmletError } from '../../src/errors.js';
import { TCG_TB_CACHE_MIB } from '../../src/vm/spec.js';
import { xml } from './domain-spec-fixtures.js';

const refusal = (f: () => unknown): VmletError => {
  try {
    f();
  } catch (err) {
    return err as VmletError;
  }
  throw new Error('expected a refusal');
};

// A hybrid host like this one (v1 controllers, cgroup2 on /sys/fs/cgroup/unified) and a v2 host.
const HYBRID = [
  '30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
  '31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate',
  '33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct',
  '34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory',
  '35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids',
  '36 30 0:32 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset',
  '37 30 0:33 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio',
  '38 30 0:34 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
].join('\n');
const V2 = '28 22 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot';

describe('cgroup_parent → the pod cgroup', () => {
  it('expands a systemd slice as runc does', () => {
    expect(expandSlice('kubepods-burstable-pod1234_5678.slice')).toBe('/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice');
    expect(expandSlice('kubepods.slice')).toBe('/kubepods.slice');
    expect(expandSlice('-.slice')).toBe('/');
    for (const bad of ['kubepods', 'a--b.slice', '-a.slice', 'a-.slice', 'a/b.slice']) {
      expect(refusal(() => expandSlice(bad)).message).toMatch(/^linux\.cgroup_parent .* is not a systemd slice name/);
    }
  });

  it('takes a cgroupfs path below the root, leading slash or not; empty is no pod cgroup', () => {
    expect(podCgroupPath('/kubepods/burstable/pod1', 'cgroupfs')).toBe('/kubepods/burstable/pod1');
    expect(podCgroupPath('kubepods/pod1/', 'cgroupfs')).toBe('/kubepods/pod1');
    expect(podCgroupPath('', 'cgroupfs')).toBeUndefined();
    // A directory name past 255 bytes (mkdir's ENAMETOOLONG), refused naming the field (found by the CRI fuzz).
    expect(() => podCgroupPath(`/kubepods/${' '.repeat(300)}`, 'cgroupfs')).toThrow(/cgroup_parent .* has a path component of 300 bytes: each is at most 255/);
    expect(() => podCgroupPath(`kubepods-${'a'.repeat(300)}.slice`, 'systemd')).toThrow(/path component of 3\d\d bytes/);
    expect(podCgroupPath(undefined, 'systemd')).toBeUndefined();
    expect(podCgroupPath('kubepods-pod1.slice', 'systemd')).toBe('/kubepods.slice/kubepods-pod1.slice');
  });

  it('refuses what would leave the hierarchy or does not match the driver, naming the field', () => {
    for (const [parent, driver, why] of [
      ['/kubepods/../x', 'cgroupfs', /\.\. component/],
      ['/', 'cgroupfs', /cgroup root/],
      ['kubepods-pod1.slice', 'cgroupfs', /set cgroupDriver: systemd/],
      ['/kubepods/pod1', 'systemd', /not a systemd slice name/],
      ['/a\nb', 'cgroupfs', /control characters/],
    ] as const) {
      const e = refusal(() => podCgroupPath(parent, driver));
      expect(e.kind).toBe('invalid-argument');
      expect(e.message).toMatch(/^linux\.cgroup_parent /);
      expect(e.message).toMatch(why);
    }
  });

  it('resolves auto as the kubelet would: systemd when it is PID 1', () => {
    expect(resolveCgroupDriver('auto', () => true)).toBe('systemd');
    expect(resolveCgroupDriver('auto', () => false)).toBe('cgroupfs');
    expect(resolveCgroupDriver('cgroupfs', () => true)).toBe('cgroupfs');
  });
});

describe('the host layout and where a pod process goes', () => {
  it('reads v1 hierarchies on a hybrid host (the kubelet uses v1 there), v2 on a unified one', () => {
    const h = parseMountinfo(HYBRID);
    expect(h.version).toBe(1);
    expect(h.v1.get('cpuacct')).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(h.v1.get('memory')).toBe('/sys/fs/cgroup/memory');
    expect(h.v1.has('name=systemd')).toBe(false);
    expect(parseMountinfo(V2)).toMatchObject({ version: 2, unified: '/sys/fs/cgroup' });
  });

  it('v1: joins memory, pids, blkio …, never a hierarchy with cpu or cpuset (libvirt tunes those)', () => {
    expect(joinDirs(parseMountinfo(HYBRID), '/kubepods/pod1', 'leaf').sort()).toEqual([
      '/sys/fs/cgroup/blkio/kubepods/pod1/leaf',
      '/sys/fs/cgroup/memory/kubepods/pod1/leaf',
      '/sys/fs/cgroup/pids/kubepods/pod1/leaf',
    ]);
  });

  it('v2: one leaf below the pod cgroup (a cgroup with children cannot hold processes)', () => {
    expect(joinDirs(parseMountinfo(V2), '/kubepods.slice/kubepods-pod1.slice', 'leaf')).toEqual(['/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/leaf']);
  });

  it('names the leaf after libvirt\'s cgroup for the machine', () => {
    expect(libvirtLeafName('4:memory:/machine/qemu-3-vmlet-ns-pod-1a2b3c4d.libvirt-qemu\n3:cpuset:/machine/qemu-3-vmlet-ns-pod-1a2b3c4d.libvirt-qemu/emulator\n')).toBe('qemu-3-vmlet-ns-pod-1a2b3c4d.libvirt-qemu');
    expect(libvirtLeafName('0::/machine.slice/machine-qemu\\x2d1\\x2dvm.scope/libvirt/emulator\n')).toBe('machine-qemu\\x2d1\\x2dvm.scope');
    expect(libvirtLeafName('0::/user.slice\n')).toBeUndefined();
  });
});

describe('TCG translation cache (<tb-cache>)', () => {
  const features = (x: string) => /<features>.*?<\/features>/s.exec(x)?.[0] ?? '';
  it('caps it under TCG at TCG_TB_CACHE_MIB, or the configured size; 0 leaves QEMU\'s default', () => {
    expect(features(xml({}, { domainType: 'qemu' }))).toMatch(new RegExp(`<tcg>\\s*<tb-cache unit="MiB">${TCG_TB_CACHE_MIB}</tb-cache>\\s*</tcg>`));
    expect(features(xml({}, { domainType: 'qemu', tcgTbCacheMiB: 48 }))).toContain('<tb-cache unit="MiB">48</tb-cache>');
    expect(features(xml({}, { domainType: 'qemu', tcgTbCacheMiB: 0 }))).not.toContain('tcg');
  });

  it('never under KVM', () => {
    expect(features(xml({}, { domainType: 'kvm', tcgTbCacheMiB: 64 }))).not.toContain('tcg');
  });
});
