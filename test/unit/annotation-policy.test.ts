import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.js';
import { VmletError } from '../../src/errors.js';
import { NODE_DEFAULTS, parseVmSettings, type ResourceLimits } from '../../src/vm/annotations.js';
import { checkContainerAnnotations, checkPodAnnotations, givenByResources } from '../../src/vm/annotation-policy.js';
import { tempDir } from '../helpers/vmlet.js';

type Allowed = Record<string, string[]>;
const GiB = 1024 ** 3;
const mem = (bytes: number): ResourceLimits => ({ memory_limit_in_bytes: String(bytes) });
const cpus = (n: number): ResourceLimits => ({ cpu_quota: String(n * 100_000), cpu_period: '100000' });

function pod(annotations: Record<string, string>, allowed: Allowed = {}, sandboxResources: ResourceLimits | null = null, handler = 'vmlet'): void {
  checkPodAnnotations({ allowed, handler, annotations, sandboxResources });
}

function container(annotations: Record<string, string>, o: { allowed?: Allowed; podAnnotations?: Record<string, string>; containerResources?: ResourceLimits; sandboxResources?: ResourceLimits } = {}): void {
  checkContainerAnnotations({
    allowed: o.allowed ?? {},
    handler: 'vmlet',
    podAnnotations: o.podAnnotations ?? {},
    containerAnnotations: annotations,
    containerResources: o.containerResources,
    sandboxResources: o.sandboxResources,
  });
}

/** The refusal's message; fails unless it is InvalidArgument. */
function refusal(f: () => void): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(VmletError);
    expect((err as VmletError).kind).toBe('invalid-argument');
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
}

const GATED: Array<[string, string]> = [
  ['vmlet.io/hugepages', '2Mi'],
  ['vmlet.io/cpu-model', 'host-model'],
  ['vmlet.io/machine', 'pc'],
  ['vmlet.io/io-threads', '2'],
  ['vmlet.io/vnc', 'true'],
];

describe('annotation policy: the default refuses what takes host resources', () => {
  it.each(GATED)('refuses pod annotation %s by default, naming it and the config key', (key, value) => {
    const msg = refusal(() => pod({ [key]: value }));
    expect(msg).toContain(`pod annotation ${key} is not allowed for runtime handler "vmlet"`);
    expect(msg).toContain(`allowedAnnotations.vmlet: ["${key}"]`);
  });

  it.each(GATED)('refuses container annotation %s at CreateContainer', (key, value) => {
    expect(refusal(() => container({ [key]: value }))).toContain(`container annotation ${key} is not allowed`);
  });

  it('refuses a Virtlet alias under its vmlet.io/ name, and its allowance is the vmlet.io/ one', () => {
    const msg = refusal(() => pod({ VirtletCPUModel: 'host-model' }));
    expect(msg).toContain('pod annotation VirtletCPUModel (vmlet.io/cpu-model) is not allowed');
    expect(msg).toContain('allowedAnnotations.vmlet: ["vmlet.io/cpu-model"]');
    pod({ VirtletCPUModel: 'host-model' }, { vmlet: ['vmlet.io/cpu-model'] });
    pod({ VirtletCPUModel: 'host-model' }, { vmlet: ['VirtletCPUModel'] });
  });

  it('refuses vCPUs and memory above what the resources give, and says from where', () => {
    expect(refusal(() => pod({ 'vmlet.io/vcpus': '2' }))).toMatch(/pod annotation vmlet\.io\/vcpus is not allowed .*"2" is 2 vCPUs, above the 1 vCPUs of the node default \(no CPU limit\).*allowedAnnotations\.vmlet: \["vmlet\.io\/vcpus"\]/);
    expect(refusal(() => pod({ 'vmlet.io/memory': '1Gi' }))).toMatch(/"1Gi" is 1024 MiB, above the 512 MiB of the node default \(no memory limit\)/);
    expect(refusal(() => pod({ 'vmlet.io/max-memory': '1Gi' }, {}, mem(GiB / 2)))).toMatch(/vmlet\.io\/max-memory .*above the 512 MiB of the pod's memory limit/);
    expect(refusal(() => pod({ VirtletVCPUCount: '4' }, {}, cpus(2)))).toMatch(/pod annotation VirtletVCPUCount \(vmlet\.io\/vcpus\) .*above the 2 vCPUs of the pod's CPU limit/);
    expect(refusal(() => container({ 'vmlet.io/memory': '2Gi' }, { containerResources: mem(GiB), sandboxResources: mem(4 * GiB) }))).toMatch(/container annotation vmlet\.io\/memory .*above the 1024 MiB of the container's memory limit/);
  });

  it("judges the pod's vCPUs and memory again at CreateContainer, against the container's limits", () => {
    pod({ 'vmlet.io/memory': '2Gi' }, {}, mem(4 * GiB));
    expect(refusal(() => container({}, { podAnnotations: { 'vmlet.io/memory': '2Gi' }, containerResources: mem(GiB), sandboxResources: mem(4 * GiB) }))).toContain('pod annotation vmlet.io/memory is not allowed');
  });

  it('allows vCPUs and memory up to the resources (lowering is always allowed)', () => {
    pod({ 'vmlet.io/vcpus': '1', 'vmlet.io/memory': '256Mi', 'vmlet.io/max-memory': '512Mi' });
    pod({ 'vmlet.io/vcpus': '2', 'vmlet.io/memory': '1Gi', 'vmlet.io/max-memory': '1Gi' }, {}, { ...cpus(2), ...mem(GiB) });
    container({ 'vmlet.io/vcpus': '2', 'vmlet.io/memory': '1536Mi' }, { containerResources: { cpu_quota: '150000', cpu_period: '100000', ...mem(1.5 * GiB) } });
    // Only the winning annotation is read: the container's lower value wins over the pod's.
    container({ 'vmlet.io/memory': '256Mi' }, { podAnnotations: { 'vmlet.io/memory': '8Gi' } });
  });

  it('allows what the operator allows: names, globs, *, per handler', () => {
    const all = { 'vmlet.io/hugepages': '2Mi', 'vmlet.io/cpu-model': 'Nehalem', 'vmlet.io/machine': 'pc', 'vmlet.io/io-threads': '1', 'vmlet.io/vcpus': '64', 'vmlet.io/memory': '64Gi', 'vmlet.io/max-memory': '128Gi' };
    pod(all, { vmlet: ['*'] });
    pod(all, { vmlet: ['vmlet.io/*'] });
    pod({ 'vmlet.io/max-memory': '4Gi', 'vmlet.io/memory': '128Mi' }, { vmlet: ['vmlet.io/max-*'] });
    pod({ 'vmlet.io/hugepages': '2Mi' }, { vmlet: ['vmlet.io/hugepages'] });
    container(all, { allowed: { vmlet: ['*'] } });
    // Another handler's allowance is not this one's.
    expect(refusal(() => pod({ 'vmlet.io/hugepages': '2Mi' }, { 'vmlet-big': ['*'] }))).toContain('allowedAnnotations.vmlet:');
    pod({ 'vmlet.io/hugepages': '2Mi' }, { 'vmlet-big': ['*'] }, null, 'vmlet-big');
    expect(refusal(() => pod({ 'vmlet.io/hugepages': '2Mi', 'vmlet.io/machine': 'pc' }, { vmlet: ['vmlet.io/hugepages'] }))).toContain('vmlet.io/machine');
    // A prefix that is not the name does not match.
    expect(refusal(() => pod({ 'vmlet.io/hugepages': '2Mi' }, { vmlet: ['vmlet.io/huge'] }))).toContain('vmlet.io/hugepages');
  });

  it('lets the harmless annotations through by default', () => {
    const harmless = {
      'vmlet.io/user-data': '#cloud-config\n{}',
      'vmlet.io/meta-data': 'instance-id: x',
      'vmlet.io/network-config': 'version: 2',
      'vmlet.io/ssh-authorized-keys': 'ssh-ed25519 AAAA test',
      'vmlet.io/disk-bus': 'sata',
      'vmlet.io/root-disk-size': '64Gi',
      'vmlet.io/root-device': '/dev/xvda',
      'vmlet.io/firmware': 'uefi',
      'vmlet.io/kernel-args': 'console=ttyS0',
      'vmlet.io/serial-log': 'false',
      'vmlet.io/max-vcpus': '64',
      'vmlet.io/pod-kind': 'vm',
      VirtletDiskDriver: 'scsi',
      VirtletRootVolumeSize: '10Gi',
      'example.com/anything': 'x',
    };
    pod(harmless);
    container(harmless);
  });

  it('gives the same vCPUs and memory as parseVmSettings does without annotations', () => {
    const cases: Array<[ResourceLimits | null, ResourceLimits | null]> = [
      [null, null],
      [{ cpu_quota: '50000', cpu_period: '100000' }, null],
      [{ cpu_quota: '250000' }, { cpu_quota: '800000', ...mem(8 * GiB) }],
      [mem(GiB + 1), cpus(4)],
      [{ cpu_quota: '-1', memory_limit_in_bytes: '0' }, { ...cpus(3), ...mem(3 * GiB) }],
      [{ cpu_quota: 'junk', memory_limit_in_bytes: 268435456 }, null],
    ];
    for (const [containerResources, sandboxResources] of cases) {
      const r = { containerResources, sandboxResources, defaults: NODE_DEFAULTS };
      const s = parseVmSettings({ ...r, sandboxAnnotations: {}, containerAnnotations: {} });
      expect(givenByResources(r), JSON.stringify(r)).toMatchObject({ vcpus: s.vcpus, memoryMiB: s.memoryMiB });
    }
  });
});

describe('config allowedAnnotations', () => {
  const load = (text: string) => {
    const p = join(tempDir('vmlet-config-'), 'config.yaml');
    writeFileSync(p, text);
    return loadConfig({ env: {}, flags: { config: p } }).config;
  };

  it('is empty by default and reads a list per handler', () => {
    expect(load('').allowedAnnotations).toEqual({});
    expect(load('handlers: [vmlet, vmlet-big]\nallowedAnnotations:\n  vmlet-big: ["vmlet.io/*"]\n  vmlet: [vmlet.io/hugepages]\n').allowedAnnotations).toEqual({ 'vmlet-big': ['vmlet.io/*'], vmlet: ['vmlet.io/hugepages'] });
  });

  it('refuses a handler vmlet does not serve, a * inside a name, and a non-list', () => {
    expect(() => load('allowedAnnotations:\n  vmlett: ["*"]\n')).toThrow(new ConfigError('config "allowedAnnotations.vmlett": "vmlett" is not one of vmlet\'s handlers (vmlet)'));
    expect(() => load('allowedAnnotations:\n  vmlet: ["vmlet.io/*-memory"]\n')).toThrow(/may have a \* only at its end/);
    expect(() => load('allowedAnnotations:\n  vmlet: "*"\n')).toThrow(/allowedAnnotations\.vmlet" must be a list of non-empty strings/);
    expect(() => load('allowedAnnotations: ["*"]\n')).toThrow(/must map a runtime handler to a list/);
  });
});
