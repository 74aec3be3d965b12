// GetContainerEvents against a real vmlet, libvirtd and QEMU (TCG): a kubelet's event stream
// sees a VM-image container created, started, dead (QEMU killed with -9, heard from libvirt's
// lifecycle event, not a poll) and deleted, each event carrying the pod's status and its
// containers' statuses as PodSandboxStatus gives them. Prints how long the exit event took.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { runVmPod, startVmSuite, stopVmSuite } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import type { ContainerEventResponse__Output } from '../../src/gen/runtime/v1/ContainerEventResponse.js';

let v: VmletProcess;
let reg: TestRegistry;
let image = '';
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

beforeAll(async () => {
  ({ v, reg, refs: [image = ''] } = await startVmSuite([['kernelboot', 'events/kernel:1']]));
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

describe('GetContainerEvents', () => {
  it('streams created, started, stopped (a killed QEMU, at once) and deleted, with the pod\'s statuses', async () => {
    const stream = (v.runtime as unknown as { GetContainerEvents(req: object): ClientReadableStream<ContainerEventResponse__Output> }).GetContainerEvents({});
    const events: Array<ContainerEventResponse__Output & { at: number }> = [];
    stream.on('data', (e: ContainerEventResponse__Output) => events.push({ ...e, at: performance.now() }));
    stream.on('error', () => undefined); // cancelled at the end
    const seen = (cid: string, type: string) =>
      waitFor(`${type} for ${cid.slice(0, 8)}`, () => events.find((e) => e.container_id === cid && e.container_event_type === type), { timeoutMs: 60_000, intervalMs: 20 });
    // The stream is open once the server has it: an event for a container made before might be missed.
    await waitFor('the stream to be open', () => v.logLines.some((l) => l.includes('container event stream opened')) || undefined, { timeoutMs: 10_000, intervalMs: 20 });

    const pod = await runVmPod(v, { name: 'events', namespace: 'ev', image, logDir: tempDir('vmlet-events-logs-'), start: false });
    const created = await seen(pod.cid, 'CONTAINER_CREATED_EVENT');
    expect(created.pod_sandbox_status?.id).toBe(pod.id);
    expect(created.containers_statuses.map((c) => [c.id, c.state])).toEqual([[pod.cid, 'CONTAINER_CREATED']]);
    expect(BigInt(created.created_at)).toBeGreaterThan(0n);

    // The Stream* lists answer as their List* siblings do, here with a pod and a container in them.
    const collect = (method: string) =>
      new Promise<unknown[]>((resolve, reject) => {
        const got: unknown[] = [];
        const s = (v.runtime as unknown as Record<string, (r: object) => NodeJS.EventEmitter>)[method]!({});
        s.on('data', (m: Record<string, unknown[]>) => got.push(...Object.values(m).flat()));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
    const pods = (await rt<{ items: unknown[] }>('ListPodSandbox', {})).items;
    expect(pods.length).toBeGreaterThan(0);
    expect(await collect('StreamPodSandboxes')).toEqual(pods);
    expect(await collect('StreamContainers')).toEqual((await rt<{ containers: unknown[] }>('ListContainers', {})).containers);

    await rt('StartContainer', { container_id: pod.cid });
    const started = await seen(pod.cid, 'CONTAINER_STARTED_EVENT');
    expect(started.containers_statuses[0]?.state).toBe('CONTAINER_RUNNING');

    const st = await rt<{ info: Record<string, string> }>('ContainerStatus', { container_id: pod.cid, verbose: true });
    const domain = (JSON.parse(st.info.info!) as { domain: string }).domain;
    const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    const stopped = await seen(pod.cid, 'CONTAINER_STOPPED_EVENT');
    expect(stopped.containers_statuses[0]?.state).toBe('CONTAINER_EXITED');
    expect(stopped.containers_statuses[0]?.exit_code).not.toBe(0);
    console.log(`QEMU killed -9 → CONTAINER_STOPPED_EVENT on the stream: ${Math.round(stopped.at - killedAt)} ms`);

    await rt('RemoveContainer', { container_id: pod.cid });
    const deleted = await seen(pod.cid, 'CONTAINER_DELETED_EVENT');
    expect(deleted.containers_statuses).toEqual([]);
    // One event per change: nothing sent twice.
    expect(events.filter((e) => e.container_id === pod.cid).map((e) => e.container_event_type)).toEqual([
      'CONTAINER_CREATED_EVENT',
      'CONTAINER_STARTED_EVENT',
      'CONTAINER_STOPPED_EVENT',
      'CONTAINER_DELETED_EVENT',
    ]);
    stream.cancel();
    await waitFor('the stream to close on the server', () => v.logLines.some((l) => l.includes('container event stream closed')) || undefined, { timeoutMs: 10_000, intervalMs: 20 });
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 180_000);
});
