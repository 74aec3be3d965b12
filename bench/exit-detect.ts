// Benchmark (not a test): how long a VM pod's death takes to reach the kubelet (issue 15, item 3).
// One quiet VM pod (the kernel-boot test guest, networking on); `kills` times: boot it to its
// marker, wait for its console to go quiet, kill its QEMU with -9, then time from the kill:
//   - libvirt: libvirtd's STOPPED lifecycle event at a client of our own (the floor);
//   - heard: vmlet's first log line saying the domain stopped (debug level: its monitor's close, or libvirt's event);
//   - exited: vmlet's 'container exited' log line (record saved);
//   - event: GetContainerEvents' CONTAINER_STOPPED_EVENT at the client;
//   - status: ContainerStatus saying CONTAINER_EXITED (polled every 2 ms).
// The kubelet's restart (a new attempt in the same pod) follows each kill.
//   npx tsx bench/exit-detect.ts [kills=8]
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { call, parseLogLines, tempDir } from '../test/helpers/vmlet.js';
import { runVmPod, startVmSuite, stopVmSuite, waitForConsoleLine } from '../test/helpers/vm-suite.js';
import { waitFor } from '../test/helpers/wait.js';
import { Libvirt } from '../src/vm/libvirt.js';
import type { ContainerEventResponse__Output } from '../src/gen/runtime/v1/ContainerEventResponse.js';

const KILLS = Number(process.argv[2] ?? 8);
/** The console counts as quiet once its CRI log has not grown for this long. */
const QUIET_MS = 1000;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
const size = (f: string) => {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
};

async function main(): Promise<void> {
  const { v, reg, refs: [image = ''] } = await startVmSuite([['kernelboot', 'bench/exit:1']]);
  const rt = <T>(m: string, req: object) => call<object, T>(v.runtime, m, req);
  const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
  const stopped = new Map<string, number>(); // domain → Date.now() of libvirt's STOPPED event
  const offLv = lv.onLifecycle((e) => {
    if (e.event === 'stopped' && !stopped.has(e.name)) stopped.set(e.name, Date.now());
  });
  await lv.eventsReady();
  const stream = (v.runtime as unknown as { GetContainerEvents(req: object): ClientReadableStream<ContainerEventResponse__Output> }).GetContainerEvents({});
  const stopEvents = new Map<string, number>();
  stream.on('data', (e: ContainerEventResponse__Output) => {
    if (e.container_event_type === 'CONTAINER_STOPPED_EVENT' && !stopEvents.has(e.container_id)) stopEvents.set(e.container_id, Date.now());
  });
  stream.on('error', () => undefined); // cancelled at the end
  const rows: Array<Record<'libvirt' | 'heard' | 'exited' | 'event' | 'status', number>> = [];
  try {
    const logDir = tempDir('vmlet-bench-exit-');
    const pod = await runVmPod(v, { name: 'exit', namespace: 'bench', image, logDir, start: false });
    const sandboxConfig = { metadata: { name: 'exit', namespace: 'bench', uid: 'x', attempt: 0 } };
    let cid = pod.cid;
    let log = pod.log;
    for (let i = 0; i < KILLS; i++) {
      await rt('StartContainer', { container_id: cid });
      await waitForConsoleLine(log, 'VMLET-READY', 120_000);
      // Quiet: the CRI log has stopped growing (no copy is under way when QEMU dies).
      let last = size(log);
      let since = performance.now();
      await waitFor('a quiet console', () => {
        const now = size(log);
        if (now !== last) [last, since] = [now, performance.now()];
        return performance.now() - since >= QUIET_MS;
      }, { timeoutMs: 60_000, intervalMs: 50 });
      const info = JSON.parse((await rt<{ info: { info: string } }>('ContainerStatus', { container_id: cid, verbose: true })).info.info) as { domainXml: string };
      const domain = /<name>([^<]+)<\/name>/.exec(info.domainXml)![1]!;
      const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
      const logFrom = v.logLines.length;
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      await waitFor('CONTAINER_EXITED', async () => (await rt<{ status: { state: string } }>('ContainerStatus', { container_id: cid })).status.state === 'CONTAINER_EXITED', { timeoutMs: 30_000, intervalMs: 2 });
      const status = Date.now() - killedAt;
      const lines = () => parseLogLines(v.logLines.slice(logFrom));
      const at = (pred: (l: Record<string, unknown>) => boolean) => Date.parse((lines().find(pred)?.time as string | undefined) ?? '');
      await waitFor('the exit logged and streamed', () => stopEvents.has(cid) && stopped.has(domain) && !Number.isNaN(at((l) => l.msg === 'container exited' && l.containerId === cid)), { timeoutMs: 10_000, intervalMs: 5 });
      const row = {
        libvirt: stopped.get(domain)! - killedAt,
        heard: at((l) => l.msg === 'domain stopped' && l.domain === domain) - killedAt,
        exited: at((l) => l.msg === 'container exited' && l.containerId === cid) - killedAt,
        event: stopEvents.get(cid)! - killedAt,
        status,
      };
      rows.push(row);
      console.log(`kill ${i + 1}: ${Object.entries(row).map(([k, ms]) => `${k} ${ms} ms`).join(', ')}`);
      // The kubelet's restart: the next attempt in the same pod, the dead one removed.
      const next = (await rt<{ container_id: string }>('CreateContainer', {
        pod_sandbox_id: pod.id,
        config: { metadata: { name: 'vm', attempt: i + 1 }, image: { image }, log_path: `vm-${i + 1}.log` },
        sandbox_config: sandboxConfig,
      })).container_id;
      await rt('RemoveContainer', { container_id: cid });
      cid = next;
      log = join(logDir, log.split('/').at(-2)!, `vm-${i + 1}.log`);
    }
  } finally {
    stream.cancel();
    offLv();
    await lv.close();
    await stopVmSuite(v, reg);
  }
  // What holding the watch costs a start: connecting and negotiating before the guest runs.
  const watchMs = parseLogLines(v.logLines).filter((l) => l.msg === 'container started' && typeof l.watchMs === 'number').map((l) => l.watchMs as number);
  if (watchMs.length) console.log(`StartContainer's watchMs (connect + negotiate): median ${pct(watchMs, 50)}, max ${Math.max(...watchMs)} over ${watchMs.length} starts`);
  console.log(`\n${rows.length} kills, ms from kill -9 (median / p90 / max):`);
  for (const k of ['libvirt', 'heard', 'exited', 'event', 'status'] as const) {
    const xs = rows.map((r) => r[k]);
    console.log(`  ${k.padEnd(8)} ${pct(xs, 50)} / ${pct(xs, 90)} / ${Math.max(...xs)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
