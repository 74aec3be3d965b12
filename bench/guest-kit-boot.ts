// Benchmark (not a test): boots the guest kit (node-install/build-guest-kit.sh) with plain QEMU
// N times and prints QEMU process start → VMLET-AGENT-READY on the console (median, min, max),
// the guest's own phase times (VMLET-TIMES, uptime in s) and memory (VMLET-MEM); then the same
// for the test kernel guest's VMLET-READY (.cache/test-images/kernel-guest) for comparison.
// TCG unless KVM is usable. Devices as a sandboxed pod has them: agent port, 9p share, scratch
// disk, virtio NIC.
//   npx tsx bench/guest-kit-boot.ts [N=5] [kitDir=.cache/guest-kit]
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { GUEST_DIR, READY_MARKER } from '../test/helpers/guest.js';
import { ROOT } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';

const runs = Number(process.argv[2] ?? 5);
const kitDir = process.argv[3] ?? join(ROOT, '.cache/guest-kit');
const memoryMiB = 256;

interface Run {
  ms: number;
  rssMiB: number;
  times?: string;
  mem?: string;
}

async function bootOnce(o: { kernel: string; initrd: string; cmdline: string; marker: string; extra: string[]; dir: string; accel: string }): Promise<Run> {
  const log = join(o.dir, 'console.log');
  const fd = openSync(log, 'w');
  const t0 = performance.now();
  const qemu = spawn('qemu-system-x86_64', [
    '-machine', `q35,accel=${o.accel}`, '-m', String(memoryMiB), '-display', 'none', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', o.kernel, '-initrd', o.initrd, '-append', o.cmdline,
    '-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=',
    ...o.extra,
  ], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    const text = await waitFor(o.marker, () => {
      if (qemu.exitCode !== null) throw new Error(`QEMU exited ${qemu.exitCode}: ${readFileSync(log, 'utf8').slice(-1000)}`);
      const t = readFileSync(log, 'utf8');
      return t.includes(o.marker) ? t : undefined;
    }, { timeoutMs: 120_000, intervalMs: 5 });
    const ms = performance.now() - t0;
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${qemu.pid}/status`, 'utf8'));
    const line = (p: string) => text.replace(/\r/g, '').split('\n').find((l) => l.startsWith(p))?.slice(p.length);
    return { ms, rssMiB: Math.round(Number(rss?.[1] ?? 0) / 102.4) / 10, times: line('VMLET-TIMES '), mem: line('VMLET-MEM ') };
  } finally {
    if (qemu.exitCode === null && qemu.pid) process.kill(qemu.pid, 'SIGKILL');
  }
}

function summary(name: string, rs: Run[]): void {
  const ms = rs.map((r) => r.ms).sort((a, b) => a - b);
  const s = (x: number) => (x / 1000).toFixed(2);
  console.log(`${name}: median ${s(ms[Math.floor((ms.length - 1) / 2)]!)} s   min ${s(ms[0]!)} s   max ${s(ms[ms.length - 1]!)} s   (each: ${rs.map((r) => s(r.ms)).join(' ')})`);
  console.log(`  QEMU RSS at ready (mean): ${(rs.reduce((a, r) => a + r.rssMiB, 0) / rs.length).toFixed(1)} MiB`);
  for (const r of rs.filter((x) => x.times || x.mem)) console.log(`  guest: ${r.times ?? ''}   ${r.mem ?? ''}`);
}

async function main(): Promise<void> {
  const accel = decideAccel('auto', probeHost()).accel;
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-kit-'));
  try {
    for (const f of ['vmlinux', 'initrd.img', 'cmdline']) {
      if (!existsSync(join(kitDir, f))) throw new Error(`no guest kit in ${kitDir}: run node-install/build-guest-kit.sh ${kitDir}`);
    }
    const images = join(dir, 'images');
    mkdirSync(join(images, 'img-0', 'etc'), { recursive: true });
    writeFileSync(join(images, 'img-0', 'etc', 'os-release'), 'ID=bench\n');
    const scratch = join(dir, 'scratch.img');
    writeFileSync(scratch, '');
    spawnSync('truncate', ['-s', '1G', scratch]);
    spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', scratch]);
    const kit: Run[] = [];
    for (let i = 0; i < runs; i++) {
      kit.push(await bootOnce({
        kernel: join(kitDir, 'vmlinux'), initrd: join(kitDir, 'initrd.img'), accel, dir, marker: 'VMLET-AGENT-READY',
        cmdline: `${readFileSync(join(kitDir, 'cmdline'), 'utf8').trim()} vmlet.ip=10.0.2.15/24 vmlet.gw=10.0.2.2`,
        extra: [
          '-device', 'virtio-serial', '-chardev', `socket,path=${join(dir, 'agent.sock')},server=on,wait=off,id=ag`,
          '-device', 'virtserialport,chardev=ag,name=vmlet.agent.0',
          '-fsdev', `local,id=img,path=${images},security_model=none,readonly=on`, '-device', 'virtio-9p-pci,fsdev=img,mount_tag=vmlet-images',
          '-drive', `file=${scratch},format=raw,if=none,id=s0`, '-device', 'virtio-blk-pci,drive=s0,serial=vmlet-scratch',
        ],
      }));
    }
    const version = readFileSync(join(kitDir, 'VERSION'), 'utf8').trim();
    console.log(`boot to ready with plain QEMU, ${accel}, ${memoryMiB} MiB, ${runs} runs (QEMU start → marker on the console)`);
    summary(`guest kit ${version} (VMLET-AGENT-READY, initrd ${readFileSync(join(kitDir, 'initrd.img')).length} bytes)`, kit);
    if (existsSync(join(GUEST_DIR, 'vmlinux'))) {
      const kg: Run[] = [];
      for (let i = 0; i < runs; i++) {
        kg.push(await bootOnce({
          kernel: join(GUEST_DIR, 'vmlinux'), initrd: join(GUEST_DIR, 'initrd.img'), accel, dir, marker: READY_MARKER,
          cmdline: `${readFileSync(join(GUEST_DIR, 'cmdline'), 'utf8').trim()} vmlet.dhcp=none`, extra: [],
        }));
      }
      summary(`test kernel guest (${READY_MARKER})`, kg);
    } else {
      console.log(`test kernel guest not built (${GUEST_DIR}): run test/images/build-kernel-guest.sh`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
