// Test support: VmSpecs for the domain XML tests, built the way container-create builds them
// (annotations parsed, then buildVmSpec), with paths that need not exist.
import { parseVmSettings } from '../../src/vm/annotations.js';
import { buildVmSpec, type BuildVmSpecInput, type VmMetadata, type VmSpec } from '../../src/vm/spec.js';
import { renderDomainXml } from '../../src/vm/domain-xml.js';

export const metadata: VmMetadata = { v: 1, sandboxId: 'ab12cd34ef', containerId: 'ff00ee11', pod: { name: 'web', namespace: 'default' } };

export function spec(annotations: Record<string, string> = {}, over: Partial<BuildVmSpecInput> = {}): VmSpec {
  const settings = parseVmSettings({ sandboxAnnotations: annotations, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 512 } });
  return buildVmSpec({
    name: 'vmlet-default-web-ab12cd34',
    domainType: 'qemu',
    settings,
    boot: { kind: 'disk' },
    disks: [{ path: '/var/lib/vmlet/c/root.qcow2', format: 'qcow2' }],
    consoleLog: '/var/lib/vmlet/s/console.log',
    nvramPath: '/var/lib/vmlet/c/nvram.fd',
    metadata,
    ...over,
  });
}

export const xml = (annotations: Record<string, string> = {}, over: Partial<BuildVmSpecInput> = {}) => renderDomainXml(spec(annotations, over));
export const kernelBoot = { kind: 'kernel', kernel: '/k/vmlinux', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet' } as const;
