// Why a VM stopped, and the exit code and reason the kubelet sees. The libvirt binding has no
// domain events or state reasons, but libvirtd ends each run's log (/var/log/libvirt/qemu/
// <name>.log) with "shutting down, reason=<shutdown|destroyed|crashed|failed|…>".
import { open } from 'node:fs/promises';
import { join } from 'node:path';

export const QEMU_LOG_DIR = '/var/log/libvirt/qemu';

export async function lastShutdownReason(domainName: string, logDir = QEMU_LOG_DIR): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(join(logDir, `${domainName}.log`), 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const all = [...buf.toString('utf8').matchAll(/shutting down, reason=([a-z-]+)/g)];
    return all.at(-1)?.[1];
  } finally {
    await fh.close();
  }
}

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
