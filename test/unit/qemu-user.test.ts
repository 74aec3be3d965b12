// Who a VM's QEMU runs as (src/vm/qemu-user.ts): the user from a real passwd file, the label in
// the domain (root for a VM with 9p shares), dirs that QEMU's user can or cannot pass through,
// and the node's decision (the default user missing gives root with the reason; a named one
// missing is refused). Against libvirt and a running QEMU: test/integration/qemu-confinement.test.ts.
import { describe, expect, it } from 'vitest';
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canReadWrite, decideQemuUser, dacLabel, kvmDeviceProblem, qemuDirs, resolveQemuUser, ROOT, socketDirFor, unreachableFor } from '../../src/vm/qemu-user.js';
import { runAs } from '../../src/vm/spec.js';
import { xml } from './domain-spec-fixtures.js';
import { tempDir } from '../helpers/vmlet.js';

const QEMU = { user: 'libvirt-qemu', uid: 995, gid: 994 };

function passwd(): string {
  const f = join(tempDir('vmlet-passwd-'), 'passwd');
  writeFileSync(f, 'root:x:0:0:root:/root:/bin/bash\nlibvirt-qemu:x:995:994:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n');
  return f;
}

describe('the QEMU user', () => {
  it('is read from passwd by name or uid; root is root; an unknown name is refused naming the config key', async () => {
    const f = passwd();
    expect(await resolveQemuUser('libvirt-qemu', f)).toEqual(QEMU);
    expect(await resolveQemuUser('995', f)).toEqual(QEMU);
    expect(await resolveQemuUser('root', f)).toEqual(ROOT);
    await expect(resolveQemuUser('qemu', f)).rejects.toThrow(/^config qemuUser: user qemu is not in .*passwd: allowed an existing user/);
  });

  it('is named in the domain as a static DAC label; a VM with 9p shares runs as root', () => {
    expect(dacLabel(QEMU)).toBe('+995:+994');
    const share = { source: '/srv/data', tag: 'vol:data', readonly: false };
    expect(runAs(QEMU, [])).toEqual(QEMU);
    expect(runAs(QEMU, [share])).toEqual(ROOT);
    expect(xml({}, { qemuUser: QEMU })).toMatch(/<seclabel type="static" model="dac" relabel="yes">\s*<label>\+995:\+994<\/label>\s*<\/seclabel>/);
    expect(xml({}, { qemuUser: QEMU, shares: [share] })).toMatch(/<label>\+0:\+0<\/label>/);
    expect(xml({}, {})).not.toContain('<seclabel'); // no user given: qemu.conf's
  });

  it('reaches a dir whose parents it may search, and names the first one it may not', async () => {
    const top = tempDir('vmlet-reach-'); // 0711
    const dir = join(top, 'a', 'b');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    expect(await unreachableFor(dir, QEMU)).toBeUndefined();
    chmodSync(join(top, 'a'), 0o700);
    expect(await unreachableFor(dir, QEMU)).toEqual({ dir: join(top, 'a'), mode: '0700' });
    chownSync(join(top, 'a'), 0, QEMU.gid);
    chmodSync(join(top, 'a'), 0o710); // the group's search bit is QEMU's
    expect(await unreachableFor(dir, QEMU)).toBeUndefined();
    expect(await unreachableFor(dir, ROOT)).toBeUndefined();
  });

  it('gets its dirs: root\'s with its group and 0710 on the way to its files, its own 0700 for its sockets; as root, nothing changes', async () => {
    const top = tempDir('vmlet-qdirs-');
    const pod = join(top, 'pod');
    mkdirSync(pod, { mode: 0o700 });
    await qemuDirs([pod], QEMU);
    expect(statSync(pod)).toMatchObject({ uid: 0, gid: QEMU.gid });
    expect(statSync(pod).mode & 0o7777).toBe(0o710);
    const sock = join(pod, 'qemu');
    await socketDirFor(sock, QEMU);
    expect(statSync(sock)).toMatchObject({ uid: QEMU.uid, gid: QEMU.gid });
    expect(statSync(sock).mode & 0o7777).toBe(0o700);
    const rootPod = join(top, 'root-pod');
    mkdirSync(rootPod, { mode: 0o700 });
    await qemuDirs([rootPod], ROOT);
    expect(statSync(rootPod).mode & 0o7777).toBe(0o700);
  });

  it('is decided for the node: the default user missing or out of reach gives root with the reason; a named user missing is refused', async () => {
    const f = passwd();
    const state = join(tempDir('vmlet-decide-'), 'state');
    mkdirSync(state);
    expect(await decideQemuUser({ qemuUser: 'libvirt-qemu', stateDir: state }, f)).toEqual({ id: QEMU });
    const missing = join(tempDir('vmlet-decide-'), 'passwd');
    writeFileSync(missing, 'root:x:0:0::/root:/bin/sh\n');
    const d = await decideQemuUser({ qemuUser: 'libvirt-qemu', stateDir: state }, missing);
    expect(d.id).toEqual(ROOT);
    expect(d.fallback).toMatch(/user libvirt-qemu is not in/);
    await expect(decideQemuUser({ qemuUser: 'qemu', stateDir: state }, f)).rejects.toThrow(/user qemu is not in/);
    const hidden = join(tempDir('vmlet-decide-'), 'private');
    mkdirSync(join(hidden, 'state'), { recursive: true, mode: 0o711 }); // as vmlet makes its own
    chmodSync(hidden, 0o700);
    expect((await decideQemuUser({ qemuUser: 'libvirt-qemu', stateDir: join(hidden, 'state') }, f)).fallback).toMatch(/out of reach for QEMU's user libvirt-qemu: .*private is mode 0700/);
    await expect(decideQemuUser({ qemuUser: '995', stateDir: join(hidden, 'state') }, f)).rejects.toThrow(/out of reach/);
  });
});

describe('/dev/kvm for the QEMU user', () => {
  it('is open to it by owner, group or other bits, as the kernel checks them', () => {
    expect(canReadWrite({ mode: 0o20600, uid: 0, gid: 0 }, QEMU)).toBe(false); // the kernel's own, without udev
    expect(canReadWrite({ mode: 0o20660, uid: 0, gid: 994 }, QEMU)).toBe(true); // udev's root:kvm 0660
    expect(canReadWrite({ mode: 0o20640, uid: 0, gid: 994 }, QEMU)).toBe(false);
    expect(canReadWrite({ mode: 0o20666, uid: 0, gid: 0 }, QEMU)).toBe(true);
    expect(canReadWrite({ mode: 0o20600, uid: 995, gid: 0 }, QEMU)).toBe(true);
    expect(canReadWrite({ mode: 0o20066, uid: 995, gid: 994 }, QEMU)).toBe(false); // the owner's bits decide for the owner
    expect(canReadWrite({ mode: 0o20600, uid: 0, gid: 0 }, ROOT)).toBe(true);
  });

  it('names the device, its mode and owners and what follows when QEMU cannot open it; nothing when it can or there is none', async () => {
    const dir = tempDir('vmlet-kvmdev-');
    const dev = join(dir, 'kvm');
    writeFileSync(dev, '');
    chmodSync(dev, 0o600);
    chownSync(dev, 0, 0);
    expect(await kvmDeviceProblem(QEMU, dev)).toBe(`${dev} is mode 0600, uid 0, gid 0: QEMU's user libvirt-qemu (uid 995, gid 994) cannot open it, so VMs cannot use KVM and libvirt probes QEMU again at every domain define (seconds each)`);
    chownSync(dev, 0, 994);
    chmodSync(dev, 0o660);
    expect(await kvmDeviceProblem(QEMU, dev)).toBeUndefined();
    expect(await kvmDeviceProblem(QEMU, join(dir, 'none'))).toBeUndefined();
  });
});
