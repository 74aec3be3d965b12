// `vmlet doctor` against this machine's real libvirtd, QEMU and CNI plugins.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_BIN_DIRS, MAIN, ROOT, tempDir, writeCniConf } from '../helpers/vmlet.js';

/** The guest kit test/prepare.sh builds (node-install/build-guest-kit.sh). */
const GUEST_KIT = join(ROOT, '.cache/guest-kit');

function doctor(extra: string[], cniConfDir: string, guestKitDir = GUEST_KIT) {
  const dir = tempDir('vmlet-doctor-');
  const r = spawnSync(
    process.execPath,
    [MAIN, 'doctor', '--config', '/dev/null', '--state-dir', join(dir, 'state'), '--socket', join(dir, 'run', 'v.sock'),
      '--cni-conf-dir', cniConfDir, ...CNI_BIN_DIRS.flatMap((d) => ['--cni-bin-dir', d]), ...extra],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, VMLET_GUEST_KIT_DIR: guestKitDir } },
  );
  const lines = r.stdout.split('\n');
  const verdict = (name: string) => lines.find((l) => l.split(/\s+/)[1] === name)?.split(/\s+/)[0];
  return { status: r.status, stdout: r.stdout, verdict };
}

describe('vmlet doctor', () => {
  it('passes on a prepared node, with one line per check', () => {
    const r = doctor([], writeCniConf());
    expect(r.stdout).toContain('vmlet can run VMs on this node.');
    expect(r.status).toBe(0);
    for (const check of ['libvirt', 'virtlogd', 'qemu', 'qemu-img', 'dnsmasq', 'genisoimage', 'cni', 'state-dir', 'socket-dir']) {
      expect(r.verdict(check), check).toBe('OK');
    }
    // WARN only while the kit has the stand-in agent (built before src/guest/agent existed).
    expect(['OK', 'WARN']).toContain(r.verdict('guest-kit'));
    expect(r.stdout).toMatch(/guest-kit +\S+: version [0-9a-f]{12}-/);
    // KVM is OK on a real node; on these kvm_pvm machines it is a warning that names TCG.
    expect(['OK', 'WARN']).toContain(r.verdict('kvm'));
    if (r.verdict('kvm') === 'WARN') expect(r.stdout).toMatch(/falling back to TCG/);
  });

  it('fails with a fix when libvirt is unreachable or CNI is missing', () => {
    const dir = tempDir();
    const r = doctor(['--libvirt-uri', `qemu+unix:///system?socket=${join(dir, 'absent.sock')}`], join(dir, 'no-cni'));
    expect(r.status).toBe(1);
    expect(r.verdict('libvirt')).toBe('FAIL');
    expect(r.verdict('cni')).toBe('FAIL');
    expect(r.stdout).toMatch(/fix: start libvirtd/);
    expect(r.stdout).toMatch(/fix: install your cluster's CNI/);
    expect(r.stdout).toContain('cannot run VMs');
  });

  it('checks the downstream CRI when one is configured', () => {
    const dir = tempDir();
    const r = doctor(['--downstream', `unix://${join(dir, 'containerd.sock')}`], writeCniConf());
    expect(r.verdict('downstream')).toBe('FAIL');
    expect(r.stdout).toContain("fix: start the node's containerd");
    expect(r.status).toBe(1);
  });

  it('forced TCG is reported as a warning, not a failure', () => {
    const r = doctor(['--hypervisor', 'tcg'], writeCniConf());
    expect(r.verdict('kvm')).toBe('WARN');
    expect(r.stdout).toContain('hypervisor is set to "tcg"');
    expect(r.status).toBe(0);
  });

  it('fails with the fix when the guest kit is missing or broken', () => {
    const dir = tempDir();
    let r = doctor([], writeCniConf(), join(dir, 'absent'));
    expect(r.verdict('guest-kit')).toBe('FAIL');
    expect(r.stdout).toMatch(/guest-kit +.*absent: missing vmlinux, initrd.img, cmdline, VERSION; sandboxed pods cannot boot/);
    expect(r.stdout).toContain('fix: run node-install/install.sh (it builds the kit into /usr/local/lib/vmlet/guest');
    expect(r.status).toBe(1);

    // A kit whose vmlinux is the compressed bzImage (no ELF), then a good vmlinux with a
    // non-gzip initrd.
    const kit = join(dir, 'kit');
    mkdirSync(kit);
    writeFileSync(join(kit, 'vmlinux'), Buffer.from('MZ\x00bzImage'));
    writeFileSync(join(kit, 'initrd.img'), 'not gzip');
    writeFileSync(join(kit, 'cmdline'), 'console=ttyS0');
    writeFileSync(join(kit, 'VERSION'), '0123456789ab-6.1.0-1\n');
    r = doctor([], writeCniConf(), kit);
    expect(r.verdict('guest-kit')).toBe('FAIL');
    expect(r.stdout).toContain('vmlinux is not an ELF file');
    copyFileSync(join(GUEST_KIT, 'vmlinux'), join(kit, 'vmlinux'));
    r = doctor([], writeCniConf(), kit);
    expect(r.verdict('guest-kit')).toBe('FAIL');
    expect(r.stdout).toContain('initrd.img is not gzip');
  });
});
