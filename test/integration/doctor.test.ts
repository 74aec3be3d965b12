// `vmlet doctor` against this machine's real libvirtd, QEMU and CNI plugins.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_BIN_DIRS, MAIN, ROOT, tempDir, writeCniConf } from '../helpers/vmlet.js';

/** The guest kit test/prepare.sh builds (node-install/build-guest-kit.sh). */
const GUEST_KIT = join(ROOT, '.cache/guest-kit');

function doctor(extra: string[], cniConfDir: string, guestKitDir = GUEST_KIT, env: NodeJS.ProcessEnv = {}) {
  const dir = tempDir('vmlet-doctor-');
  const r = spawnSync(
    process.execPath,
    [MAIN, 'doctor', '--config', '/dev/null', '--state-dir', join(dir, 'state'), '--socket', join(dir, 'run', 'v.sock'),
      '--cni-conf-dir', cniConfDir, ...CNI_BIN_DIRS.flatMap((d) => ['--cni-bin-dir', d]), ...extra],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, VMLET_GUEST_KIT_DIR: guestKitDir, ...env } },
  );
  const lines = r.stdout.split('\n');
  const verdict = (name: string) => lines.find((l) => l.split(/\s+/)[1] === name)?.split(/\s+/)[0];
  /** The check's line and its fix line, if any. */
  const line = (name: string) => {
    const i = lines.findIndex((l) => l.split(/\s+/)[1] === name);
    return i < 0 ? '' : lines[i] + (lines[i + 1]?.trimStart().startsWith('fix:') ? `\n${lines[i + 1]}` : '');
  };
  return { status: r.status, stdout: r.stdout, verdict, line };
}

describe('vmlet doctor', () => {
  it('passes on a prepared node, with one line per check', () => {
    const r = doctor([], writeCniConf());
    expect(r.stdout).toContain('vmlet can run VMs on this node.');
    expect(r.status).toBe(0);
    for (const check of ['libvirt', 'virtlogd', 'qemu', 'qemu-img', 'dnsmasq', 'nsenter', 'zstd', 'cni', 'state-dir', 'socket-dir', 'qemu-user', 'kvm-device']) {
      expect(r.verdict(check), check).toBe('OK');
    }
    // WARN only while the kit has the stand-in agent (built before src/guest/agent existed).
    expect(['OK', 'WARN']).toContain(r.verdict('guest-kit'));
    expect(r.stdout).toMatch(/guest-kit +\S+: version [0-9a-f]{12}-/);
    // KVM is OK on a real node; on these kvm_pvm machines it is a warning that names TCG.
    expect(['OK', 'WARN']).toContain(r.verdict('kvm'));
    if (r.verdict('kvm') === 'WARN') expect(r.stdout).toMatch(/falling back to TCG/);
  });

  it('says which firmware sandboxed pods\' VMs start: qboot from the node\'s ROM, SeaBIOS when the config says so', () => {
    const qboot = doctor([], writeCniConf());
    expect(qboot.verdict('pod-vm-bios')).toBe('OK');
    expect(qboot.line('pod-vm-bios')).toMatch(/sandboxed pods' VMs start qboot \(\/usr\/share\/qemu\/qboot\.rom\)/);
    const seabios = doctor([], writeCniConf(), GUEST_KIT, { VMLET_POD_VM_BIOS: 'seabios' });
    expect(seabios.line('pod-vm-bios')).toMatch(/OK +pod-vm-bios +sandboxed pods' VMs start SeaBIOS \(config podVmBios: seabios\)/);
  });

  it('says how image rootfs are made: EROFS with this kit, trees by config or with a kit too old for EROFS (a warning)', () => {
    expect(doctor([], writeCniConf()).line('image-rootfs')).toMatch(/^OK +image-rootfs +a container image's rootfs is one EROFS image file/);
    expect(doctor([], writeCniConf(), GUEST_KIT, { VMLET_IMAGE_ROOTFS: 'tree' }).line('image-rootfs')).toMatch(/^OK +image-rootfs +.*unpacked as a tree \(config imageRootfs: tree\)/);
    // A kit built before the features file: its guest has no loop or erofs module.
    const old = join(tempDir(), 'kit');
    mkdirSync(old);
    for (const f of ['vmlinux', 'initrd.img', 'cmdline', 'VERSION']) copyFileSync(join(GUEST_KIT, f), join(old, f));
    const r = doctor([], writeCniConf(), old);
    expect(r.line('image-rootfs')).toMatch(/^WARN +image-rootfs +the guest kit in \S+ cannot mount EROFS images \(built by an older vmlet\): image rootfs are made as trees.*\n +fix: run node-install\/install.sh, or set imageRootfs: tree/);
    expect(r.status).toBe(0);
  });

  it('says who VMs\' QEMU runs as, and fails on a QEMU user that does not exist', () => {
    expect(doctor([], writeCniConf()).stdout).toMatch(/qemu-user +VMs' QEMU runs as libvirt-qemu \(uid \d+, gid \d+\); as root only for VMs with 9p shares/);
    const r = doctor([], writeCniConf(), GUEST_KIT, { VMLET_QEMU_USER: 'no-such-qemu-user' });
    expect(r.verdict('qemu-user')).toBe('FAIL');
    expect(r.stdout).toMatch(/config qemuUser: user no-such-qemu-user is not in \/etc\/passwd/);
    expect(r.status).toBe(1);
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

  it('reports whether crictl is installed and whether its config points at vmlet (a warning, never a failure)', () => {
    const dir = tempDir();
    const sock = join(dir, 'v.sock');
    const flags = ['--socket', sock]; // after doctor()'s own --socket: the last one counts
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'crictl'), '#!/bin/sh\necho "crictl version v1.30.0"\n');
    chmodSync(join(bin, 'crictl'), 0o755);
    const withCrictl = { PATH: `${bin}:${process.env.PATH ?? ''}` };
    const good = join(dir, 'crictl.yaml');
    writeFileSync(good, `runtime-endpoint: unix://${sock}\nimage-endpoint: unix://${sock}\ntimeout: 30\n`);

    let r = doctor(flags, writeCniConf(), GUEST_KIT, { ...withCrictl, CRI_CONFIG_FILE: good });
    expect(r.line('crictl')).toBe(`OK   crictl      ${join(bin, 'crictl')} (version 1.30.0); ${good} points at unix://${sock}`);

    // Pointed at containerd: a warning naming both endpoints, with the fix.
    const other = join(dir, 'other.yaml');
    writeFileSync(other, 'runtime-endpoint: unix:///run/containerd/containerd.sock\n');
    r = doctor(flags, writeCniConf(), GUEST_KIT, { ...withCrictl, CRI_CONFIG_FILE: other });
    expect(r.verdict('crictl')).toBe('WARN');
    expect(r.line('crictl')).toContain(`runtime-endpoint is unix:///run/containerd/containerd.sock, image-endpoint is unset, not unix://${sock}`);
    expect(r.line('crictl')).toContain(`fix: set runtime-endpoint and image-endpoint to unix://${sock} in ${other}`);
    expect(r.status).toBe(0);

    // No config file.
    r = doctor(flags, writeCniConf(), GUEST_KIT, { ...withCrictl, CRI_CONFIG_FILE: join(dir, 'absent.yaml') });
    expect(r.verdict('crictl')).toBe('WARN');
    expect(r.line('crictl')).toContain('absent.yaml absent');
    expect(r.line('crictl')).toContain(`fix: copy node-install/crictl.yaml to ${join(dir, 'absent.yaml')}`);

    // No crictl at all (only where this machine has none in the usual dirs either): where to get it.
    if (!['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, 'crictl')))) {
      r = doctor(flags, writeCniConf(), GUEST_KIT, { PATH: '/usr/bin:/bin', CRI_CONFIG_FILE: good });
      expect(r.verdict('crictl')).toBe('WARN');
      expect(r.line('crictl')).toContain(`crictl not found; ${good} points at unix://${sock}`);
      expect(r.line('crictl')).toMatch(/fix: install crictl: the cri-tools package of the Kubernetes apt repository .* checked against its \.sha256 file/);
      expect(r.status).toBe(0);
    }
  });
});
