// virtiofs shares as pure data (src/vm/virtiofs.ts, domain-xml.ts, volumes.ts): where virtiofsd
// is found, the domain a virtiofs share makes (shared memfd RAM, libvirt's virtiofs driver with
// the binary, no <readonly/> which libvirt refuses for it), the guest's mount entry, and that such
// a VM keeps the unprivileged QEMU user. Against libvirt and a guest: volumes-vm-guest.test.ts
// and qemu-confinement.test.ts.
import { describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findVirtiofsd } from '../../src/vm/virtiofs.js';
import { cloudInitMounts } from '../../src/vm/volumes.js';
import { runAs } from '../../src/vm/spec.js';
import { ROOT } from '../../src/vm/qemu-user.js';
import { xml } from './domain-spec-fixtures.js';
import { tempDir } from '../helpers/vmlet.js';

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const rw = { source: '/srv/data', tag: 'vmlet:aaaaaaaaaaaa', readonly: false, virtiofs: { binary: VIRTIOFSD } };
const ro = { source: '/var/lib/vmlet/pods/p/containers/c/ro-shares/0', tag: 'vmlet:bbbbbbbbbbbb', readonly: true, virtiofs: { binary: VIRTIOFSD } };

describe('virtiofs', () => {
  it('finds virtiofsd through a vhost-user descriptor of type fs, else at a known path, else none', () => {
    const dir = tempDir('vmlet-vhost-');
    const bin = join(dir, 'my-virtiofsd');
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    const descriptors = join(dir, 'vhost-user');
    mkdirSync(descriptors);
    writeFileSync(join(descriptors, '10-gpu.json'), JSON.stringify({ type: 'gpu', binary: bin }));
    writeFileSync(join(descriptors, '20-broken.json'), '{');
    writeFileSync(join(descriptors, '30-missing.json'), JSON.stringify({ type: 'fs', binary: join(dir, 'gone') }));
    expect(findVirtiofsd([descriptors], [])).toBeUndefined();
    writeFileSync(join(descriptors, '50-fs.json'), JSON.stringify({ type: 'fs', binary: bin }));
    expect(findVirtiofsd([join(dir, 'nothing-here'), descriptors], [])).toBe(bin);
    expect(findVirtiofsd([join(dir, 'nothing-here')], [join(dir, 'gone'), bin])).toBe(bin);
  });

  it('gives the domain shared memfd RAM and a virtiofs filesystem with the binary, read-only by its source only', () => {
    const x = xml({}, { shares: [rw, ro] });
    expect(x).toMatch(/<memoryBacking>\s*<source type="memfd"\/>\s*<access mode="shared"\/>\s*<\/memoryBacking>/);
    expect(x).toMatch(/<filesystem type="mount" accessmode="passthrough">\s*<driver type="virtiofs"\/>\s*<binary path="\/usr\/lib\/qemu\/virtiofsd"\/>\s*<source dir="\/srv\/data"\/>\s*<target dir="vmlet:aaaaaaaaaaaa"\/>\s*<\/filesystem>/);
    expect(x).not.toContain('<readonly/>');
    const cached = xml({}, { shares: [{ ...ro, virtiofs: { binary: VIRTIOFSD, cache: 'always' } }] });
    expect(cached).toMatch(/<binary path="\/usr\/lib\/qemu\/virtiofsd">\s*<cache mode="always"\/>\s*<\/binary>/);
    const hp = xml({ 'vmlet.io/hugepages': '2Mi' }, { shares: [rw] });
    expect(hp).toMatch(/<memoryBacking>\s*<hugepages>[\s\S]*<\/hugepages>\s*<source type="memfd"\/>\s*<access mode="shared"\/>/);
    const ninep = xml({}, { shares: [{ source: '/srv/data', tag: 't', readonly: true }] });
    expect(ninep).not.toContain('<memoryBacking>');
    expect(ninep).toMatch(/<target dir="t"\/>\s*<readonly\/>/);
  });

  it('is mounted by the guest as virtiofs, ro where asked; keeps the VM\'s QEMU unprivileged, as 9p does not', () => {
    expect(cloudInitMounts([{ tag: rw.tag, path: '/data', readonly: false, virtiofs: true }, { tag: ro.tag, path: '/etc/app', readonly: true, virtiofs: true }])).toEqual([
      [rw.tag, '/data', 'virtiofs', 'rw,nofail', '0', '0'],
      [ro.tag, '/etc/app', 'virtiofs', 'ro,nofail', '0', '0'],
    ]);
    const qemu = { user: 'libvirt-qemu', uid: 995, gid: 994 };
    expect(runAs(qemu, [rw, ro])).toEqual(qemu);
    expect(runAs(qemu, [rw, { source: '/x', tag: 'y', readonly: false }])).toEqual(ROOT);
  });
});
