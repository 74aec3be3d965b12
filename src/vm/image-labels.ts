// The image labels vmlet reads, parsed here only: image/boot.ts asks at pull time where the
// kernel and initrd are, and parseVmSettings (annotations.ts) takes the command line into the
// VM's settings at CreateContainer. Labels are the image author's, not the pod's: no annotation
// has these names, and none overrides them (vmlet.io/kernel-args appends to the command line).

export const LABEL = {
  /** Path of the kernel inside the image (default /boot/vmlinuz). */
  kernel: 'vmlet.io/kernel',
  /** Path of the initrd inside the image (default /boot/initrd.img). */
  initrd: 'vmlet.io/initrd',
  /** The kernel command line the image boots with. */
  cmdline: 'vmlet.io/cmdline',
} as const;

export interface ImageLabels {
  kernel?: string;
  initrd?: string;
  cmdline?: string;
}

export function parseImageLabels(labels: Record<string, string>): ImageLabels {
  const out: ImageLabels = {};
  for (const [field, name] of Object.entries(LABEL) as Array<[keyof ImageLabels, string]>) {
    const value = labels[name];
    if (value !== undefined) out[field] = value;
  }
  return out;
}
