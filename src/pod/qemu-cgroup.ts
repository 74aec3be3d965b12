// A pod's QEMU and the pod cgroup (docs/pod-cgroup.md): born there through the emulator wrapper
// where it can be (cgroup v1), and placed right after the start in every case (on v1 that finds
// it in its leaf already; on v2, and for a warm-pool VM a pod claims, it is the move).
import type { PodManager } from './manager.js';
import { birthDirs, canBeBornInPod, placeQemu, removeCreated, type Placement } from '../vm/pod-cgroup.js';

/** The <emulator> for a VM of a pod with this cgroup_parent: the wrapper, or libvirt's default (undefined). */
export function podEmulator(m: PodManager, cgroupParent: string | undefined): string | undefined {
  const w = m.deps.emulator;
  return w && canBeBornInPod(cgroupParent, m.deps.config.cgroupDriver) ? w.path : undefined;
}

/**
 * Starts the domain (through `start`) with its QEMU born in the pod cgroup when the domain runs
 * the wrapper, then places it: the Placement (dirs made included) or undefined without a
 * cgroup_parent. A failed start or placement removes what was made for it (a failed placement
 * destroys the VM first: its leaf cannot go while QEMU runs in it).
 */
export async function startInPodCgroup(m: PodManager, cgroupParent: string | undefined, domain: string, start: () => Promise<void>): Promise<Placement | undefined> {
  const driver = m.deps.config.cgroupDriver;
  const w = m.deps.emulator;
  // Its cgroup.procs is QEMU's user's: root (a VM with 9p shares) writes it all the same.
  const birth = w ? birthDirs(cgroupParent, driver, domain, m.qemuUser) : undefined;
  try {
    if (birth) await w!.expect(domain, birth.dirs);
    await start();
  } catch (err) {
    if (birth) removeCreated(birth.made);
    throw err;
  } finally {
    if (birth) await w!.done(domain);
  }
  try {
    const placed = placeQemu(cgroupParent, driver, m.deps.vm.qemuPid(domain), birth?.dirs);
    return placed && { ...placed, made: [...(birth?.made ?? []), ...placed.made] };
  } catch (err) {
    await m.deps.vm.destroy(domain).catch(() => undefined);
    if (birth) removeCreated(birth.made);
    throw err;
  }
}
