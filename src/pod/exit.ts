// The exit code and reason the kubelet sees for a VM that stopped, from libvirt's reason
// (src/vm/stop-reason.ts says where that comes from).

export interface ExitStatus {
  exitCode: number;
  reason: string;
  message: string;
}

/**
 * Exit code and reason (containerd's vocabulary: Completed for 0, Error otherwise):
 * the guest powering off → 0; destroyed (after the grace period, or by anyone) → 137;
 * QEMU crashing or failing → 1.
 */
export function exitStatus(libvirtReason: string | undefined, stopping: 'shutdown' | 'destroy' | undefined): ExitStatus {
  if (stopping === 'destroy' || libvirtReason === 'destroyed') {
    const by = stopping === 'destroy' ? 'vmlet destroyed the VM (grace period over or no grace period)' : 'the VM was destroyed outside vmlet';
    return { exitCode: 137, reason: 'Error', message: by };
  }
  if (libvirtReason === 'shutdown' || (stopping === 'shutdown' && libvirtReason === undefined)) {
    return { exitCode: 0, reason: 'Completed', message: stopping === 'shutdown' ? 'the guest powered off on ACPI shutdown' : 'the guest powered itself off' };
  }
  if (libvirtReason === 'crashed' || libvirtReason === 'failed') {
    return { exitCode: 1, reason: 'Error', message: `QEMU stopped unexpectedly (libvirt: ${libvirtReason})` };
  }
  return { exitCode: 1, reason: 'Error', message: `the VM stopped (libvirt: ${libvirtReason ?? 'reason unknown'})` };
}
