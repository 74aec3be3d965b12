// The checks a VM's settings must pass against the image and the node's files before anything is
// made for it (checkVmPrerequisites); buildVmSpec, after them, is pure.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmletError } from '../../src/errors.js';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { checkVmPrerequisites, type VmPrerequisites } from '../../src/vm/spec-checks.js';

const settings = (pod: Record<string, string> = {}) => parseVmSettings({ sandboxAnnotations: pod, containerAnnotations: {}, defaults: NODE_DEFAULTS });

async function refusal(input: VmPrerequisites): Promise<VmletError> {
  const err = await checkVmPrerequisites(input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VmletError);
  return err as VmletError;
}

describe('checkVmPrerequisites', () => {
  it('passes the defaults', async () => {
    await expect(checkVmPrerequisites({ settings: settings(), bootKind: 'disk', imageDiskBytes: 1 << 20 })).resolves.toBeUndefined();
  });

  it('uefi without OVMF on the node is FailedPrecondition naming the annotation and the missing files', async () => {
    const err = await refusal({ settings: settings({ 'vmlet.io/firmware': 'uefi' }), bootKind: 'disk', ovmf: { code: '/nonexistent/CODE.fd', varsTemplate: '/nonexistent/VARS.fd' } });
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe(`annotation vmlet.io/firmware="uefi" needs OVMF on the node (install Debian's ovmf package): missing /nonexistent/CODE.fd, /nonexistent/VARS.fd`);
  });

  it('uefi with OVMF present passes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmlet-ovmf-'));
    try {
      const ovmf = { code: join(dir, 'CODE.fd'), varsTemplate: join(dir, 'VARS.fd') };
      writeFileSync(ovmf.code, '');
      await expect(refusal({ settings: settings({ 'vmlet.io/firmware': 'uefi' }), bootKind: 'disk', ovmf }).then((e) => e.message)).resolves.toMatch(/missing .*VARS\.fd$/);
      writeFileSync(ovmf.varsTemplate, '');
      await expect(checkVmPrerequisites({ settings: settings({ 'vmlet.io/firmware': 'uefi' }), bootKind: 'disk', ovmf })).resolves.toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a root disk smaller than the image is InvalidArgument naming the annotation', async () => {
    const err = await refusal({ settings: settings({ VirtletRootVolumeSize: '1Mi' }), bootKind: 'disk', imageDiskBytes: 64 << 20 });
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe(`annotation VirtletRootVolumeSize: ${1 << 20} bytes is smaller than the image's disk (${64 << 20} bytes); the root disk can only grow`);
    await expect(checkVmPrerequisites({ settings: settings({ 'vmlet.io/root-disk-size': '64Mi' }), bootKind: 'disk', imageDiskBytes: 64 << 20 })).resolves.toBeUndefined();
  });

  it('microvm needs a kernel-boot image', async () => {
    const err = await refusal({ settings: settings({ 'vmlet.io/machine': 'microvm' }), bootKind: 'disk' });
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toMatch(/^annotation vmlet\.io\/machine="microvm" needs an image that boots a kernel directly/);
    await expect(checkVmPrerequisites({ settings: settings({ 'vmlet.io/machine': 'microvm' }), bootKind: 'kernel' })).resolves.toBeUndefined();
  });
});
