// The <emulator> wrapper that starts a pod's QEMU in the pod cgroup, run by a real /bin/sh with a
// stand-in QEMU (a script printing its pid and arguments) and plain directories for the cgroup
// dirs (their cgroup.procs a plain file): the join happens in the process that becomes QEMU, as
// QEMU's unprivileged user too, the arguments pass unchanged, nothing joins without a list, and
// a join that fails stops the start.
// Against real cgroups and libvirt: test/integration/pod-cgroup.test.ts.
import { describe, expect, it } from 'vitest';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { EmulatorWrapper, emulatorScript } from '../../src/vm/emulator-wrapper.js';
import { birthDirs, canBeBornInPod, parseMountinfo } from '../../src/vm/pod-cgroup.js';
import { xml } from './domain-spec-fixtures.js';
import { tempDir } from '../helpers/vmlet.js';

function standInQemu(dir: string): string {
  const p = join(dir, "qemu it's");
  writeFileSync(p, '#!/bin/sh\necho "pid=$$"; for a in "$@"; do echo "arg=$a"; done\n');
  chmodSync(p, 0o755);
  return p;
}

const ARGS = ['-name', 'guest=vmlet-ns-pod-1a2b3c4d,debug-threads=on', '-S', '-append', 'console=ttyS0 quiet'];

describe('emulator wrapper', () => {
  it('joins each listed birth leaf, then execs QEMU in the same process with the same arguments', async () => {
    const dir = tempDir('vmlet-emu-');
    const w = await EmulatorWrapper.install(dir, standInQemu(dir));
    expect(statSync(w.path).mode & 0o777).toBe(0o755);
    const cg = [join(dir, 'memory', 'pod1', 'vmlet-birth-x'), join(dir, 'pids', 'pod1', 'vmlet-birth-x')];
    for (const d of cg) mkdirSync(d, { recursive: true });
    await w.expect('vmlet-ns-pod-1a2b3c4d', cg);
    const r = await execa(w.path, ARGS);
    const pid = /^pid=(\d+)$/m.exec(r.stdout)![1]!;
    expect(r.stdout.split('\n').filter((l) => l.startsWith('arg=')).map((l) => l.slice(4))).toEqual(ARGS);
    for (const d of cg) expect(readFileSync(join(d, 'cgroup.procs'), 'utf8').trim()).toBe(pid);
    await w.done('vmlet-ns-pod-1a2b3c4d');
    expect(existsSync(join(w.joinDir, 'vmlet-ns-pod-1a2b3c4d'))).toBe(false);
  });

  it('joins as QEMU\'s unprivileged user (libvirt drops to it before the exec): the script and its list are readable, the leaf\'s cgroup.procs is the user\'s', async () => {
    const dir = tempDir('vmlet-emu-');
    const w = await EmulatorWrapper.install(dir, standInQemu(dir));
    const qemu = { uid: Number((await execa('id', ['-u', 'libvirt-qemu'])).stdout), gid: Number((await execa('id', ['-g', 'libvirt-qemu'])).stdout) };
    const leaf = join(dir, 'memory', 'pod1', 'vmlet-birth-x');
    mkdirSync(leaf, { recursive: true });
    for (const d of [join(dir, 'memory'), join(dir, 'memory', 'pod1'), leaf]) chmodSync(d, 0o711);
    writeFileSync(join(leaf, 'cgroup.procs'), '');
    chownSync(join(leaf, 'cgroup.procs'), qemu.uid, qemu.gid);
    await w.expect('vmlet-ns-pod-1a2b3c4d', [leaf]);
    const r = await execa('setpriv', ['--reuid', String(qemu.uid), '--regid', String(qemu.gid), '--clear-groups', w.path, ...ARGS]);
    expect(readFileSync(join(leaf, 'cgroup.procs'), 'utf8').trim()).toBe(/^pid=(\d+)$/m.exec(r.stdout)![1]);
    // Another leaf, root's: the same user cannot join it.
    const other = join(dir, 'memory', 'pod1', 'other');
    mkdirSync(other, { mode: 0o711 });
    writeFileSync(join(other, 'cgroup.procs'), '');
    await w.expect('vmlet-ns-pod-1a2b3c4d', [other]);
    const refused = await execa('setpriv', ['--reuid', String(qemu.uid), '--regid', String(qemu.gid), '--clear-groups', w.path, ...ARGS], { reject: false });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`cannot join the pod cgroup ${other}`);
  });

  it('only execs QEMU for a domain with no list (a pool VM, libvirt probing the binary)', async () => {
    const dir = tempDir('vmlet-emu-');
    const w = await EmulatorWrapper.install(dir, standInQemu(dir));
    const probe = await execa(w.path, ['-S', '-no-user-config', '-machine', 'none']);
    expect(probe.stdout).toContain('arg=none');
    const r = await execa(w.path, ARGS);
    expect(r.stdout).toContain('arg=guest=vmlet-ns-pod-1a2b3c4d,debug-threads=on');
  });

  it('fails the start, naming the dir, when it cannot join', async () => {
    const dir = tempDir('vmlet-emu-');
    const w = await EmulatorWrapper.install(dir, standInQemu(dir));
    await w.expect('vmlet-ns-pod-1a2b3c4d', [join(dir, 'no-such-cgroup')]);
    const r = await execa(w.path, ARGS, { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`cannot join the pod cgroup ${join(dir, 'no-such-cgroup')}`);
    expect(r.stdout).not.toContain('pid=');
  });

  it('is rewritten only when it changes (libvirt probes an emulator again when its file changes)', async () => {
    const dir = tempDir('vmlet-emu-');
    const qemu = standInQemu(dir);
    const w = await EmulatorWrapper.install(dir, qemu);
    const before = statSync(w.path).ino;
    await EmulatorWrapper.install(dir, qemu);
    expect(statSync(w.path).ino).toBe(before);
    await EmulatorWrapper.install(dir, '/usr/bin/qemu-system-x86_64');
    expect(statSync(w.path).ino).not.toBe(before);
    expect(readFileSync(w.path, 'utf8')).toBe(emulatorScript('/usr/bin/qemu-system-x86_64', w.joinDir));
  });

  it('is the domain\'s <emulator> when given, libvirt\'s default otherwise', () => {
    expect(xml({}, { emulator: '/var/lib/vmlet/bin/qemu-in-pod-cgroup' })).toMatch(/<devices>\s*<emulator>\/var\/lib\/vmlet\/bin\/qemu-in-pod-cgroup<\/emulator>/);
    expect(xml({}, {})).not.toContain('<emulator>');
  });
});

describe('which pods\' QEMU is born in the pod cgroup', () => {
  const v1 = parseMountinfo('34 30 0:30 / /tmp/x/memory rw - cgroup cgroup rw,memory\n33 30 0:29 / /tmp/x/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct');
  const v2 = parseMountinfo('28 22 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw');
  it('on cgroup v1, with a cgroup_parent; never without one nor on v2 (libvirt\'s threaded vCPU cgroups there)', () => {
    expect(canBeBornInPod('/kubepods/pod1', 'cgroupfs', v1)).toBe(true);
    expect(canBeBornInPod(undefined, 'cgroupfs', v1)).toBe(false);
    expect(canBeBornInPod('', 'cgroupfs', v1)).toBe(false);
    expect(canBeBornInPod('/kubepods/pod1', 'cgroupfs', v2)).toBe(false);
    expect(birthDirs('/kubepods/pod1', 'cgroupfs', 'vmlet-x', { uid: 0, gid: 0 }, v2)).toBeUndefined();
  });
});
