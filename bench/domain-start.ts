// Benchmark (not a test): what libvirt's check of a started guest's CPU costs. vmlet's own domain
// XML for the kernel-boot test guest (renderDomainXml) is started through libvirt as rendered
// (its <qemu:capabilities> deletes cpu-unavailable-features: libvirt reads two CPU properties)
// and without that element (libvirt's default: one QMP qom-get per CPU property), interleaved,
// N rounds: the start call (virDomainCreate: QEMU launched, checked, resumed) and define → the
// guest's ready marker on its console.
//   npx tsx bench/domain-start.ts [N=5]
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { parseVmSettings } from '../src/vm/annotations.js';
import { buildVmSpec } from '../src/vm/spec.js';
import { renderDomainXml } from '../src/vm/domain-xml.js';
import { kernelGuest, READY_MARKER } from '../test/helpers/guest.js';
import { removeTempDirs, tempDir } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';

const runs = Number(process.argv[2] ?? 5);
if (!Number.isInteger(runs) || runs < 1) throw new Error('N must be a positive integer');

type Kind = 'vmlet' | 'libvirt-check';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
  const accel = decideAccel('auto', probeHost());
  const version = await lv.libvirtVersion();
  const g = kernelGuest();
  const dir = tempDir('vmlet-bench-domstart-');
  const settings = parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 256 } });
  const xmlOf = (name: string, kind: Kind): string => {
    const xml = renderDomainXml(
      buildVmSpec({
        name,
        domainType: accel.domainType,
        settings,
        boot: { kind: 'kernel', kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline },
        disks: [],
        consoleLog: join(dir, `${name}.log`),
        nvramPath: join(dir, `${name}.fd`),
        metadata: { v: 1, sandboxId: 'bench-domain-start', containerId: name },
      }),
    );
    if (kind === 'vmlet') return xml;
    const without = xml.replace(/<qemu:capabilities>[\s\S]*<\/qemu:capabilities>/, '');
    if (without === xml) throw new Error("vmlet's domain XML has no <qemu:capabilities> to take out");
    return without;
  };
  const start: Record<Kind, number[]> = { vmlet: [], 'libvirt-check': [] };
  const boot: Record<Kind, number[]> = { vmlet: [], 'libvirt-check': [] };
  try {
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first: a machine that drifts weighs on both alike.
      const order: Kind[] = i % 2 ? ['libvirt-check', 'vmlet'] : ['vmlet', 'libvirt-check'];
      for (const kind of order) {
        const name = `vmlet-bench-ds-${randomBytes(4).toString('hex')}`;
        const log = join(dir, `${name}.log`);
        try {
          const t0 = performance.now();
          await lv.defineDomain(xmlOf(name, kind));
          const t1 = performance.now();
          await lv.startDomain(name);
          start[kind].push(performance.now() - t1);
          await waitFor('ready marker', () => existsSync(log) && readFileSync(log, 'utf8').includes(READY_MARKER), { timeoutMs: 120_000, intervalMs: 10 });
          boot[kind].push(performance.now() - t0);
        } finally {
          await lv.destroyDomain(name).catch(() => undefined);
          await lv.undefineDomain(name).catch(() => undefined);
        }
      }
    }
  } finally {
    await lv.close();
    removeTempDirs();
  }
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' ');
  console.log(`domain start through libvirt ${version}, ${accel.accel}, kernel-boot test guest, ${runs} rounds, interleaved`);
  for (const kind of ['vmlet', 'libvirt-check'] as const) {
    const what = kind === 'vmlet' ? "vmlet's XML (cpu-unavailable-features deleted)" : "the same without <qemu:capabilities> (libvirt's check)";
    console.log(`  ${what}:`);
    console.log(`    start ${median(start[kind]).toFixed(0)} ms median  [${ms(start[kind])}]`);
    console.log(`    define → ready marker ${median(boot[kind]).toFixed(0)} ms median  [${ms(boot[kind])}]`);
  }
  console.log(`  start ratio vmlet / libvirt's check: ${(median(start.vmlet) / median(start['libvirt-check'])).toFixed(2)}; saved ${(median(start['libvirt-check']) - median(start.vmlet)).toFixed(0)} ms per start`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
