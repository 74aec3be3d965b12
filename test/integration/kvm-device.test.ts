// /dev/kvm and QEMU's user on a node without udev (this machine: the kernel's /dev/kvm is root's
// 0600). node-install/start-daemons.sh gives the device to group kvm, as distributions' udev rules
// do; without that, libvirt deems its QEMU capability cache stale at every lookup (QEMU's user
// cannot open /dev/kvm, its probe says KVM) and probes QEMU again at every domain define: 8.6 s a
// define here, which made CreateContainer that slow and timed CI out.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ROOT, tempDir } from '../helpers/vmlet.js';
import { kernelGuest, kernelGuestXml } from '../helpers/guest.js';
import { virsh, domainExists } from '../helpers/virsh.js';

const START_DAEMONS = join(ROOT, 'node-install/start-daemons.sh');
const CAPS = '/var/cache/libvirt/qemu/capabilities';
const kvmGid = Number(execFileSync('getent', ['group', 'kvm'], { encoding: 'utf8' }).split(':')[2]);
const names: string[] = [];

afterAll(() => {
  for (const n of names) if (domainExists(n)) virsh('undefine', n);
});

function startDaemons(dev: string) {
  const r = spawnSync('bash', [START_DAEMONS], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, VMLET_KVM_DEVICE: dev } });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').find((l) => l.startsWith('kvm-device:')) ?? '';
}

/** A character device node of the test's own, as the kernel makes /dev/kvm (10:232). */
function kvmNode(mode: number): string {
  const dev = join(tempDir('vmlet-kvmdev-'), 'kvm');
  execFileSync('mknod', [dev, 'c', '10', '232']);
  chmodSync(dev, mode);
  return dev;
}

describe('/dev/kvm for QEMU', () => {
  it("start-daemons.sh gives the kernel's root 0600 device to group kvm (0660) and says so, then leaves it", () => {
    const dev = kvmNode(0o600);
    expect(startDaemons(dev)).toBe('kvm-device:    changed (' + dev + ' 660 root:kvm)');
    expect(statSync(dev)).toMatchObject({ uid: 0, gid: kvmGid });
    expect(statSync(dev).mode & 0o777).toBe(0o660);
    expect(startDaemons(dev)).toBe(`kvm-device:    ok (${dev} 660 root:kvm)`);
  });

  it('leaves a device others may already open as it is, and says when there is none', () => {
    const dev = kvmNode(0o666);
    expect(startDaemons(dev)).toBe(`kvm-device:    ok (${dev} 666 root:root)`);
    expect(statSync(dev).gid).toBe(0);
    expect(startDaemons(join(tempDir('vmlet-kvmdev-'), 'kvm'))).toMatch(/^kvm-device: +ok \(no \/.*\/kvm\)$/);
  });

  it("on the node as the installer left it, libvirt keeps its QEMU capability cache across defines (no probe per define)", () => {
    if (existsSync('/dev/kvm')) {
      expect(statSync('/dev/kvm').gid === kvmGid || (statSync('/dev/kvm').mode & 0o006) === 0o006).toBe(true);
    }
    const define = () => {
      const name = `vmlet-test-caps-${randomBytes(4).toString('hex')}`;
      names.push(name);
      const file = join(tempDir('vmlet-caps-'), 'domain.xml');
      writeFileSync(file, kernelGuestXml({ name, guest: kernelGuest(), domainType: 'qemu', consoleLog: join(tempDir('vmlet-caps-'), 'console.log') }));
      virsh('define', file);
      virsh('undefine', name);
    };
    const snapshot = () => Object.fromEntries(readdirSync(CAPS).map((f) => [f, statSync(join(CAPS, f)).mtimeMs]));
    define(); // a first probe may be due (a new QEMU or libvirt)
    const before = snapshot();
    expect(Object.keys(before).length).toBeGreaterThan(0);
    define();
    define();
    expect(snapshot()).toEqual(before);
  });
});
