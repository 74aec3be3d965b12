// Benchmark (not a test): what sampling N running VMs costs libvirt, per call: the bulk stats
// call (virConnectGetAllDomainStats over vmlet's RPC client) with various stats groups, the STATE
// call plus getInfo per domain that Libvirt.activeDomainInfo makes (the native binding's list +
// getName + getInfo per domain, measured here before the binding was dropped, is in
// docs/design.md). Boots N
// VM pods through vmlet (kernelboot test image, TCG), waits for their guests to be up, then runs
// each variant in blocks of 5 calls, interleaved: latency per call, and libvirtd's CPU time per
// call (utime + stime of libvirtd over each block, from /proc).
//   npx tsx bench/domain-stats.ts [vms=10] [calls=40]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { call, startVmlet, tempDir } from '../test/helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry } from '../test/helpers/registry.js';
import { waitFor } from '../test/helpers/wait.js';
import { Libvirt } from '../src/vm/libvirt.js';
import { DOMAIN_STATS as S, GET_ALL_DOMAINS_STATS as F, LibvirtRpc } from '../src/vm/rpc/index.js';

const VMS = Number(process.argv[2] ?? 10);
const CALLS = Number(process.argv[3] ?? 40);
const BLOCK = 5;
const URI = 'qemu:///system';
const logRoot = tempDir('vmlet-bench-logs-');

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const ms = (x: number) => `${x.toFixed(2)} ms`.padStart(10);

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const libvirtdPid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
/** libvirtd's utime + stime in ms (fields 14 and 15 of /proc/<pid>/stat). */
function libvirtdCpuMs(): number {
  const text = readFileSync(`/proc/${libvirtdPid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

async function main(): Promise<void> {
  await ensureTestImages();
  const reg = await startRegistry();
  const v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\n` });
  const rt = <T>(m: string, req: object) => call<object, T>(v.runtime, m, req);
  const rpc = new LibvirtRpc({ uri: URI });
  const lv = new Libvirt(URI, pino({ level: 'silent' }));
  const pods: string[] = [];
  try {
    const { reference } = await pushImage(reg, 'kernelboot', 'bench/kernel:v1');
    await call(v.image, 'PullImage', { image: { image: reference } });
    const logs: string[] = [];
    for (let i = 0; i < VMS; i++) {
      const uid = randomBytes(6).toString('hex');
      const config = { metadata: { name: `stats-${i}`, namespace: 'bench', uid, attempt: 0 }, log_directory: join(logRoot, uid), annotations: { 'vmlet.io/memory': '256Mi' } };
      const { pod_sandbox_id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
      pods.push(pod_sandbox_id);
      const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
        pod_sandbox_id,
        config: { metadata: { name: 'vm', attempt: 0 }, image: { image: reference }, log_path: 'vm.log' },
        sandbox_config: config,
      });
      await rt('StartContainer', { container_id });
      logs.push(join(config.log_directory, 'vm.log'));
    }
    for (const log of logs) await waitFor('VMLET-READY', () => existsSync(log) && readFileSync(log, 'utf8').includes('VMLET-READY'), { timeoutMs: 600_000, intervalMs: 100 });
    await new Promise((r) => setTimeout(r, 5000)); // the guests' last boot work would skew the first samples

    const one = (await rpc.getAllDomainStats(S.STATE, F.ACTIVE)).map((r) => r.dom.name).find((n) => n.includes('stats-0'))!;
    const variants: Record<string, () => Promise<number>> = {
      'getAllDomainStats STATE, ACTIVE': async () => (await rpc.getAllDomainStats(S.STATE, F.ACTIVE)).length,
      'getAllDomainStats STATE|CPU_TOTAL, ACTIVE': async () => (await rpc.getAllDomainStats(S.STATE | S.CPU_TOTAL, F.ACTIVE)).length,
      'getAllDomainStats STATE|CPU_TOTAL|VCPU, ACTIVE': async () => (await rpc.getAllDomainStats(S.STATE | S.CPU_TOTAL | S.VCPU, F.ACTIVE)).length,
      'getAllDomainStats STATE|BALLOON, ACTIVE': async () => (await rpc.getAllDomainStats(S.STATE | S.BALLOON, F.ACTIVE)).length,
      'getAllDomainStats STATE|CPU_TOTAL|VCPU|BALLOON, ACTIVE': async () => (await rpc.getAllDomainStats(S.STATE | S.CPU_TOTAL | S.VCPU | S.BALLOON, F.ACTIVE)).length,
      'getAllDomainStats STATE|CPU_TOTAL|VCPU|BALLOON, ACTIVE|NOWAIT': async () =>
        (await rpc.getAllDomainStats(S.STATE | S.CPU_TOTAL | S.VCPU | S.BALLOON, F.ACTIVE | F.NOWAIT)).length,
      'getAllDomainStats STATE, ACTIVE + RPC getInfo each, pipelined': async () => {
        const doms = (await rpc.getAllDomainStats(S.STATE, F.ACTIVE)).map((r) => r.dom);
        return (await Promise.all(doms.map((d) => rpc.getInfo(d)))).length;
      },
      'Libvirt.activeDomainInfo() (the above, mapped)': async () => (await lv.activeDomainInfo()).length,
      'Libvirt.activeDomainNames() (the STATE call)': async () => (await lv.activeDomainNames()).size,
      'one domain, lookup + getAllDomainStats STATE|CPU_TOTAL|VCPU|BALLOON of it': async () => {
        const dom = await rpc.lookupDomain(one);
        return (await rpc.getAllDomainStats(S.STATE | S.CPU_TOTAL | S.VCPU | S.BALLOON, F.ACTIVE, [dom])).length;
      },
    };
    const lat: Record<string, number[]> = {};
    const cpu: Record<string, number> = {};
    for (const [name, fn] of Object.entries(variants)) {
      lat[name] = [];
      cpu[name] = 0;
      for (let i = 0; i < 3; i++) await fn(); // warm-up: connections, libvirt's query-stats-schemas cache
    }
    for (let done = 0; done < CALLS; done += BLOCK) {
      for (const [name, fn] of Object.entries(variants)) {
        const c0 = libvirtdCpuMs();
        for (let i = 0; i < BLOCK; i++) {
          const t0 = performance.now();
          const n = await fn();
          lat[name]!.push(performance.now() - t0);
          if (n !== VMS && n !== 1) throw new Error(`${name}: ${n} domains, expected ${VMS}`);
        }
        cpu[name]! += libvirtdCpuMs() - c0;
      }
    }
    console.log(`${VMS} running VMs (TCG); ${CALLS} calls per variant in blocks of ${BLOCK}, interleaved; libvirtd CPU from /proc (${TICK_MS} ms ticks)`);
    console.log(`${'variant'.padEnd(70)}    median       p90       min  libvirtd CPU/call`);
    for (const [name, xs] of Object.entries(lat)) {
      console.log(`${name.padEnd(70)}${ms(pct(xs, 50))}${ms(pct(xs, 90))}${ms(Math.min(...xs))}${ms(cpu[name]! / xs.length)}`);
    }
  } finally {
    for (const id of pods) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await lv.close();
    await rpc.close();
    await v.stop();
    await reg.stop();
  }
}

await main();
