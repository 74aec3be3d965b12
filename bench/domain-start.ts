// Benchmark (not a test): what libvirt's check of a started guest's CPU costs. vmlet's own domain
// XML for the kernel-boot test guest (renderDomainXml) is started through libvirt as rendered
// (its <qemu:capabilities> deletes cpu-unavailable-features: libvirt reads two CPU properties)
// and without that element (libvirt's default: one QMP qom-get per CPU property), interleaved,
// N rounds: the start call (virDomainCreate: QEMU launched, checked, resumed) and define → the
// guest's ready marker on its console.
//   npx tsx bench/domain-start.ts [N=5]
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { parseVmSettings } from '../src/vm/annotations.js';
import { buildVmSpec } from '../src/vm/spec.js';
import { renderDomainXml } from '../src/vm/domain-xml.js';
import { kernelGuest } from '../test/helpers/guest.js';
import { removeTempDirs, tempDir } from '../test/helpers/vmlet.js';
import { withoutQemuCapabilities } from '../test/helpers/domain-xml.js';
import { bootToMarker } from './boot-domain.js';

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
    return kind === 'vmlet' ? xml : withoutQemuCapabilities(xml);
  };
  const start: Record<Kind, number[]> = { vmlet: [], 'libvirt-check': [] };
  const boot: Record<Kind, number[]> = { vmlet: [], 'libvirt-check': [] };
  try {
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first: a machine that drifts weighs on both alike.
      const order: Kind[] = i % 2 ? ['libvirt-check', 'vmlet'] : ['vmlet', 'libvirt-check'];
      for (const kind of order) {
        const name = `vmlet-bench-ds-${randomBytes(4).toString('hex')}`;
        const t = await bootToMarker(lv, { name, xml: xmlOf(name, kind), consoleLog: join(dir, `${name}.log`) });
        start[kind].push(t.startedMs - t.defineMs);
        boot[kind].push(t.markerMs);
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
