// A VM-image pod's persistent root disk (annotation vmlet.io/root-device): a block PVC the VM
// boots from instead of a throwaway overlay, so its data outlives the pod. The image is copied
// onto the device once, when the device is blank (its first MiB all zeros: no partition table,
// no filesystem); a device with anything on it is booted as it is, never written by vmlet.
import { open } from 'node:fs/promises';
import { execa } from 'execa';
import { failedPrecondition } from '../errors.js';
import { QEMU_IMG, which } from '../util/binaries.js';

const PROBE_BYTES = 1 << 20;

/** Size of a block device in bytes (the size lseek reports at its end). */
export async function deviceBytes(path: string): Promise<number> {
  const { stdout } = await execa('blockdev', ['--getsize64', path], { timeout: 30_000 });
  return Number(stdout.trim());
}

/** True when the device's first MiB (or all of it, if smaller) is zeros. */
export async function isBlank(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(PROBE_BYTES);
    const { bytesRead } = await fh.read(buf, 0, PROBE_BYTES, 0);
    return buf.subarray(0, bytesRead).every((b) => b === 0);
  } finally {
    await fh.close();
  }
}

/**
 * Copies the image onto the device when it is blank; returns whether it did. A kernel-boot image
 * has no disk: the device is then the VM's first disk as it is.
 */
export async function prepareRootDevice(device: string, containerPath: string, image: { path: string; format: 'qcow2' | 'raw'; virtualSize: number } | undefined): Promise<boolean> {
  if (!image || !(await isBlank(device))) return false;
  const size = await deviceBytes(device);
  if (image.virtualSize > size) {
    throw failedPrecondition(`device ${JSON.stringify(containerPath)} (the root device) holds ${size} bytes and the image's disk is ${image.virtualSize} bytes: allowed a block volume at least as big as the image`);
  }
  // -n: the target exists (a device cannot be created); raw: the device is the disk itself.
  await execa(which(QEMU_IMG) ?? QEMU_IMG, ['convert', '-n', '-f', image.format, '-O', 'raw', image.path, device], { timeout: 30 * 60_000 });
  return true;
}
