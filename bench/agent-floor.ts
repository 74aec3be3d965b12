// Benchmark (not a test): what the guest agent's language costs a pod VM's boot, for the choice
// issue 16 asks to make by measurement. Boots the guest kit with plain QEMU (as guest-kit-boot.ts,
// the same devices), its /sbin/vmlet-agent replaced through an initramfs overlay by a wrapper that
// prints the guest's uptime when it starts the agent and when the agent prints VMLET-AGENT-READY,
// and the agent's VmRSS then:
//   - go:    vmlet's agent (Go, static, CGO off; src/guest/agent/build.sh's output);
//   - floor: a static C program (gcc -static -Os) that prints VMLET-AGENT-READY and sleeps: no
//            agent in any language starts faster or smaller, so go − floor bounds what a C or
//            Rust agent could save.
// Prints median start → ready (ms of guest uptime), RSS, binary size, and the guest's uptime at
// /init (the overlay's size shows there: the kernel unpacks it).
//   npx tsx bench/agent-floor.ts [N=5] [kitDir=.cache/guest-kit] [goAgent=.cache/guest-agent/vmlet-agent]
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { ROOT } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';

const runs = Number(process.argv[2] ?? 5);
const kitDir = process.argv[3] ?? join(ROOT, '.cache/guest-kit');
const goAgent = process.argv[4] ?? join(ROOT, '.cache/guest-agent/vmlet-agent');

const FLOOR_C = `#include <stdio.h>
#include <unistd.h>
int main(void) { fprintf(stderr, "VMLET-AGENT-READY floor\\n"); for (;;) pause(); }
`;

// The agent runs as /sbin/agentx (a short name: pidof matches it whole); its stderr is read line
// by line so the ready line gets the guest's uptime the moment it is printed.
const WRAPPER = `#!/bin/sh
read up _ < /proc/uptime
echo "AGENT-WRAP-START $up"
/sbin/agentx "$@" 2>&1 | while IFS= read -r l; do
  case "$l" in
    VMLET-AGENT-READY*)
      read up _ < /proc/uptime
      echo "AGENT-WRAP-READY $up"
      echo "AGENT-WRAP-RSS $(grep VmRSS /proc/$(pidof agentx)/status)" ;;
    *) echo "$l" ;;
  esac
done
`;

/** A gzip'd newc archive of `files` (path → [mode, content]), appended to the kit's initrd: later entries win. */
function overlay(files: Record<string, [number, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  let ino = 3_000_000;
  const entry = (name: string, mode: number, data: Buffer) => {
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const head = Buffer.from(`070701${fields.map(hex).join('')}${name}\0`, 'latin1');
    parts.push(head, Buffer.alloc((4 - (head.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4));
  };
  for (const [name, [mode, data]] of Object.entries(files)) entry(name, mode, data);
  entry('TRAILER!!!', 0, Buffer.alloc(0));
  return gzipSync(Buffer.concat(parts));
}

interface Run { startToReadyMs: number; rssKiB: number; initUptime: number }

async function bootOnce(initrd: string, dir: string, accel: string): Promise<Run> {
  const log = join(dir, 'console.log');
  const fd = openSync(log, 'w');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const qemu = spawn('qemu-system-x86_64', [
    '-machine', `q35,accel=${accel}`, '-m', '256', '-display', 'none', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', join(kitDir, 'vmlinux'), '-initrd', initrd, '-append', readFileSync(join(kitDir, 'cmdline'), 'utf8').trim(),
    '-device', 'virtio-serial', '-chardev', `socket,path=${join(dir, 'agent.sock')},server=on,wait=off,id=ag`,
    '-device', 'virtserialport,chardev=ag,name=vmlet.agent.0',
    '-fsdev', `local,id=img,path=${images},security_model=none,readonly=on`, '-device', 'virtio-9p-pci,fsdev=img,mount_tag=vmlet-images',
  ], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    const text = await waitFor('AGENT-WRAP-RSS', () => {
      if (qemu.exitCode !== null) throw new Error(`QEMU exited ${qemu.exitCode}: ${readFileSync(log, 'utf8').slice(-1000)}`);
      const t = readFileSync(log, 'utf8');
      return t.includes('AGENT-WRAP-RSS') ? t : undefined;
    }, { timeoutMs: 120_000, intervalMs: 20 });
    const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    return {
      startToReadyMs: (num(/AGENT-WRAP-READY ([\d.]+)/) - num(/AGENT-WRAP-START ([\d.]+)/)) * 1000,
      rssKiB: num(/AGENT-WRAP-RSS VmRSS:\s+(\d+) kB/),
      initUptime: num(/VMLET-INIT ([\d.]+)/),
    };
  } finally {
    if (qemu.exitCode === null && qemu.pid) process.kill(qemu.pid, 'SIGKILL');
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function main(): Promise<void> {
  for (const f of [join(kitDir, 'vmlinux'), join(kitDir, 'initrd.img'), goAgent]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run node-install/build-guest-kit.sh ${kitDir} (it builds the agent too)`);
  }
  const accel = decideAccel('auto', probeHost()).accel;
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-agent-'));
  try {
    writeFileSync(join(dir, 'floor.c'), FLOOR_C);
    const cc = spawnSync('gcc', ['-static', '-Os', '-s', '-o', join(dir, 'floor'), join(dir, 'floor.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc -static failed (Debian's gcc and libc6-dev give it): ${cc.stderr}`);
    const base = readFileSync(join(kitDir, 'initrd.img'));
    const variants: Record<string, string> = {};
    for (const [name, bin] of [['go', goAgent], ['floor', join(dir, 'floor')]] as const) {
      const initrd = join(dir, `initrd-${name}.img`);
      writeFileSync(initrd, Buffer.concat([base, overlay({ 'sbin/vmlet-agent': [0o100755, Buffer.from(WRAPPER)], 'sbin/agentx': [0o100755, readFileSync(bin)] })]));
      variants[name] = initrd;
    }
    const results: Record<string, Run[]> = { go: [], floor: [] };
    // Alternating, so a change in the machine's load falls on both.
    for (let i = 0; i < runs; i++) for (const name of ['go', 'floor']) results[name]!.push(await bootOnce(variants[name]!, dir, accel));
    console.log(`guest agent start → VMLET-AGENT-READY, guest uptime, ${accel}, ${runs} runs each (plain QEMU, the kit's kernel and initrd, the agent port and a 9p share)`);
    for (const [name, bin] of [['go', goAgent], ['floor', join(dir, 'floor')]] as const) {
      const rs = results[name]!;
      const gz = gzipSync(readFileSync(bin), { level: 9 }).length;
      console.log(
        `  ${name.padEnd(5)}  start → ready median ${median(rs.map((r) => r.startToReadyMs)).toFixed(0)} ms (each: ${rs.map((r) => r.startToReadyMs.toFixed(0)).join(' ')}); ` +
          `RSS ${(median(rs.map((r) => r.rssKiB)) / 1024).toFixed(1)} MiB; binary ${(statSync(bin).size / 1e6).toFixed(2)} MB (${(gz / 1e6).toFixed(2)} MB gzip'd in the initrd); ` +
          `/init at uptime ${median(rs.map((r) => r.initUptime)).toFixed(2)} s`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
