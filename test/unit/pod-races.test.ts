// Races between the pod verbs, with real concurrency: PodManager over the in-memory VM driver,
// whose define waits on a gate the test opens, so a CreateContainer is caught holding the
// pod's lock while StopPodSandbox, RemovePodSandbox, StartContainer, RemoveImage or PortForward
// run. CreateContainer runs for real (kernel-boot image: no qemu-img; the seed ISO is written).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { defaults } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { ImageStore } from '../../src/image/store.js';
import type { ImageRecord } from '../../src/image/image-index.js';
import type { VmSpec } from '../../src/vm/spec.js';
import type { PodNetworkState } from '../../src/net/index.js';
import { PodManager } from '../../src/pod/manager.js';
import { nowNs, type SandboxRecord } from '../../src/pod/records.js';
import { createContainer } from '../../src/pod/container-create.js';
import { startContainer } from '../../src/pod/container-start.js';
import { stopPodSandbox } from '../../src/pod/sandbox-stop.js';
import { removePodSandbox } from '../../src/pod/sandbox-remove.js';
import { portForward } from '../../src/pod/sandbox-port-forward.js';
import { podStreamLookups } from '../../src/pod/streams.js';
import { errorKind } from '../../src/pod/error-kind.js';
import { MemoryDriver } from '../helpers/memory-driver.js';
import { makeSandbox, startMemoryManager } from '../helpers/memory-manager.js';
import { waitFor } from '../helpers/wait.js';

/** define() waits until the test opens the gate, and says when it is waiting. */
class GatedDriver extends MemoryDriver {
  defining = 0;
  private open: (() => void) | undefined;
  private gate: Promise<void> | undefined;

  closeGate(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  openGate(): void {
    this.open?.();
    this.gate = undefined;
  }

  override async define(spec: VmSpec): Promise<void> {
    this.defining++;
    await this.gate;
    return super.define(spec);
  }
}

let dir: string;
let vm: GatedDriver;
let images: ImageStore;
let image: ImageRecord;
const managers: PodManager[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmlet-pod-races-'));
  vm = new GatedDriver();
  const kernel = join(dir, 'vmlinuz');
  writeFileSync(kernel, 'not a kernel: nothing boots here');
  let m: PodManager | undefined;
  images = new ImageStore(join(dir, 'images'), defaults.registries, createLogger('fatal', new Writable({ write: (_c, _e, cb) => cb() })), { inUse: (id) => m?.imageInUse(id) ?? false });
  await images.init();
  image = images.index.put({
    id: `sha256:${'ab'.repeat(32)}`,
    repoTags: ['registry.test/vm:1'],
    repoDigests: [],
    size: 1,
    pinned: false,
    manifestDigest: `sha256:${'cd'.repeat(32)}`,
    blobs: [],
    layers: [],
    user: '',
    labels: {},
    boot: { kind: 'kernel', kernel: { kernel } },
    pulledAt: nowNs(),
  });
  m = await manager();
});

afterEach(async () => {
  vm.openGate();
  for (const m of managers.splice(0)) await m.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function manager(): Promise<PodManager> {
  const m = await startMemoryManager({ stateDir: join(dir, 'state'), vm, images });
  managers.push(m);
  return m;
}

const pm = () => managers[0]!;

const create = (m: PodManager, s: SandboxRecord) => createContainer(m, s.id, { metadata: { name: 'vm', attempt: 0 }, image: { image: 'registry.test/vm:1' } } as Parameters<typeof createContainer>[2], null);

/** A CreateContainer caught in define(), holding the pod's lock. */
async function createInFlight(m: PodManager, s: SandboxRecord): Promise<{ done: Promise<string> }> {
  vm.closeGate();
  const before = vm.defining;
  const p = create(m, s);
  p.catch(() => undefined); // looked at by the test
  await waitFor('CreateContainer to reach define', () => vm.defining > before, { timeoutMs: 20_000, intervalMs: 5 });
  return { done: p }; // wrapped: an async function's result would wait for the create itself
}

/** The kind cri/ maps the error of `p` to, and its message. */
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => ({ kind: 'resolved', message: '' }),
    (err: unknown) => ({ kind: errorKind(err) ?? `unclassified: ${String(err)}`, message: (err as Error).message }),
  );

const settled = (p: Promise<unknown>) => p.then(() => undefined, () => undefined);

/** Lets queued work (another verb waiting for a lock) run as far as it can. */
const drain = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

describe('RemovePodSandbox and StopPodSandbox against a CreateContainer in flight', () => {
  it('RemovePodSandbox while CreateContainer defines the domain: no domain is left behind', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const creating = (await createInFlight(m, s)).done;
    const removing = removePodSandbox(m, s.id);
    await drain();
    vm.openGate();
    await settled(creating);
    await removing;
    expect(m.sandboxes.has(s.id)).toBe(false);
    expect(m.containersOf(s.id)).toEqual([]);
    // Before the fix the remove listed no container, waited for the lock, then deleted the pod's
    // state under the domain CreateContainer had just defined: an orphan, invisible after a restart.
    expect([...vm.vms.keys()]).toEqual([]);
  });

  it('CreateContainer queued behind RemovePodSandbox gets NOT_FOUND and defines nothing', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const first = (await createInFlight(m, s)).done; // holds the lock so both calls below queue
    const removing = removePodSandbox(m, s.id);
    const second = outcome(createContainer(m, s.id, { metadata: { name: 'other', attempt: 0 }, image: { image: 'registry.test/vm:1' } } as Parameters<typeof createContainer>[2], null));
    await drain();
    vm.openGate();
    await settled(first);
    await removing;
    const r = await second;
    expect(r.kind).toBe('not-found');
    expect(r.message).toContain(s.id);
    expect([...vm.vms.keys()]).toEqual([]);
  });

  it('StopPodSandbox while CreateContainer defines the domain: the new container cannot start in the stopped pod', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const creating = (await createInFlight(m, s)).done;
    const stopping = stopPodSandbox(m, s.id);
    await drain();
    vm.openGate();
    const id = await creating;
    await stopping;
    expect(s.state).toBe('notready');
    const r = await outcome(startContainer(m, id));
    expect(r.kind).toBe('failed-precondition');
    expect(r.message).toMatch(new RegExp(`pod sandbox ${s.id} is notready`));
    expect(vm.vms.get(m.containers.get(id)!.domainName)?.state).toBe('shutoff');
  });
});

describe('StartContainer checks the pod', () => {
  it('a created container of a NOTREADY pod is refused with FAILED_PRECONDITION naming the pod state', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const id = await create(m, s);
    await stopPodSandbox(m, s.id);
    const r = await outcome(startContainer(m, id));
    expect(r).toEqual({ kind: 'failed-precondition', message: expect.stringMatching(new RegExp(`container ${id}.*pod sandbox ${s.id} is notready`)) as string });
    expect(m.containers.get(id)?.state).toBe('created');
    expect(vm.vms.get(m.containers.get(id)!.domainName)?.state).toBe('shutoff');
  });
});

describe('RemoveImage against a CreateContainer in flight', () => {
  it('the image of a CreateContainer under way is in use: RemoveImage is refused, the create completes', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const creating = (await createInFlight(m, s)).done;
    const r = await outcome(images.remove('registry.test/vm:1'));
    expect(r.kind).toBe('failed-precondition');
    expect(r.message).toContain('in use');
    vm.openGate();
    const id = await creating;
    expect(m.containers.get(id)?.imageId).toBe(image.id);
    expect(images.status('registry.test/vm:1')?.id).toBe(image.id);
  });

  it('a CreateContainer that failed holds the image no longer', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    vm.down = true; // define fails
    expect((await outcome(create(m, s))).kind).toBe('unavailable');
    vm.down = false;
    expect(m.imageInUse(image.id)).toBe(false);
    await images.remove('registry.test/vm:1');
    expect(images.status('registry.test/vm:1')).toBeUndefined();
  });
});

describe('PortForward checks the pod', () => {
  const net = (s: SandboxRecord) => ({ sandboxId: s.id, ips: [{ family: 4, address: '10.250.9.9', prefix: 24 }] }) as unknown as PodNetworkState;

  it('refuses a NOTREADY pod at the RPC and when the stream dials', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    m.networks.set(s.id, net(s));
    const streams = { registerPortForward: () => 'http://127.0.0.1:1/portforward/token' };
    expect(portForward(m, streams, s.id, [80])).toMatch(/portforward/);
    expect(await podStreamLookups(m).podAddress(s.id)).toBe('10.250.9.9');

    m.networks.delete(s.id); // StopPodSandbox tears the network down (here: there is none to tear)
    await stopPodSandbox(m, s.id);
    m.networks.set(s.id, net(s)); // the state stays known after a stop, as for a real pod
    const rpc = await outcome(Promise.resolve().then(() => portForward(m, streams, s.id, [80])));
    expect(rpc.kind).toBe('failed-precondition');
    expect(rpc.message).toMatch(new RegExp(`pod sandbox ${s.id} is notready`));
    // A URL handed out before the stop must not dial an address CNI DEL has released.
    const dial = await outcome(podStreamLookups(m).podAddress(s.id));
    expect(dial.kind).toBe('failed-precondition');
    expect(dial.message).toMatch(new RegExp(`pod sandbox ${s.id} is notready`));
  });

  it('answers NOT_FOUND for a removed pod when the stream dials', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    await removePodSandbox(m, s.id);
    expect((await outcome(podStreamLookups(m).podAddress(s.id))).kind).toBe('not-found');
  });
});


describe('CreateContainer writes the seed ISO while it defines the domain', () => {
  it("a define that fails while the seed is written: define's error, no container dir, no domain", async () => {
    const m = pm();
    const s = await makeSandbox(m);
    vm.down = true; // define fails at once, while the seed is still being written
    const r = await outcome(create(m, s));
    vm.down = false;
    expect(r.kind).toBe('unavailable');
    expect(m.containersOf(s.id)).toEqual([]);
    expect([...vm.vms.keys()]).toEqual([]);
    expect(readdirSync(join(m.store.sandboxDir(s.id), 'containers'))).toEqual([]);
  });

  it('a define that works gets the seed written in full, where the domain looks for it', async () => {
    const m = pm();
    const s = await makeSandbox(m);
    const id = await create(m, s);
    const spec = vm.vms.get(m.containers.get(id)!.domainName)!.spec;
    expect(spec.seed?.path).toBe(join(m.store.containerDir(s.id, id), 'seed.iso'));
    expect(readFileSync(spec.seed!.path).subarray(32769, 32774).toString('latin1')).toBe('CD001'); // ISO 9660's primary volume descriptor
  });
});
