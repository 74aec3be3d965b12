// Which firmware a sandboxed pod's VM starts (config podVmBios): qboot where the node has its ROM,
// else QEMU's SeaBIOS. serve.ts gives the answer to the pods; vmlet doctor reports it.
import { existsSync } from 'node:fs';
import type { PodVmBios } from '../config.js';
import { QBOOT_ROM } from '../vm/spec.js';

export interface PodVmBiosChoice {
  /** The ROM for -bios; absent: SeaBIOS. */
  rom?: string;
  /** Set when the config asked for qboot and the node has no ROM. */
  missing?: string;
}

export const NO_QBOOT_FIX = 'apt-get install qemu-system-data (it ships /usr/share/qemu/qboot.rom), or set podVmBios: seabios';

export function podVmBiosRom(want: PodVmBios, rom: string = QBOOT_ROM): PodVmBiosChoice {
  if (want === 'seabios') return {};
  return existsSync(rom) ? { rom } : { missing: rom };
}
