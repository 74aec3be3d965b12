// The one parser of a VM's settings beyond each annotation's values (annotations.test.ts,
// cloud-init.test.ts): the one precedence rule, what RunPodSandbox checks of a pod on its own,
// image labels, and the stored settings UpdateContainerResources resizes.
import { describe, expect, it } from 'vitest';
import { NODE_DEFAULTS, parsePodAnnotations, parseVmSettings, resizeSettings, type VmSettingsInput } from '../../src/vm/annotations.js';
import { parseImageLabels } from '../../src/vm/image-labels.js';
import { invalidArgumentFrom as rejection } from '../helpers/errors.js';

const GiB = 2 ** 30;
const settings = (input: Partial<VmSettingsInput>) => parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: {}, defaults: NODE_DEFAULTS, ...input });

describe('one precedence rule: the container before the pod, then the vmlet.io/ name before an alias', () => {
  it('a container alias beats a pod vmlet.io/ name, for every setting alike', () => {
    const s = settings({ sandboxAnnotations: { 'vmlet.io/vcpus': '2', 'vmlet.io/ssh-authorized-keys': 'ssh-ed25519 AAAA a' }, containerAnnotations: { VirtletVCPUCount: '3', VirtletSSHKeys: 'ssh-ed25519 BBBB b' } });
    expect(s).toMatchObject({ vcpus: 3, sources: { vcpus: 'container annotation VirtletVCPUCount', sshKeys: 'container annotation VirtletSSHKeys' } });
    expect(s.cloudInit.sshAuthorizedKeys).toEqual(['ssh-ed25519 BBBB b']);
  });
  it('within one set the vmlet.io/ name wins, and the losing alias is not read', () => {
    const s = settings({ containerAnnotations: { VirtletVCPUCount: 'junk', 'vmlet.io/vcpus': '4', VirtletSSHKeys: 'not a key', 'vmlet.io/ssh-authorized-keys': 'ssh-rsa AAAA c' } });
    expect(s).toMatchObject({ vcpus: 4, cloudInit: { sshAuthorizedKeys: ['ssh-rsa AAAA c'] } });
  });
  it('an annotation beats the resources, which beat the node default', () => {
    const res = { cpu_quota: '200000', cpu_period: '100000', memory_limit_in_bytes: String(GiB) };
    expect(settings({ containerResources: res, sandboxAnnotations: { 'vmlet.io/memory': '2Gi' } })).toMatchObject({
      vcpus: 2,
      memoryMiB: 2048,
      sources: { vcpus: 'container resources', memory: 'pod annotation vmlet.io/memory' },
    });
    expect(settings({})).toMatchObject({ vcpus: NODE_DEFAULTS.vcpus, memoryMiB: NODE_DEFAULTS.memoryMiB });
  });
});

describe('image labels', () => {
  it('are parsed in one place: kernel, initrd, command line', () => {
    expect(parseImageLabels({ 'vmlet.io/kernel': '/k', 'vmlet.io/initrd': '/i', 'vmlet.io/cmdline': 'console=ttyS0', other: 'x' })).toEqual({ kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0' });
    expect(parseImageLabels({})).toEqual({});
  });
  it("carry the image's command line into the settings, with its source", () => {
    const s = settings({ imageLabels: { 'vmlet.io/cmdline': 'console=ttyS0 quiet' } });
    expect(s).toMatchObject({ imageCmdline: 'console=ttyS0 quiet', sources: { imageCmdline: 'image label vmlet.io/cmdline' } });
    expect(settings({}).imageCmdline).toBeUndefined();
  });
});

describe('parsePodAnnotations (RunPodSandbox, before anything is made)', () => {
  it("gives the pod's network mode and kind", () => {
    expect(parsePodAnnotations({})).toEqual({ networkMode: 'both', podKind: 'auto' });
    expect(parsePodAnnotations({ 'vmlet.io/network-config': 'static', 'vmlet.io/vcpus': '2' })).toEqual({ networkMode: 'static', podKind: 'auto' });
    expect(parsePodAnnotations({ 'vmlet.io/pod-kind': 'sandboxed' }).podKind).toBe('sandboxed');
    expect(parsePodAnnotations({ 'vmlet.io/pod-kind': 'vm' }).podKind).toBe('vm');
  });
  it('refuses a bad value of any setting, an unknown name and bad cloud-init data, naming the annotation', () => {
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/vcpus': '0' })).message).toBe('annotation vmlet.io/vcpus="0" is invalid: allowed an integer 1–256');
    expect(rejection(() => parsePodAnnotations({ VirtletDiskDriver: 'sata' })).message).toBe('annotation VirtletDiskDriver="sata" is invalid: allowed virtio | scsi');
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/max-memory': '1Ki' })).message).toMatch(/^annotation vmlet\.io\/max-memory="1Ki" is invalid: allowed a Kubernetes quantity from 32Mi/);
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/vcpu': '2' })).message).toMatch(/^unknown pod annotation vmlet\.io\/vcpu: /);
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/user-data': '#cloud-config\nfoo: [unclosed\n' })).message).toMatch(/^annotation vmlet\.io\/user-data is not valid YAML/);
    expect(rejection(() => parsePodAnnotations({ VirtletSSHKeys: 'nope' })).message).toMatch(/^annotation VirtletSSHKeys line 1 is not an OpenSSH public key/);
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/network-config': 'off' })).message).toBe('annotation vmlet.io/network-config="off" is invalid: allowed both | static | dhcp');
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/pod-kind': 'container' })).message).toBe('annotation vmlet.io/pod-kind="container" is invalid: allowed auto | vm | sandboxed');
  });
  it('leaves to CreateContainer what the container or the image may still decide', () => {
    // Memory may come from the container's limit: a whole number of 1Gi pages, or not.
    expect(() => parsePodAnnotations({ 'vmlet.io/hugepages': '1Gi' })).not.toThrow();
    // The container's vCPUs may be more than the pod's annotation asks as a maximum… until it sets them.
    expect(() => parsePodAnnotations({ 'vmlet.io/max-vcpus': '2' })).not.toThrow();
    // microvm needs a kernel-boot image: the image comes with the container.
    expect(() => parsePodAnnotations({ 'vmlet.io/machine': 'microvm' })).not.toThrow();
  });
});

describe('resizeSettings (UpdateContainerResources)', () => {
  const create = { cpu_quota: '100000', cpu_period: '100000', memory_limit_in_bytes: String(GiB) };
  const grown = { cpu_quota: '300000', cpu_period: '100000', memory_limit_in_bytes: String(2 * GiB) };
  const resources = (containerResources: object | null, sandboxResources: object | null = null) => ({ containerResources, sandboxResources, defaults: NODE_DEFAULTS });

  it('follows the new resources when they set the size', () => {
    const stored = settings({ containerResources: create, sandboxAnnotations: { 'vmlet.io/max-vcpus': '4', 'vmlet.io/max-memory': '4Gi' } });
    expect(resizeSettings(stored, resources(grown))).toMatchObject({ vcpus: 3, memoryMiB: 2048, maxVcpus: 4, maxMemoryMiB: 4096, sources: { vcpus: 'container resources', memory: 'container resources' } });
    expect(resizeSettings(stored, resources(null, grown))).toMatchObject({ vcpus: 3, sources: { vcpus: 'sandbox resources' } });
    expect(resizeSettings(stored, resources(null))).toMatchObject({ vcpus: 1, memoryMiB: 512, sources: { vcpus: 'default', memory: 'default' } });
  });
  it('keeps what an annotation set', () => {
    const stored = settings({ containerResources: create, containerAnnotations: { VirtletVCPUCount: '2' } });
    expect(resizeSettings(stored, resources(grown))).toMatchObject({ vcpus: 2, memoryMiB: 2048, sources: { vcpus: 'container annotation VirtletVCPUCount' } });
  });
  it('refuses what CreateContainer would, with the same messages', () => {
    const stored = settings({ sandboxAnnotations: { 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1Gi' } });
    expect(resizeSettings(stored, resources(grown)).memoryMiB).toBe(1024);
    const paged = settings({ containerResources: create, sandboxAnnotations: { 'vmlet.io/hugepages': '1Gi' } });
    const half = { memory_limit_in_bytes: String(GiB / 2) };
    expect(rejection(() => resizeSettings(paged, resources(half))).message).toBe(rejection(() => settings({ containerResources: half, sandboxAnnotations: { 'vmlet.io/hugepages': '1Gi' } })).message);
    const huge = { cpu_quota: '30000000', cpu_period: '100000' };
    expect(rejection(() => resizeSettings(settings({}), resources(huge))).message).toMatch(/^container resources: CPU limit .* needs 300 vCPUs: allowed 1–256/);
  });
});
