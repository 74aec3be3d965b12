// Benchmark (not a test): the test guest's Debian kernel booted from its bzImage (SeaBIOS, the
// option ROM, decompression in the guest) against the ELF vmlet unpacks from it (PVH), same
// domain otherwise (q35, 256 MiB, the test initrd), through libvirt to the ready marker; rounds
// interleaved. Also times the unpacking itself (what a pull of such an image pays once).
//   npx tsx bench/kernel-boot.ts [N=5]
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { unpackPvhKernel } from '../src/image/kernel-pvh.js';
import { GUEST_DIR, kernelGuest, kernelGuestXml, READY_MARKER } from '../test/helpers/guest.js';
import { tempDir } from '../test/helpers/vmlet.js';
import { bootToMarker } from './boot-domain.js';

const N = Number(process.argv[2] ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const bz = join(GUEST_DIR, 'vmlinuz');
const work = tempDir('vmlet-kboot-');
const unpackMs: number[] = [];
let elf = '';
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const r = await unpackPvhKernel(bz, join(work, `vmlinux${i}`));
  unpackMs.push(performance.now() - t0);
  if (!('path' in r)) throw new Error(`cannot unpack ${bz}: ${r.not}`);
  elf = r.path;
}

const accel = decideAccel('auto', probeHost());
const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const times: Record<'pvh' | 'bzImage', number[]> = { pvh: [], bzImage: [] };
try {
  for (let i = 0; i < N; i++) {
    for (const [kind, kernel] of [['pvh', elf], ['bzImage', bz]] as const) {
      const name = `vmlet-bench-kboot-${randomBytes(3).toString('hex')}`;
      const consoleLog = join(work, `${name}.log`);
      const t = await bootToMarker(lv, { name, xml: kernelGuestXml({ name, guest: { ...kernelGuest(), kernel }, domainType: accel.domainType, consoleLog }), consoleLog });
      times[kind].push(t.markerMs - t.defineMs); // from the start call, as before
    }
  }
} finally {
  await lv.close();
}

console.log(`kernel boot to ${READY_MARKER}, ${N} rounds under ${accel.accel} (q35, 256 MiB, the test guest's initrd)`);
console.log(`  bzImage (${(statSync(bz).size / 2 ** 20).toFixed(1)} MiB) through SeaBIOS: median ${s(median(times.bzImage))}  [${times.bzImage.map(s).join(', ')}]`);
console.log(`  its ELF (${(statSync(elf).size / 2 ** 20).toFixed(1)} MiB) through PVH:     median ${s(median(times.pvh))}  [${times.pvh.map(s).join(', ')}]`);
console.log(`  ratio pvh/bzImage: ${(median(times.pvh) / median(times.bzImage)).toFixed(2)}`);
console.log(`  unpacking the bzImage (once per image, at pull): median ${Math.round(median(unpackMs))} ms  [${unpackMs.map((m) => Math.round(m)).join(', ')}]`);
