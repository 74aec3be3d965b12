// What must hold for a VM's settings before anything is made for it (disk, seed, domain): the
// checks against the image and the node's files, in one step that CreateContainer runs before
// buildVmSpec, which stays pure. The kinds and messages are those the checks always had.
import { access } from 'node:fs/promises';
import { failedPrecondition, invalidArgument } from '../errors.js';
import { annotationOf, checkMachineForBoot, type BootKind, type MachineSettings } from './annotations.js';
import { DEBIAN_OVMF, type OvmfPaths } from './spec.js';

export interface VmPrerequisites {
  settings: MachineSettings;
  bootKind: BootKind;
  /** The containerDisk's virtual size, for disk boot. */
  imageDiskBytes?: number;
  /** Defaults to Debian's OVMF, as in buildVmSpec. */
  ovmf?: OvmfPaths;
}

const exists = (path: string) => access(path).then(() => true, () => false);

export async function checkVmPrerequisites(input: VmPrerequisites): Promise<void> {
  const { settings: s } = input;
  checkMachineForBoot(s, input.bootKind);
  const want = s.rootDiskSizeBytes;
  if (want !== undefined && input.imageDiskBytes !== undefined && want < input.imageDiskBytes) {
    throw invalidArgument(`annotation ${annotationOf(s, 'rootDiskSize')}: ${want} bytes is smaller than the image's disk (${input.imageDiskBytes} bytes); the root disk can only grow`);
  }
  if (s.firmware === 'uefi') {
    const ovmf = input.ovmf ?? DEBIAN_OVMF;
    const paths = [ovmf.code, ovmf.varsTemplate];
    const present = await Promise.all(paths.map(exists));
    const missing = paths.filter((_, i) => !present[i]);
    if (missing.length) {
      throw failedPrecondition(`annotation ${annotationOf(s, 'firmware')}="uefi" needs OVMF on the node (install Debian's ovmf package): missing ${missing.join(', ')}`);
    }
  }
}
