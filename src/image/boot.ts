// Decides how a pulled image boots and puts its boot files in place, once per image:
//  containerDisk: exactly one file under /disk/ → disks/<id>.qcow2|.raw (read-only base)
//  kernel boot:   a kernel (+ initrd) at /boot/vmlinuz, /boot/initrd.img or the vmlet.io/* labels
//                 (read by vm/image-labels.ts, the one parser of image labels); a bzImage's ELF
//                 is unpacked beside it for PVH boot (kernel-pvh.ts)
//  rootfs:        anything else (booting it comes later).
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { VmletError } from '../errors.js';
import type { BootInfo } from './image-index.js';
import { probeDisk, qemuImgInfo, type DiskInfo } from './qemu-img.js';
import { scanLayers, type LayerRef, type ScanLimits, type ScanResult } from './layer-scan.js';
import { resolveWithin } from './users.js';
import { LABEL, parseImageLabels } from '../vm/image-labels.js';
import { unpackPvhKernel } from './kernel-pvh.js';

const DEFAULT_KERNEL = 'boot/vmlinuz';
const DEFAULT_INITRD = 'boot/initrd.img';

const inImage = (p: string) => p.replace(/^\/+/, '');

export interface BootPaths {
  disks: string;
  kernels: string;
  tmp: string;
  /** Also build the image's EROFS rootfs in this empty dir, in the scan's read of the layers (erofs-scan.ts). */
  rootfs?: string;
}

/**
 * The image's boot, from a scan of its layers. With `paths.rootfs`, `rootfsBuilt` settles when
 * the rootfs built there is complete (a rootfs image) or failed; for any other kind of image, or
 * a failure, that build has ended before this returns or throws: its dir can go.
 */
export async function prepareBoot(
  imageId: string,
  layers: LayerRef[],
  labels: Record<string, string>,
  paths: BootPaths,
  limits: ScanLimits,
): Promise<{ boot: BootInfo; rootfsBuilt?: Promise<void> }> {
  const label = parseImageLabels(labels);
  const kernelPath = inImage(label.kernel ?? DEFAULT_KERNEL);
  const initrdPath = inImage(label.initrd ?? DEFAULT_INITRD);
  // Keep files from the kernel/initrd directories (a symlink there may point at a versioned name).
  const dirs = [...new Set(['boot', posix.dirname(kernelPath), posix.dirname(initrdPath)])].filter((d) => d !== '.');
  const scan = await scanLayers(layers, { prefixes: ['disk/'], dirs }, paths.tmp, limits, paths.rootfs);
  try {
    const boot = await bootOf(imageId, scan, label, { kernelPath, initrdPath }, paths);
    if (boot.kind === 'rootfs' && scan.built) return { boot, rootfsBuilt: scan.built };
    await scan.built?.catch(() => undefined);
    return { boot };
  } catch (err) {
    await scan.built?.catch(() => undefined);
    throw err;
  } finally {
    for (const tmp of scan.files.values()) await rm(tmp, { force: true });
  }
}

async function bootOf(imageId: string, scan: ScanResult, label: ReturnType<typeof parseImageLabels>, at: { kernelPath: string; initrdPath: string }, paths: BootPaths): Promise<BootInfo> {
  const { kernelPath, initrdPath } = at;
  const hex = imageId.slice('sha256:'.length);
  if (scan.diskFiles.length > 1) {
    throw new VmletError('invalid-argument', `containerDisk image ${imageId} has ${scan.diskFiles.length} files under /disk/ (${scan.diskFiles.join(', ')}); exactly one is allowed`);
  }
  if (scan.diskFiles.length === 1) {
    const src = scan.files.get(scan.diskFiles[0]!)!;
    const info = await inspectContainerDisk(src, `${scan.diskFiles[0]} in ${imageId}`);
    await mkdir(paths.disks, { recursive: true });
    const dest = join(paths.disks, `${hex}.${info.format}`);
    await chmod(src, 0o444);
    await rename(src, dest);
    return { kind: 'containerdisk', disk: { path: dest, format: info.format, virtualSize: info.virtualSize } };
  }
  const kernel = await keptFile(kernelPath, scan);
  const initrd = await keptFile(initrdPath, scan);
  const labelled = label.kernel !== undefined;
  if (kernel && (initrd || labelled)) {
    if (label.initrd !== undefined && !initrd) {
      throw new VmletError('invalid-argument', `image ${imageId}: label ${LABEL.initrd} names ${label.initrd}, which the image does not contain`);
    }
    const dir = join(paths.kernels, hex);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await rename(kernel, join(dir, 'kernel'));
    if (initrd) await rename(initrd, join(dir, 'initrd'));
    const cmdline = label.cmdline;
    const pvh = await unpackPvhKernel(join(dir, 'kernel'), join(dir, 'vmlinux'));
    return {
      kind: 'kernel',
      kernel: {
        kernel: join(dir, 'kernel'),
        ...(initrd ? { initrd: join(dir, 'initrd') } : {}),
        ...(cmdline ? { cmdline } : {}),
        ...('path' in pvh ? { pvh: pvh.path } : { pvhNot: pvh.not }),
      },
    };
  }
  if (labelled) throw new VmletError('invalid-argument', `image ${imageId}: label ${LABEL.kernel} names ${label.kernel}, which the image does not contain`);
  return { kind: 'rootfs' };
}

/**
 * The format and size of a containerDisk, refusing what vmlet does not boot: formats other than
 * qcow2 and raw, and a qcow2 naming a backing or external data file (a json: or host path there
 * would let the guest read host files). The header is read by vmlet before qemu-img opens the
 * file; qemu-img's answer is checked again. `name` says which disk in which image.
 */
export async function inspectContainerDisk(path: string, name: string): Promise<DiskInfo & { format: 'qcow2' | 'raw' }> {
  const refuseExternal = (file: string) =>
    new VmletError('invalid-argument', `containerDisk ${name} refers to ${file}; a containerDisk must be self-contained (no backing or data file)`);
  const probe = await probeDisk(path);
  if (probe.format !== 'qcow2' && probe.format !== 'raw') throw new VmletError('invalid-argument', `containerDisk ${name} is ${probe.format}; qcow2 or raw is allowed`);
  const external = probe.backingFile ?? probe.dataFile;
  if (external !== undefined) throw refuseExternal(external);
  const info = await qemuImgInfo(path, probe.format);
  if (info.backingFile || info.dataFile) throw refuseExternal((info.backingFile ?? info.dataFile)!);
  return { ...info, format: probe.format };
}

/**
 * The temp file the scan kept for in-image `path`, its symlinks followed inside the image (users.ts
 * resolveWithin, as for a tree on disk or an EROFS tree): the scan knows its symlinks and kept
 * files; every other path on the way is taken for a directory.
 */
export async function keptFile(path: string, scan: Pick<ScanResult, 'files' | 'symlinks'>): Promise<string | undefined> {
  const real = await resolveWithin<string>('', path, (dir, name) => {
    const p = dir === '' ? name : `${dir}/${name}`;
    const target = scan.symlinks.get(p);
    return target !== undefined ? { node: p, target, dir: false } : { node: p, dir: !scan.files.has(p) };
  });
  return real === undefined ? undefined : scan.files.get(real);
}
