// Benchmark (not a test): exec in a guest through qemu-guest-agent on vmlet's channel. Boots the
// kernel-boot test guest through libvirt with vmlet's own domain XML (guest-agent channel
// included), then compares the two ways of using the agent's socket:
//   shared:   one connection per VM, requests queued (what vmlet does)
//   per-call: a fresh connection (connect + resync) for every exec, closed after it
// Sequential latency of `echo hi` (median, p90) and 20 concurrent `echo <i>` (wall time, right
// answers, failures) for each.
//   npx tsx bench/exec.ts [N=50] [machine=q35|pc]
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { parseVmSettings } from '../src/vm/annotations.js';
import { buildVmSpec } from '../src/vm/spec.js';
import { renderDomainXml } from '../src/vm/domain-xml.js';
import { GuestAgent } from '../src/vm/guest-agent.js';
import { DEFAULT_QEMU_USER, resolveQemuUser, searchableDir, socketDirFor } from '../src/vm/qemu-user.js';
import { guestExec } from '../src/vm/guest-exec.js';
import { kernelGuest, READY_MARKER } from '../test/helpers/guest.js';
import { waitFor } from '../test/helpers/wait.js';

const runs = Number(process.argv[2] ?? 50);
const machine = process.argv[3] ?? 'q35';

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const fmt = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${pct(s, 50).toFixed(1)} ms, p90 ${pct(s, 90).toFixed(1)} ms, min ${s[0]!.toFixed(1)} ms`;
};

async function sequential(run: () => Promise<string>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await run();
    times.push(performance.now() - t0);
    if (out !== 'hi\n') throw new Error(`unexpected output ${JSON.stringify(out)}`);
  }
  return times;
}

async function concurrent(run: (i: number) => Promise<string>): Promise<string> {
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => run(i)));
  const wall = performance.now() - t0;
  const right = results.filter((r, i) => r.status === 'fulfilled' && r.value === `${i}\n`).length;
  const errors = [...new Set(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message.replace(/\/\S+/g, '<path>')] : [])))];
  return `wall ${wall.toFixed(0)} ms, ${right}/20 right${errors.length ? `, errors: ${errors.join(' | ')}` : ''}`;
}

async function main(): Promise<void> {
  const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
  const accel = decideAccel('auto', probeHost());
  const guest = kernelGuest();
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-'));
  const name = `vmlet-bench-exec-${randomBytes(3).toString('hex')}`;
  // QEMU runs as the node's QEMU user, as vmlet runs it: the socket's dir is that user's.
  const qemuUser = await resolveQemuUser(DEFAULT_QEMU_USER);
  await searchableDir(dir);
  await socketDirFor(join(dir, 'qga'), qemuUser);
  const socket = join(dir, 'qga', 'qga.sock');
  const consoleLog = join(dir, 'console.log');
  const settings = parseVmSettings({ sandboxAnnotations: { 'vmlet.io/machine': machine }, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 256 } });
  const spec = buildVmSpec({
    name,
    domainType: accel.domainType,
    settings,
    boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
    disks: [],
    consoleLog,
    guestAgent: { socket },
    qemuUser,
    metadata: { v: 1, sandboxId: 'bench', containerId: 'bench' },
  });
  try {
    await lv.defineDomain(renderDomainXml(spec));
    await lv.startDomain(name);
    await waitFor('ready marker', () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(READY_MARKER), { timeoutMs: 120_000, intervalMs: 20 });
    const shared = new GuestAgent(socket, { replyTimeoutMs: 2000 });
    const t0 = performance.now();
    await waitFor('qemu-ga to answer', () => shared.ping().then(() => true), { timeoutMs: 60_000, intervalMs: 100 });
    console.log(`exec through qemu-guest-agent, ${accel.accel}, machine ${machine}; agent answered ${(performance.now() - t0).toFixed(0)} ms after ${READY_MARKER}`);
    await new Promise((r) => setTimeout(r, 5000)); // let the guest finish booting (module loads, seed scan)

    const echo = async (agent: GuestAgent, word: string) => (await guestExec(agent, { path: 'echo', args: [word] })).stdout.toString();
    const perCall = async (word: string) => {
      const a = new GuestAgent(socket, { replyTimeoutMs: 5000 });
      try {
        return await echo(a, word);
      } finally {
        a.close();
      }
    };
    const pings: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await shared.ping();
      pings.push(performance.now() - t);
    }
    console.log(`  guest-ping on an open connection: ${fmt(pings)}`);
    console.log(`  shared,   ${runs} x echo hi:  ${fmt(await sequential(() => echo(shared, 'hi')))}`);
    console.log(`  shared,   20 concurrent: ${await concurrent((i) => echo(shared, String(i)))}`);
    for (const mib of [1, 4]) {
      const t = performance.now();
      const r = await guestExec(shared, { path: 'head', args: ['-c', String(mib * 1048576), '/dev/urandom'] });
      if (r.stdout.length !== mib * 1048576) throw new Error(`got ${r.stdout.length} bytes`);
      console.log(`  shared,   ${mib} MiB of output: ${(performance.now() - t).toFixed(0)} ms`);
    }
    // QEMU serves one client: while `shared` is connected, another connection gets no answer at all.
    shared.close();
    // Connection set-up alone: connect + 0xFF + guest-sync-delimited.
    const syncs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const a = new GuestAgent(socket);
      const t = performance.now();
      await a.ping();
      syncs.push(performance.now() - t);
      a.close();
    }
    console.log(`  connect + resync + guest-ping: ${fmt(syncs)}`);
    console.log(`  per-call, ${runs} x echo hi:  ${fmt(await sequential(() => perCall('hi')))}`);
    console.log(`  per-call, 20 concurrent: ${await concurrent((i) => perCall(String(i)))}`);
  } finally {
    await lv.destroyDomain(name).catch(() => undefined);
    await lv.undefineDomain(name).catch(() => undefined);
    await lv.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
