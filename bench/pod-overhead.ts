// Benchmark (not a test): what a VM pod costs the node beyond its guest's RAM, the basis of
// node-install/runtimeclass.yaml's overhead.podFixed and of the default tcgTbCacheMiB.
//  1. the kernel-boot test guest through libvirt with each TCG translation-cache size (QEMU's
//     default, then <tb-cache>): boot time and QEMU's memory split at the ready marker and after
//     an idle while;
//  2. a real VM pod through vmlet's CRI (kernel-boot image, vmlet's own domain XML and default
//     tb-cache) in a pod cgroup: QEMU's RSS beyond guest RAM, the pod's dnsmasq, and what the pod
//     cgroup's memory controller charged.
//   npx tsx bench/pod-overhead.ts [--runs N] [--sizes default,256,128,64,32] [--idle-ms 10000]
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Libvirt } from '../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { kernelGuest, kernelGuestXml, READY_MARKER } from '../test/helpers/guest.js';
import { waitFor } from '../test/helpers/wait.js';
import { runVmPod, startVmSuite, stopVmSuite, waitForConsoleLine } from '../test/helpers/vm-suite.js';
import { call, tempDir } from '../test/helpers/vmlet.js';
import { removeCreated } from '../src/vm/pod-cgroup.js';
import { mib, show, split } from './qemu-memory.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '2' }, sizes: { type: 'string', default: 'default,256,128,64,32' }, 'idle-ms': { type: 'string', default: '10000' } } });
const runs = Number(values.runs);
const idleMs = Number(values['idle-ms']);
const GUEST_MIB = 256;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

async function tbCacheSizes(): Promise<void> {
  const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
  const accel = decideAccel('auto', probeHost());
  const guest = kernelGuest();
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-bench-'));
  console.log(`1. kernel guest through libvirt, ${accel.accel}, ${GUEST_MIB} MiB, ${runs} runs per size (load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`);
  for (const size of values.sizes.split(',')) {
    for (let i = 0; i < runs; i++) {
      const name = `vmlet-bench-${randomBytes(4).toString('hex')}`;
      const log = join(dir, `${name}.log`);
      let xml = kernelGuestXml({ name, guest, domainType: accel.domainType, consoleLog: log, memoryMiB: GUEST_MIB });
      if (size !== 'default') xml = xml.replace('<features><acpi/></features>', `<features><acpi/><tcg><tb-cache unit='MiB'>${size}</tb-cache></tcg></features>`);
      const t0 = performance.now();
      try {
        await lv.defineDomain(xml);
        await lv.startDomain(name);
        await waitFor('ready marker', () => existsSync(log) && readFileSync(log, 'utf8').includes(READY_MARKER), { timeoutMs: 180_000, intervalMs: 10 });
        const bootS = ((performance.now() - t0) / 1000).toFixed(2);
        const pid = Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
        const ready = split(pid, GUEST_MIB);
        await sleep(idleMs);
        console.log(`  tb-cache ${size.padStart(7)}: boot ${bootS} s; at ready ${show(ready)}; after ${idleMs / 1000} s idle ${show(split(pid, GUEST_MIB))}`);
      } finally {
        await lv.destroyDomain(name).catch(() => undefined);
        await lv.undefineDomain(name).catch(() => undefined);
      }
    }
  }
  await lv.close();
}

/** A VM pod through vmlet, in a pod cgroup of its own (cgroupfs, v1 or v2). */
async function vmPod(): Promise<void> {
  const parent = `/vmlet-bench-${randomBytes(4).toString('hex')}`;
  let suite: Awaited<ReturnType<typeof startVmSuite>> | undefined;
  try {
    suite = await startVmSuite([['kernelboot', 'vmlet/kernelboot:v1']]);
    const { v, refs } = suite;
    const pod = await runVmPod(v, { name: 'overhead', namespace: 'bench', image: refs[0]!, logDir: tempDir('vmlet-bench-logs-'), resources: { memory_limit_in_bytes: String(GUEST_MIB * 1024 * 1024) }, sandbox: { linux: { cgroup_parent: parent } } });
    await waitForConsoleLine(pod.log, READY_MARKER, 180_000);
    const st = await call<object, { info: Record<string, string> }>(v.runtime, 'ContainerStatus', { container_id: pod.cid, verbose: true });
    const domain = (JSON.parse(st.info.info!) as { domain: string }).domain;
    const qemu = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    const dnsmasq = Number(readFileSync(join(v.stateDir, 'pods', pod.id, 'dnsmasq.pid'), 'utf8').trim());
    await sleep(idleMs);
    const q = split(qemu, GUEST_MIB);
    const d = rssKiB(dnsmasq);
    const memcg = ['/sys/fs/cgroup/memory', '/sys/fs/cgroup'].map((r) => join(r, parent)).find((p) => existsSync(p));
    const usage = memcg && [join(memcg, 'memory.usage_in_bytes'), join(memcg, 'memory.current')].find((f) => existsSync(f));
    console.log(`2. VM pod through vmlet (kernel-boot image, ${GUEST_MIB} MiB guest, ${idleMs / 1000} s after ${READY_MARKER}):`);
    console.log(`  QEMU ${show(q)}`);
    console.log(`  dnsmasq RSS ${mib(d)} MiB`);
    if (usage) console.log(`  pod cgroup ${parent} memory charged: ${mib(Number(readFileSync(usage, 'utf8')) / 1024)} MiB (all of QEMU's anonymous memory on cgroup v1, where it is born there; binary and library pages count where they were first read)`);
    console.log(`  fixed overhead = QEMU beyond guest RAM + dnsmasq = ${mib(q.rss - q.guestRam + d)} MiB (binary/libs ${mib(q.file)} MiB of it are page cache shared by every QEMU on the node)`);
  } finally {
    await stopVmSuite(suite?.v, suite?.reg);
    // The pod cgroup with the leaves vmlet made in it (empty now: the pod is gone).
    removeCreated(['memory', 'pids', 'blkio', 'cpuacct', 'hugetlb', 'net_cls', 'perf_event', ''].map((r) => join('/sys/fs/cgroup', r, parent)).filter((p) => existsSync(p)));
  }
}

async function main(): Promise<void> {
  if (values.sizes) await tbCacheSizes();
  await vmPod();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
