// qemu-img through execa (never a shell): probing image files.
import { execa } from 'execa';
import { QEMU_IMG, which } from '../util/binaries.js';

export interface DiskInfo {
  format: string;
  virtualSize: number;
  backingFile?: string;
  /** qcow2 external data file: like a backing file, a way to reach files outside the image. */
  dataFile?: string;
}

export async function qemuImgInfo(path: string): Promise<DiskInfo> {
  const { stdout } = await execa(which(QEMU_IMG) ?? QEMU_IMG, ['info', '--output=json', path], { timeout: 60_000 });
  const j = JSON.parse(stdout) as {
    format: string;
    'virtual-size': number;
    'backing-filename'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  return {
    format: j.format,
    virtualSize: j['virtual-size'],
    ...(j['backing-filename'] ? { backingFile: j['backing-filename'] } : {}),
    ...(j['format-specific']?.data?.['data-file'] ? { dataFile: j['format-specific'].data['data-file'] } : {}),
  };
}

/** A qcow2 overlay on a read-only base: the VM writes here, the base stays shared. */
export async function createOverlay(path: string, base: string, baseFormat: 'qcow2' | 'raw', sizeBytes?: number): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-b', base, '-F', baseFormat, path];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  await execa(which(QEMU_IMG) ?? QEMU_IMG, args, { timeout: 60_000 });
}
