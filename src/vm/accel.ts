// Decides KVM vs TCG. The presence of /dev/kvm proves nothing: a nested "pagetable VM" host
// (kvm_pvm) exposes /dev/kvm yet runs a stock guest kernel ~100x slower than TCG and then fails.
// So KVM is used only when the CPU advertises vmx/svm and the matching kvm_intel/kvm_amd module runs.
import { accessSync, constants, existsSync, readFileSync, readdirSync } from 'node:fs';
import type { Hypervisor } from '../config.js';

export type Accel = 'kvm' | 'tcg';

export interface AccelDecision {
  accel: Accel;
  /** libvirt <domain type=…>: 'kvm' or 'qemu' (TCG). */
  domainType: 'kvm' | 'qemu';
  /** Why KVM is not used; undefined when it is. */
  reason?: string;
  /** What the probe saw, for Status verbose and doctor. */
  facts: HostVirtFacts;
}

export interface HostVirtFacts {
  devKvm: 'absent' | 'no-access' | 'ok';
  cpuFlag: 'vmx' | 'svm' | null;
  /** kvm* modules present in /sys/module, e.g. ['kvm', 'kvm_intel'] or ['kvm', 'kvm_pvm']. */
  kvmModules: string[];
}

/** Paths are parameters so tests can point the probe at a fake /proc and /sys. */
export interface ProbeRoots {
  devKvm?: string;
  cpuinfo?: string;
  sysModule?: string;
}

export function probeHost(roots: ProbeRoots = {}): HostVirtFacts {
  const devKvm = roots.devKvm ?? '/dev/kvm';
  const cpuinfo = roots.cpuinfo ?? '/proc/cpuinfo';
  const sysModule = roots.sysModule ?? '/sys/module';
  let dev: HostVirtFacts['devKvm'] = 'absent';
  if (existsSync(devKvm)) {
    try {
      accessSync(devKvm, constants.R_OK | constants.W_OK);
      dev = 'ok';
    } catch {
      dev = 'no-access';
    }
  }
  let cpuFlag: HostVirtFacts['cpuFlag'] = null;
  try {
    const flagsLine = readFileSync(cpuinfo, 'utf8').split('\n').find((l) => l.startsWith('flags'));
    const flags = new Set((flagsLine ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
    cpuFlag = flags.has('vmx') ? 'vmx' : flags.has('svm') ? 'svm' : null;
  } catch {
    cpuFlag = null;
  }
  let kvmModules: string[] = [];
  try {
    kvmModules = readdirSync(sysModule).filter((m) => m === 'kvm' || m.startsWith('kvm_')).sort();
  } catch {
    kvmModules = [];
  }
  return { devKvm: dev, cpuFlag, kvmModules };
}

/** Pure decision from the facts and the configured setting. */
export function decideAccel(setting: Hypervisor, facts: HostVirtFacts): AccelDecision {
  const kvm = (): AccelDecision => ({ accel: 'kvm', domainType: 'kvm', facts });
  const tcg = (reason: string): AccelDecision => ({ accel: 'tcg', domainType: 'qemu', reason, facts });
  if (setting === 'tcg') return tcg('hypervisor is set to "tcg" in the config');
  if (setting === 'kvm') return kvm(); // operator override: trust it, QEMU reports if it cannot
  const problem = kvmProblem(facts);
  return problem ? tcg(problem) : kvm();
}

function kvmProblem(f: HostVirtFacts): string | undefined {
  if (f.devKvm === 'absent') return '/dev/kvm does not exist (no KVM module loaded, or hardware virtualisation is off)';
  if (f.devKvm === 'no-access') return '/dev/kvm exists but cannot be opened read-write by vmlet';
  const hw = f.kvmModules.filter((m) => m === 'kvm_intel' || m === 'kvm_amd');
  if (!f.cpuFlag || hw.length === 0) {
    const other = f.kvmModules.filter((m) => m !== 'kvm');
    const by = other.length ? `/dev/kvm is provided by ${other.join(', ')}` : '/dev/kvm is provided by an unknown module';
    const cpu = f.cpuFlag ? `CPU flag ${f.cpuFlag} present` : 'the CPU advertises neither vmx nor svm';
    return `${by} and ${cpu}; such KVM (e.g. nested kvm_pvm) cannot boot a stock guest kernel, so QEMU runs guests under TCG software emulation (much slower)`;
  }
  return undefined;
}
