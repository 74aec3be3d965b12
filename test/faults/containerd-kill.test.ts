// Fault: the downstream containerd (the node's runtime for every pod that is not a VM; the
// suite's own, test/helpers/containerd.ts) killed with -9 while VM pods run, then started again.
// VM pods lose nothing and new ones start meanwhile; the calls vmlet forwards answer UNAVAILABLE
// naming containerd, leave nothing behind, and work again once it is back, with no call to
// vmlet needed to reconnect. (test/integration/proxy.test.ts covers a clean stop of containerd
// with its own container pod.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { startContainerd, type TestContainerd } from '../helpers/containerd.js';
import { vmletConfig } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { bootFleet, expectNothingLost, lastTicks, recordsNow, rt, secs, setupFleet, snapshot, stopFleet, type FleetPod } from './fleet.js';

let reg: TestRegistry | undefined;
let ctr: TestContainerd | undefined;
let v: VmletProcess | undefined;
let image = '';
let pods: FleetPod[] = [];
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let logDir = '';

beforeAll(async () => {
  ({ reg, v, image, logDir, pods } = await setupFleet({
    tag: 'containerd',
    n: 1,
    prefix: 'ctrd',
    vmletOptions: async (r: TestRegistry) => {
      ctr = await startContainerd({ registry: r });
      return { config: `${vmletConfig(r)}downstream: ${ctr.endpoint}\n` };
    },
  }));
}, 300_000);

afterAll(async () => {
  await stopFleet(v, reg);
  await ctr?.stop();
}, 120_000);

/** A pod for containerd (no RuntimeClass: the node's default runtime). */
function containerPod(name: string) {
  const uid = randomBytes(8).toString('hex');
  return { metadata: { name, namespace: 'vmlet-faults', uid, attempt: 0 }, hostname: name, log_directory: join(logDir, uid), linux: {} };
}

describe('the downstream containerd killed with -9', () => {
  it('leaves VM pods untouched and startable; forwarded calls answer UNAVAILABLE naming it, then work again by themselves', async () => {
    const before = await snapshot(v!, pods);
    const records = recordsNow(v!, pods);
    const at = lastTicks(pods);
    const pid = ctr!.pid()!;
    process.kill(pid, 'SIGKILL');
    await waitFor('containerd to be gone', () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    const downAt = performance.now();

    // Forwarded: refused with the endpoint named, nothing made on either side.
    const forwarded = {
      RunPodSandbox: await failure(rt(v!, 'RunPodSandbox', { config: containerPod('while-down'), runtime_handler: '' })),
      ListPodSandbox: await failure(rt(v!, 'ListPodSandbox', {})),
      ListImages: await failure(call(v!.image, 'ListImages', {})),
    };
    for (const [method, err] of Object.entries(forwarded)) {
      expect({ method, code: err.code, details: err.details }).toMatchObject({ method, code: Status.UNAVAILABLE });
      expect(err.details, method).toContain(ctr!.endpoint);
    }
    // VM pods need no containerd: one more starts meanwhile.
    const [late] = (await bootFleet(v!, image, logDir, 1, 'while-down')) as [FleetPod];
    expect((await rt<{ status: { state: string } }>(v!, 'ContainerStatus', { container_id: late.cid })).status.state).toBe('CONTAINER_RUNNING');

    await ctr!.restartDaemon();
    const backAt = performance.now();
    // vmlet's client reconnects by itself (backoff ≤ 2 s): the kubelet's next relist succeeds.
    const listed = await waitFor('ListPodSandbox through vmlet again', () => rt<{ items: Array<{ id: string; metadata: { name: string } }> }>(v!, 'ListPodSandbox', {}).catch(() => undefined), { timeoutMs: 30_000, intervalMs: 100 });
    const recoveredMs = performance.now() - backAt;
    expect(listed.items.map((p) => p.metadata.name).sort()).toEqual(['ctrd-0', 'while-down-0']); // the refused pod was never made
    const { pod_sandbox_id: plain } = await rt<{ pod_sandbox_id: string }>(v!, 'RunPodSandbox', { config: containerPod('after'), runtime_handler: '' });
    expect((await call<object, { status: { state: string } }>(ctr!.runtime, 'PodSandboxStatus', { pod_sandbox_id: plain })).status.state).toBe('SANDBOX_READY');
    await rt(v!, 'StopPodSandbox', { pod_sandbox_id: plain });
    await rt(v!, 'RemovePodSandbox', { pod_sandbox_id: plain });

    await expectNothingLost(v!, pods, before, records, at);
    console.log(`faults/containerd-kill: containerd down ${secs(backAt - downAt)} s; forwarded calls answered again ${secs(recoveredMs)} s after it was back; VM pods untouched, one started meanwhile`);
  });
});
