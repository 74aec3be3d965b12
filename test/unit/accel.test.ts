import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decideAccel, probeHost, type HostVirtFacts } from '../../src/vm/accel.js';
import { tempDir } from '../helpers/vmlet.js';

const realKvm: HostVirtFacts = { devKvm: 'ok', cpuFlag: 'vmx', kvmModules: ['kvm', 'kvm_intel'] };
const pvm: HostVirtFacts = { devKvm: 'ok', cpuFlag: null, kvmModules: ['kvm', 'kvm_pvm'] };

describe('KVM vs TCG decision', () => {
  it('uses KVM on a host with vmx and kvm_intel', () => {
    const d = decideAccel('auto', realKvm);
    expect(d).toMatchObject({ accel: 'kvm', domainType: 'kvm' });
    expect(d.reason).toBeUndefined();
    expect(decideAccel('auto', { devKvm: 'ok', cpuFlag: 'svm', kvmModules: ['kvm', 'kvm_amd'] }).accel).toBe('kvm');
  });

  it('falls back to TCG on kvm_pvm although /dev/kvm exists, and says why', () => {
    const d = decideAccel('auto', pvm);
    expect(d).toMatchObject({ accel: 'tcg', domainType: 'qemu' });
    expect(d.reason).toContain('kvm_pvm');
    expect(d.reason).toContain('neither vmx nor svm');
  });

  it('falls back to TCG without /dev/kvm or without access to it', () => {
    expect(decideAccel('auto', { ...realKvm, devKvm: 'absent' }).reason).toMatch(/does not exist/);
    expect(decideAccel('auto', { ...realKvm, devKvm: 'no-access' }).reason).toMatch(/cannot be opened/);
    expect(decideAccel('auto', { ...realKvm, kvmModules: ['kvm'] }).accel).toBe('tcg');
  });

  it('honours the config: tcg always, kvm as an operator override', () => {
    expect(decideAccel('tcg', realKvm)).toMatchObject({ accel: 'tcg', reason: 'hypervisor is set to "tcg" in the config' });
    expect(decideAccel('kvm', pvm).accel).toBe('kvm');
  });

  it('probes a host from /dev/kvm, cpuinfo flags and loaded modules', () => {
    const root = tempDir('vmlet-accel-');
    writeFileSync(join(root, 'kvm'), '');
    writeFileSync(join(root, 'cpuinfo'), 'processor\t: 0\nflags\t\t: fpu vme de pse svm sse\n\nprocessor\t: 1\n');
    for (const m of ['kvm', 'kvm_amd', 'ext4']) mkdirSync(join(root, 'module', m), { recursive: true });
    expect(probeHost({ devKvm: join(root, 'kvm'), cpuinfo: join(root, 'cpuinfo'), sysModule: join(root, 'module') })).toEqual({
      devKvm: 'ok',
      cpuFlag: 'svm',
      kvmModules: ['kvm', 'kvm_amd'],
    });
    expect(probeHost({ devKvm: join(root, 'absent'), cpuinfo: join(root, 'absent'), sysModule: join(root, 'absent') })).toEqual({
      devKvm: 'absent',
      cpuFlag: null,
      kvmModules: [],
    });
  });
});
