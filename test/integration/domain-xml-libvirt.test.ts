// Real libvirt must accept every knob vmlet renders: each variant is validated against libvirt's
// schema (virt-xml-validate, when installed), defined, started (so QEMU itself checks the CPU
// model, machine and devices), destroyed and undefined. The q35 variant boots the test guest all
// the way to its ready marker (kernel boot, serial log); so does microvm on a KVM node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { DomainState, Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { parseVmSettings } from '../../src/vm/annotations.js';
import { buildVmSpec, DEBIAN_OVMF, type BuildVmSpecInput, type VmSpec } from '../../src/vm/spec.js';
import { readMetadata, renderDomainXml, stripNvram } from '../../src/vm/domain-xml.js';
import { validateDomainXml, virtXmlValidateMissing } from '../helpers/virt-xml-validate.js';
import { withoutQemuCapabilities } from '../helpers/domain-xml.js';
import { kernelGuest, READY_MARKER } from '../helpers/guest.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const accel = decideAccel('auto', probeHost());
const run = randomBytes(3).toString('hex');
const defined = new Set<string>();
const dir = tempDir('vmlet-domxml-');
chmodSync(dir, 0o755); // QEMU may run as another user on a real node

if (virtXmlValidateMissing) console.log(`${virtXmlValidateMissing}: schema validation skipped, libvirt define still checks`);
const hasOvmf = existsSync(DEBIAN_OVMF.code) && existsSync(DEBIAN_OVMF.varsTemplate);

/** Free pages of a size in the host pool, and whether hugetlbfs is mounted for libvirt to use. */
function freeHugepages(kib: number): number {
  try {
    const mounted = readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[2] === 'hugetlbfs');
    return mounted ? Number(readFileSync(`/sys/kernel/mm/hugepages/hugepages-${kib}kB/free_hugepages`, 'utf8').trim()) : 0;
  } catch {
    return 0;
  }
}

let qcow2 = '';
let raw = '';

beforeAll(() => {
  qcow2 = join(dir, 'root.qcow2');
  raw = join(dir, 'data.raw');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '64M']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', raw, '8M']);
});

/** Undefines a stopped domain; one with UEFI NVRAM is first redefined without it (see stripNvram). */
async function undefine(name: string): Promise<void> {
  const xml = await lv.domainXML(name);
  const stripped = stripNvram(xml); // libvirt's own XML, read with vmlet's reader
  if (stripped !== xml) await lv.defineDomain(stripped);
  await lv.undefineDomain(name);
}

afterAll(async () => {
  // Leave nothing behind even when an assertion failed half way.
  for (const name of defined) {
    await lv.destroyDomain(name).catch(() => undefined);
    await undefine(name).catch(() => undefined);
  }
  await lv.close();
});

/** Options for a variant: `tweak` edits the built spec, to render what buildVmSpec refuses on this node. */
interface Variant {
  start?: boolean;
  /** Checks on the running domain, before it is destroyed. */
  running?: (name: string) => void | Promise<void>;
  tweak?: (spec: VmSpec) => VmSpec;
  /** Edits the rendered XML (test-only QEMU arguments, or taking out what vmlet renders). */
  edit?: (xml: string) => string;
}

function render(variant: string, annotations: Record<string, string>, over: Partial<BuildVmSpecInput> = {}, { tweak = (s) => s, edit = (x) => x }: Variant = {}) {
  const name = `vmlet-test-xml-${variant}-${run}`;
  const settings = parseVmSettings({ sandboxAnnotations: annotations, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 256 } });
  const spec = buildVmSpec({
    name,
    domainType: accel.domainType,
    settings,
    boot: { kind: 'disk' },
    disks: [{ path: qcow2, format: 'qcow2' }],
    consoleLog: join(dir, `${variant}.console.log`),
    nvramPath: join(dir, `${variant}.nvram.fd`),
    metadata: { v: 1, sandboxId: `sandbox-${variant}`, containerId: `container-${variant}`, variant },
    ...over,
  });
  const tweaked = tweak(spec);
  return { name, spec: tweaked, xml: edit(renderDomainXml(tweaked)) };
}


/** Schema check, define, start (QEMU checks the rest), destroy, undefine. */
async function accept(variant: string, annotations: Record<string, string>, over: Partial<BuildVmSpecInput> = {}, opts: Variant = {}) {
  const { start = true, running } = opts;
  const { name, xml } = render(variant, annotations, over, opts);
  if (!virtXmlValidateMissing) validateDomainXml(name, xml);
  defined.add(name);
  try {
    await lv.defineDomain(xml);
  } catch (err) {
    throw new Error(`libvirt refused ${variant}: ${(err as Error).message}\n${xml}`);
  }
  const back = await lv.domainXML(name);
  expect(readMetadata(back)).toMatchObject({ v: 1, sandboxId: `sandbox-${variant}`, containerId: `container-${variant}`, variant });
  if (start) {
    try {
      await lv.startDomain(name);
    } catch (err) {
      throw new Error(`libvirt could not start ${variant}: ${(err as Error).message}\n${xml}`);
    }
    expect((await lv.domainInfo(name)).state).toBe(DomainState.RUNNING);
    await running?.(name);
    await lv.destroyDomain(name);
  }
  await undefine(name);
  defined.delete(name);
  await expect(lv.domainInfo(name)).rejects.toMatchObject({ kind: 'not-found' });
  return back;
}

describe(`domain XML accepted by libvirt (domain type ${accel.domainType})`, () => {
  it('q35, BIOS, virtio qcow2 root disk (the defaults)', async () => {
    const back = await accept('q35', {});
    expect(back).toMatch(/machine='pc-q35-/);
  });

  it('pc (i440fx)', async () => {
    expect(await accept('pc', { 'vmlet.io/machine': 'pc' })).toMatch(/machine='pc-i440fx-/);
  });

  it('vcpus, memory, and every CPU model mode', async () => {
    const back = await accept('cpu-pt', { 'vmlet.io/vcpus': '2', 'vmlet.io/memory': '300Mi' });
    expect(back).toContain("<vcpu placement='static'>2</vcpu>");
    expect(back).toContain("<memory unit='KiB'>307200</memory>");
    await accept('cpu-hm', { 'vmlet.io/cpu-model': 'host-model' });
    await accept('cpu-named', { 'vmlet.io/cpu-model': 'Nehalem' });
  });

  it.skipIf(!hasOvmf)('UEFI with Debian OVMF on q35 and pc; libvirt creates the NVRAM from the template', async () => {
    const back = await accept('uefi', { 'vmlet.io/firmware': 'uefi' });
    expect(back).toContain(DEBIAN_OVMF.code);
    expect(existsSync(join(dir, 'uefi.nvram.fd'))).toBe(true); // and it was undefined, NVRAM and all
    await accept('uefi-pc', { 'vmlet.io/firmware': 'uefi', 'vmlet.io/machine': 'pc' });
  });

  it('disk bus scsi (virtio-scsi controller) and sata, on q35 and pc, with a raw second disk', async () => {
    const disks = () => [{ path: qcow2, format: 'qcow2' as const }, { path: raw, format: 'raw' as const }];
    expect(await accept('scsi', { 'vmlet.io/disk-bus': 'scsi' }, { disks: disks() })).toContain("model='virtio-scsi'");
    await accept('sata', { 'vmlet.io/disk-bus': 'sata' }, { disks: disks() });
    await accept('sata-pc', { 'vmlet.io/disk-bus': 'sata', 'vmlet.io/machine': 'pc' }, { disks: disks() });
    await accept('scsi-pc', { 'vmlet.io/disk-bus': 'scsi', 'vmlet.io/machine': 'pc' }, { disks: disks() });
  });

  it('read-only disks on virtio and scsi, and on sata (as a CD-ROM)', async () => {
    const disks = [{ path: qcow2, format: 'qcow2' as const }, { path: raw, format: 'raw' as const, readonly: true }];
    await accept('ro-virtio', {}, { disks });
    await accept('ro-scsi', { 'vmlet.io/disk-bus': 'scsi' }, { disks });
    await accept('ro-sata', { 'vmlet.io/disk-bus': 'sata' }, { disks });
  });

  it('io threads on virtio disks and on the virtio-scsi controller', async () => {
    const disks = [{ path: qcow2, format: 'qcow2' as const }, { path: raw, format: 'raw' as const }];
    expect(await accept('iothreads', { 'vmlet.io/io-threads': '2' }, { disks })).toContain('<iothreads>2</iothreads>');
    await accept('iothreads-scsi', { 'vmlet.io/io-threads': '1', 'vmlet.io/disk-bus': 'scsi' }, { disks });
  });

  it('serial log on and off', async () => {
    expect(await accept('log-on', {})).toContain("append='on'");
    const off = await accept('log-off', { 'vmlet.io/serial-log': 'false' }, { consoleLog: undefined });
    expect(off).not.toContain('<log ');
  });

  it('kernel boot, with a disk attached', async () => {
    const g = kernelGuest();
    const boot = { kind: 'kernel' as const, kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline };
    expect(await accept('kernel', { 'vmlet.io/kernel-args': 'vmlet.test=1' }, { boot })).toContain(`<cmdline>${g.cmdline} vmlet.test=1</cmdline>`);
  });

  it.each(['q35', 'pc'])('a NIC on %s: QEMU gets no option ROM for it (romfile empty: no iPXE to run at every boot)', async (machine) => {
    const nics = [{ tap: `vmt-${randomBytes(5).toString('hex')}`, mac: '02:00:00:12:34:56', mtu: 1400 }];
    const running = (name: string) => {
      const pid = Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
      const nicArg = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').find((a) => a.includes('virtio-net-pci'));
      expect(nicArg, 'the virtio-net-pci -device argument').toBeDefined();
      expect(nicArg).toMatch(/"romfile":""|romfile=(,|$)/);
    };
    await accept(`nic-${machine}`, { 'vmlet.io/machine': machine }, { nics }, { running });
  });

  it("libvirt checks a started guest's CPU with a few QMP reads, not one per CPU property (cpu-unavailable-features deleted)", async () => {
    // QEMU traces every QMP command it is sent into the domain's log (test-only arguments); the
    // same domain without vmlet's <qemu:capabilities> shows what the element saves.
    const traced = (x: string) => x.replace('</domain>', "<qemu:commandline><qemu:arg value='-trace'/><qemu:arg value='handle_qmp_command'/></qemu:commandline></domain>");
    const withoutCaps = (x: string) => {
      const out = withoutQemuCapabilities(x);
      expect(out).not.toContain('cpu-unavailable-features');
      return out;
    };
    const qomGets: Record<string, number> = {};
    const count = (variant: string) => async (name: string) => {
      const log = `/var/log/libvirt/qemu/${name}.log`;
      // "cont" is the last command of libvirt's start; virtlogd may write it a moment after.
      await waitFor(`QEMU's trace of libvirt's "cont" in ${log}`, () => existsSync(log) && readFileSync(log, 'utf8').includes('"execute": "cont"'), { timeoutMs: 10_000, intervalMs: 20 });
      qomGets[variant] = readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('handle_qmp_command mon') && l.includes('"execute": "qom-get"')).length;
    };
    await accept('cpucheck', {}, {}, { edit: traced, running: count('vmlet') });
    await accept('cpucheck-libvirt', {}, {}, { edit: (x) => traced(withoutCaps(x)), running: count('libvirt') });
    expect(qomGets.vmlet, "qom-gets of vmlet's domain").toBeLessThanOrEqual(4);
    expect(qomGets.libvirt, "qom-gets of libvirt's own check").toBeGreaterThan(50);
  });

  it.skipIf(accel.domainType === 'kvm')('the cheaper check still refuses a started guest missing a CPU feature its XML requires (TCG has no vmx)', async () => {
    const { name, xml } = render('cpucheck-full', {});
    const full = `<cpu mode="custom" match="exact" check="full"><model fallback="forbid">qemu64</model><feature policy="require" name="vmx"/></cpu>`;
    const edited = xml.replace(/<cpu [^>]*\/>|<cpu [\s\S]*?<\/cpu>/, full);
    expect(edited).toContain(full);
    expect(edited).toContain('cpu-unavailable-features');
    defined.add(name);
    await lv.defineDomain(edited);
    await expect(lv.startDomain(name)).rejects.toThrow(/missing features: vmx/);
    await undefine(name);
    defined.delete(name);
  });

  it('microvm: libvirt 9.0 and QEMU 7.2 accept and start it (virtio-mmio devices, no USB controller)', async () => {
    const g = kernelGuest();
    const boot = { kind: 'kernel' as const, kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline };
    // Under TCG buildVmSpec refuses microvm (see the next test), so the XML is rendered from a q35 spec switched over.
    const tweak = accel.domainType === 'kvm' ? undefined : (s: VmSpec): VmSpec => ({ ...s, machine: 'microvm' });
    const annotations: Record<string, string> = accel.domainType === 'kvm' ? { 'vmlet.io/machine': 'microvm' } : {};
    expect(await accept('microvm', annotations, { boot }, { tweak })).toMatch(/machine='microvm'[\s\S]*<address type='virtio-mmio'/);
    if (accel.domainType === 'kvm') await accept('microvm-iothreads', { 'vmlet.io/machine': 'microvm', 'vmlet.io/io-threads': '1' }, { boot });
  });

  it.skipIf(accel.domainType === 'kvm')('microvm under TCG is refused up front (clock calibration hangs some boots; io threads cannot start)', () => {
    const g = kernelGuest();
    const boot = { kind: 'kernel' as const, kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline };
    expect(() => render('microvm-tcg', { 'vmlet.io/machine': 'microvm' }, { boot })).toThrow(/vmlet\.io\/machine="microvm" needs KVM, and this node runs guests under TCG/);
  });

  it('hugepages: libvirt accepts the XML; starting needs host hugepages', async (ctx) => {
    await accept('hp-2m', { 'vmlet.io/hugepages': '2Mi' }, {}, { start: false });
    await accept('hp-1g', { 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1Gi' }, {}, { start: false });
    if (freeHugepages(2048) < 128) {
      console.log('hugepages: host has fewer than 128 free 2 MiB pages or no hugetlbfs mount: start not tested');
      ctx.skip();
    }
    await accept('hp-2m-run', { 'vmlet.io/hugepages': '2Mi' });
  });
});

describe('booting the test guest from vmlet-rendered XML', () => {
  for (const machine of ['q35', 'microvm'] as const) {
    const skip = machine === 'microvm' && accel.domainType !== 'kvm';
    it.skipIf(skip)(`${machine}: kernel boot reaches ${READY_MARKER} in the serial log`, async () => {
      const g = kernelGuest();
      const { name, xml, spec } = render(`boot-${machine}`, { 'vmlet.io/machine': machine }, {
        boot: { kind: 'kernel', kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline },
        disks: [{ path: qcow2, format: 'qcow2' }],
      });
      const log = spec.serialLog!.file;
      defined.add(name);
      await lv.defineDomain(xml);
      const t0 = performance.now();
      await lv.startDomain(name);
      await waitFor(`${READY_MARKER} in ${log}`, () => existsSync(log) && readFileSync(log, 'utf8').includes(READY_MARKER), { timeoutMs: 90_000, intervalMs: 50 });
      console.log(`${machine} kernel boot to ${READY_MARKER} under ${accel.accel}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      const info = await lv.domainInfo(name);
      expect(info).toMatchObject({ state: DomainState.RUNNING, vcpus: 1, maxMemKiB: 256 * 1024 });
      expect(readMetadata(await lv.domainXML(name))).toEqual(spec.metadata);
      await lv.destroyDomain(name);
      await lv.undefineDomain(name);
      defined.delete(name);
      await expect(lv.domainInfo(name)).rejects.toMatchObject({ kind: 'not-found' });
    });
  }
});
