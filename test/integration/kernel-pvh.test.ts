// Kernel-boot images that ship a bzImage (as distributions do) boot through PVH: the pull unpacks
// the ELF inside (src/image/kernel-pvh.ts) and the VM boots it, with no SeaBIOS and no
// decompression in the guest. Real registry, libvirtd, QEMU (TCG here), CNI, the test guest's
// Debian kernel; vmlet.io/pvh: "false" boots the bzImage itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestRegistry } from '../helpers/registry.js';
import { parseLogLines, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { podDiagnostics, runVmPod, startVmSuite, stopVmSuite, waitForConsoleLine } from '../helpers/vm-suite.js';
import { virsh } from '../helpers/virsh.js';
import { GUEST_DIR, READY_MARKER } from '../helpers/guest.js';
import { unpackPvhKernel } from '../../src/image/kernel-pvh.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const logDir = tempDir('vmlet-pvhlogs-');

beforeAll(async () => {
  ({ reg, v, refs: [image = ''] } = await startVmSuite([['kernelboot-bzimage', 'vmlet/kernelboot-bz:pvh']]));
});

afterAll(() => stopVmSuite(v, reg));

const logOf = (msg: string, key: string, value: string) =>
  parseLogLines(v.logLines).find((l) => l.msg === msg && l[key] === value);

/** Boots a pod of the image to its ready marker; the kernel its domain boots. */
async function bootedKernel(name: string, annotations: Record<string, string> = {}): Promise<string> {
  const pod = await runVmPod(v, { name, namespace: 'pvh-test', image, logDir, annotations });
  await waitForConsoleLine(pod.log, READY_MARKER, 100_000, () => podDiagnostics(v, pod));
  const domain = String(logOf('container created', 'containerId', pod.cid)?.domain);
  return /<kernel>([^<]+)<\/kernel>/.exec(virsh('dumpxml', domain))?.[1] ?? '';
}

describe('kernel-boot images with a bzImage', () => {
  it("unpacks Debian's bzImage to exactly the ELF the test guest's build extracts", async () => {
    const out = join(tempDir('vmlet-pvh-'), 'vmlinux');
    const r = await unpackPvhKernel(join(GUEST_DIR, 'vmlinuz'), out);
    expect(r).toMatchObject({ path: out, compression: 'xz' });
    expect(readFileSync(out).equals(readFileSync(join(GUEST_DIR, 'vmlinux')))).toBe(true);
  });

  it('the pull unpacks the ELF; the VM boots it through PVH to userspace', async () => {
    expect(logOf('image pulled', 'boot', 'kernel')).toMatchObject({ pvh: true });
    const kernel = await bootedKernel('pvh');
    expect(kernel).toMatch(/\/kernels\/[0-9a-f]{64}\/vmlinux$/);
    expect(readFileSync(kernel).readUInt32BE(0)).toBe(0x7f454c46);
  });

  it('vmlet.io/pvh: "false" boots the bzImage through the firmware', async () => {
    const kernel = await bootedKernel('bz', { 'vmlet.io/pvh': 'false' });
    expect(kernel).toMatch(/\/kernels\/[0-9a-f]{64}\/kernel$/);
    expect(readFileSync(kernel).toString('latin1', 0x202, 0x206)).toBe('HdrS');
  });
});
