// `vmlet doctor` against this machine's real libvirtd, QEMU and CNI plugins.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CNI_BIN_DIRS, MAIN, tempDir, writeCniConf } from '../helpers/vmlet.js';

function doctor(extra: string[], cniConfDir: string) {
  const dir = tempDir('vmlet-doctor-');
  const r = spawnSync(
    process.execPath,
    [MAIN, 'doctor', '--config', '/dev/null', '--state-dir', join(dir, 'state'), '--socket', join(dir, 'run', 'v.sock'),
      '--cni-conf-dir', cniConfDir, ...CNI_BIN_DIRS.flatMap((d) => ['--cni-bin-dir', d]), ...extra],
    { encoding: 'utf8', timeout: 60_000 },
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
});
