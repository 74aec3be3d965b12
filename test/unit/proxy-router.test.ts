// The converged node's routing (src/proxy/router.ts) against fake backends, and the downstream
// client (src/proxy/downstream.ts) against a small in-process CRI server on a unix socket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { Metadata, Server, ServerCredentials, status as Status, type ServiceError, type UntypedServiceImplementation, type handleUnaryCall } from '@grpc/grpc-js';
import { pino } from 'pino';
import { unary } from '../../src/cri/rpc.js';
import { invalidArgument, notFound, VmletError } from '../../src/errors.js';
import { loadCri } from '../../src/grpc/cri-proto.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { checkDownstream, connectDownstream, forwardedMetadata, type CallOptions, type Downstream } from '../../src/proxy/downstream.js';
import { mergeStatus, routedServices, type Ownership } from '../../src/proxy/router.js';
import { mergeImages } from '../../src/proxy/images.js';
import { tempDir } from '../helpers/vmlet.js';

const log = pino({ level: 'silent' });
const ENDPOINT = 'unix:///run/fake/containerd.sock';

interface Sent { service: string; method: string; request: unknown; opts: CallOptions }

/** A downstream that answers from a table (a function may throw a ServiceError-like object). */
function fakeDownstream(answers: Record<string, (req: Record<string, unknown>) => unknown>): Downstream & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    endpoint: ENDPOINT,
    sent,
    async call<R>(service: 'runtime' | 'image', method: string, request: unknown, opts: CallOptions = {}): Promise<R> {
      sent.push({ service, method, request, opts });
      const a = answers[method];
      if (!a) throw grpcErr(Status.UNIMPLEMENTED, `fake downstream: no ${method}`);
      return a(request as Record<string, unknown>) as R;
    },
    close() {},
  };
}

function grpcErr(code: Status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new Metadata() });
}

const VM_PODS = new Set(['vmpod1', 'vmpod2']);
const VM_CTRS = new Set(['vmctr1']);
const owner: Ownership = {
  ownsSandbox: (id) => {
    if (id === 'vm') throw invalidArgument('ambiguous'); // an ambiguous prefix
    return [...VM_PODS].some((p) => id !== '' && p.startsWith(id));
  },
  ownsContainer: (id) => VM_CTRS.has(id),
  isVmHandler: (h) => h === 'vmlet',
  ownsPodConfig: (m) => m?.uid === 'vm-uid',
};

/** vmlet's side: every call answers `{ from: 'vmlet', method }` unless listed here. */
function ownServices(extra: Record<string, (req: Record<string, unknown>) => Promise<unknown>> = {}) {
  const mk = (names: string[]): UntypedServiceImplementation =>
    Object.fromEntries(names.map((m) => [m, unary<Record<string, unknown>, unknown>(log, m, extra[m] ?? (async () => ({ from: 'vmlet', method: m })))]));
  return {
    runtime: mk(['RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'ListPodSandbox', 'CreateContainer', 'StartContainer', 'ContainerStatus', 'ListContainers', 'ListContainerStats', 'Status', 'Version', 'Exec']),
    image: mk(['PullImage', 'ImageStatus', 'ListImages', 'RemoveImage', 'ImageFsInfo']),
  };
}

function invoke(impl: UntypedServiceImplementation, method: string, request: object, opts: { deadline?: number; metadata?: Metadata } = {}): Promise<Record<string, unknown>> {
  const call = { request, metadata: opts.metadata ?? new Metadata(), getDeadline: () => opts.deadline ?? Infinity, cancelled: false };
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the handler's gRPC status, as the tests inspect it
    (impl[method] as handleUnaryCall<object, Record<string, unknown>>)(call as never, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

const fromDownstream = (method: string) => () => ({ from: 'downstream', method });

describe('routing', () => {
  it('sends RunPodSandbox by handler and every id to its owner', async () => {
    const ds = fakeDownstream({ RunPodSandbox: fromDownstream('RunPodSandbox'), ContainerStatus: fromDownstream('ContainerStatus'), CreateContainer: fromDownstream('CreateContainer') });
    const { runtime } = routedServices({ log, own: ownServices(), owner, downstream: ds });
    expect(await invoke(runtime, 'RunPodSandbox', { runtime_handler: 'vmlet' })).toMatchObject({ from: 'vmlet' });
    expect(await invoke(runtime, 'RunPodSandbox', { runtime_handler: '' })).toMatchObject({ from: 'downstream' });
    expect(await invoke(runtime, 'RunPodSandbox', { runtime_handler: 'runc' })).toMatchObject({ from: 'downstream' });
    expect(await invoke(runtime, 'ContainerStatus', { container_id: 'vmctr1' })).toMatchObject({ from: 'vmlet' });
    expect(await invoke(runtime, 'ContainerStatus', { container_id: 'abc' })).toMatchObject({ from: 'downstream' });
    expect(await invoke(runtime, 'CreateContainer', { pod_sandbox_id: 'vmpod1' })).toMatchObject({ from: 'vmlet' });
    expect(await invoke(runtime, 'CreateContainer', { pod_sandbox_id: 'vm' })).toMatchObject({ from: 'vmlet' }); // ambiguous: vmlet says so
    expect(await invoke(runtime, 'CreateContainer', { pod_sandbox_id: 'other' })).toMatchObject({ from: 'downstream' });
    // Version answers as vmlet without asking the downstream.
    expect(await invoke(runtime, 'Version', {})).toMatchObject({ from: 'vmlet' });
    expect(ds.sent.map((s) => s.method)).toEqual(['RunPodSandbox', 'RunPodSandbox', 'ContainerStatus', 'CreateContainer']);
  });

  it('passes the downstream answer and errors through unchanged, metadata and deadline too', async () => {
    const ds = fakeDownstream({
      ContainerStatus: (req) => {
        if (req.container_id === 'gone') throw grpcErr(Status.NOT_FOUND, 'container "gone" not found');
        return { status: { id: req.container_id, state: 'CONTAINER_RUNNING' }, info: {} };
      },
    });
    const { runtime } = routedServices({ log, own: ownServices(), owner, downstream: ds });
    const md = new Metadata();
    md.set('x-trace', 't1');
    const deadline = Date.now() + 5000;
    expect(await invoke(runtime, 'ContainerStatus', { container_id: 'c1' }, { metadata: md, deadline })).toEqual({ status: { id: 'c1', state: 'CONTAINER_RUNNING' }, info: {} });
    expect(ds.sent[0]!.opts.deadline).toBe(deadline);
    expect(ds.sent[0]!.opts.metadata!.get('x-trace')).toEqual(['t1']);
    const err = (await invoke(runtime, 'ContainerStatus', { container_id: 'gone' }).catch((e: unknown) => e)) as ServiceError;
    expect(err).toMatchObject({ code: Status.NOT_FOUND, details: 'container "gone" not found' });
  });

  it('makes Stop/Remove of an unknown id succeed when the downstream says NotFound', async () => {
    const nf = () => {
      throw grpcErr(Status.NOT_FOUND, 'not found');
    };
    const ds = fakeDownstream({ StopPodSandbox: nf, RemovePodSandbox: nf, StopContainer: nf, RemoveContainer: nf, StartContainer: nf });
    const { runtime } = routedServices({ log, own: ownServices(), owner, downstream: ds });
    for (const [m, f] of [['StopPodSandbox', 'pod_sandbox_id'], ['RemovePodSandbox', 'pod_sandbox_id'], ['StopContainer', 'container_id'], ['RemoveContainer', 'container_id']] as const) {
      expect(await invoke(runtime, m, { [f]: 'nobody' })).toEqual({});
    }
    // Not for other verbs.
    await expect(invoke(runtime, 'StartContainer', { container_id: 'nobody' })).rejects.toMatchObject({ code: Status.NOT_FOUND });
  });

  it('merges List* from both sides, passing filters; a downstream failure is UNAVAILABLE naming it', async () => {
    let down = true;
    const ds = fakeDownstream({
      ListPodSandbox: (req) => {
        if (!down) throw grpcErr(Status.UNAVAILABLE, 'connect ENOENT');
        return { items: [{ id: 'c1', filter: req.filter }] };
      },
      ListContainers: () => {
        throw grpcErr(Status.INTERNAL, 'boom');
      },
      ListPodSandboxStats: () => ({ stats: [{ attributes: { id: 'c1' } }] }),
    });
    const own = ownServices({ ListPodSandbox: async () => ({ items: [{ id: 'vmpod1' }] }), ListContainerStats: async () => { throw new VmletError('unimplemented', 'not yet'); } });
    const { runtime } = routedServices({ log, own, owner, downstream: ds });
    const filter = { label_selector: { app: 'x' } };
    expect(await invoke(runtime, 'ListPodSandbox', { filter })).toEqual({ items: [{ id: 'vmpod1' }, { id: 'c1', filter }] });
    down = false;
    const err = (await invoke(runtime, 'ListPodSandbox', {}).catch((e: unknown) => e)) as ServiceError;
    expect(err.code).toBe(Status.UNAVAILABLE);
    expect(err.details).toContain(ENDPOINT);
    const err2 = (await invoke(runtime, 'ListContainers', {}).catch((e: unknown) => e)) as ServiceError;
    expect(err2.code).toBe(Status.UNAVAILABLE);
    expect(err2.details).toContain('INTERNAL: boom');
    // vmlet does not implement it: the downstream's answer alone; neither side: UNIMPLEMENTED.
    expect(await invoke(runtime, 'ListPodSandboxStats', {})).toEqual({ stats: [{ attributes: { id: 'c1' } }] });
    await expect(invoke(runtime, 'ListContainerStats', {})).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
  });
});

describe('images on a converged node', () => {
  const K = 'sha256:' + 'k'.repeat(64);
  const B = 'sha256:' + 'b'.repeat(64);
  const nameOf = (req: Record<string, unknown>) => (req.image as { image: string }).image;

  /** vmlet's store holds `kernel` (id K) and `both` (B); the downstream's `busybox` and `both` (B). */
  function setup(over: { ownPull?: (req: Record<string, unknown>) => Promise<unknown>; downPull?: (req: Record<string, unknown>) => unknown } = {}) {
    const ownSent: string[] = [];
    const mineHas: Record<string, string> = { kernel: K, both: B, moved: K };
    const theirsHas: Record<string, string> = { busybox: B, both: B, moved: B };
    const ds = fakeDownstream({
      PullImage: over.downPull ?? ((req) => ({ image_ref: `down:${nameOf(req)}` })),
      ImageStatus: (req) => {
        const id = theirsHas[nameOf(req)];
        return id ? { image: { id, repo_tags: [nameOf(req)] }, info: req.verbose ? { info: '{"chainID":"c"}' } : {} } : { image: null, info: {} };
      },
      ListImages: () => ({ images: [{ id: B, repo_tags: ['busybox'] }, { id: K, repo_tags: ['k:v2'] }] }),
      RemoveImage: () => {
        throw grpcErr(Status.NOT_FOUND, 'no such image');
      },
      ImageFsInfo: () => ({ image_filesystems: [{ fs_id: { mountpoint: '/ctr' } }], container_filesystems: [] }),
    });
    const track = (m: string, fn: (req: Record<string, unknown>) => Promise<unknown>) => async (req: Record<string, unknown>) => {
      ownSent.push(m);
      return fn(req);
    };
    const own = ownServices({
      PullImage: track('PullImage', over.ownPull ?? (async (req) => ({ image_ref: `vmlet:${nameOf(req)}` }))),
      ImageStatus: track('ImageStatus', async (req) => {
        const id = mineHas[nameOf(req)];
        return id ? { image: { id, repo_tags: [nameOf(req)] }, info: req.verbose ? { info: '{"boot":"kernel"}' } : {} } : { image: null, info: {} };
      }),
      ListImages: track('ListImages', async () => ({ images: [{ id: K, repo_tags: ['k:v1'] }] })),
      ImageFsInfo: track('ImageFsInfo', async () => ({ image_filesystems: [{ fs_id: { mountpoint: '/vmlet' } }], container_filesystems: [{ fs_id: { mountpoint: '/vmlet/c' } }] })),
      RemoveImage: track('RemoveImage', async (req) => {
        if (nameOf(req) === 'x') throw notFound('no image');
        if (nameOf(req) === 'used') throw new VmletError('failed-precondition', 'image used is in use by a container');
        return {};
      }),
    });
    const { image } = routedServices({ log, own, owner, downstream: ds });
    const sent = () => ({ vmlet: [...ownSent], downstream: ds.sent.map((s) => s.method) });
    const reset = () => {
      ownSent.length = 0;
      ds.sent.length = 0;
    };
    return { image, sent, reset };
  }

  it('goes to one store when ImageSpec.runtime_handler names it (KEP-4216)', async () => {
    const { image, sent, reset } = setup();
    for (const m of ['PullImage', 'ImageStatus', 'RemoveImage']) {
      reset();
      await invoke(image, m, { image: { image: 'kernel', runtime_handler: 'vmlet' } });
      expect(sent()).toEqual({ vmlet: [m], downstream: [] });
      reset();
      await invoke(image, m, { image: { image: 'busybox', runtime_handler: 'runc' } });
      expect(sent()).toEqual({ vmlet: [], downstream: [m] });
    }
    // Each store answers for itself: vmlet's copy of `kernel`, containerd's of `busybox`.
    expect((await invoke(image, 'ImageStatus', { image: { image: 'kernel', runtime_handler: 'vmlet' } })).image).toEqual({ id: K, repo_tags: ['kernel'] });
    expect((await invoke(image, 'ImageStatus', { image: { image: 'kernel', runtime_handler: 'runc' } })).image).toBeNull();
    expect(await invoke(image, 'PullImage', { image: { image: 'x', runtime_handler: 'runc' } })).toEqual({ image_ref: 'down:x' });
    reset();
    await invoke(image, 'ListImages', { filter: { image: { image: '', runtime_handler: 'vmlet' } } });
    expect(sent()).toEqual({ vmlet: ['ListImages'], downstream: [] });
  });

  it('answers ImageStatus present only when both stores hold the same image', async () => {
    const { image } = setup();
    const status = (name: string, verbose = false) => invoke(image, 'ImageStatus', { image: { image: name }, verbose });
    expect((await status('kernel')).image).toBeNull(); // vmlet's only: a container pod could not use it
    expect((await status('busybox')).image).toBeNull(); // containerd's only: the case
    expect((await status('moved')).image).toBeNull(); // the tag names different images in the two
    expect((await status('none')).image).toBeNull();
    expect(await status('both')).toEqual({ image: { id: B, repo_tags: ['both'] }, info: {} });
    const v = await status('both', true);
    expect(v.info).toEqual({ info: '{"boot":"kernel"}', 'downstream.info': '{"chainID":"c"}', stores: JSON.stringify({ vmlet: B, downstream: B, downstreamEndpoint: ENDPOINT }) });
    expect((await status('busybox', true)).info).toEqual({ stores: JSON.stringify({ vmlet: null, downstream: B, downstreamEndpoint: ENDPOINT }) });
  });

  it('pulls into both stores without a handler; a failure names the store', async () => {
    const ok = setup();
    expect(await invoke(ok.image, 'PullImage', { image: { image: 'busybox' } })).toEqual({ image_ref: 'vmlet:busybox' });
    expect(ok.sent()).toEqual({ vmlet: ['PullImage'], downstream: ['PullImage'] });

    const downFails = setup({ downPull: () => { throw grpcErr(Status.NOT_FOUND, 'failed to resolve reference "busybox": not found'); } });
    const e1 = (await invoke(downFails.image, 'PullImage', { image: { image: 'busybox' } }).catch((e: unknown) => e)) as ServiceError;
    expect(e1.code).toBe(Status.NOT_FOUND);
    expect(e1.details).toBe(`PullImage: downstream CRI ${ENDPOINT}: failed to resolve reference "busybox": not found (the copy in vmlet's image store was pulled and stays)`);

    const ownFails = setup({ ownPull: async () => { throw new VmletError('unavailable', 'registry r: connection refused'); } });
    const e2 = (await invoke(ownFails.image, 'PullImage', { image: { image: 'busybox' } }).catch((e: unknown) => e)) as ServiceError;
    expect(e2.code).toBe(Status.UNAVAILABLE);
    expect(e2.details).toBe(`PullImage: vmlet's image store: registry r: connection refused (the copy in downstream CRI ${ENDPOINT} was pulled and stays)`);
  });

  it('answers a pod\'s pull from its backend\'s store, filling the other best effort', async () => {
    let release: (v: unknown) => void = () => undefined;
    const hang = new Promise((resolve) => (release = resolve));
    // The other store's pull never ends during the call: the answer does not wait for it.
    const s = setup({ downPull: async () => { await hang; throw grpcErr(Status.UNKNOWN, 'unpack failed'); } });
    const vmPod = { metadata: { name: 'vm', namespace: 'ns', uid: 'vm-uid' } };
    expect(await invoke(s.image, 'PullImage', { image: { image: 'kernel' }, sandbox_config: vmPod })).toEqual({ image_ref: 'vmlet:kernel' });
    expect(s.sent()).toEqual({ vmlet: ['PullImage'], downstream: ['PullImage'] });
    release(undefined);

    const t = setup({ ownPull: async () => { throw new VmletError('invalid-argument', 'unsupported media type'); } });
    const plainPod = { metadata: { name: 'web', namespace: 'ns', uid: 'other' } };
    expect(await invoke(t.image, 'PullImage', { image: { image: 'busybox' }, sandbox_config: plainPod })).toEqual({ image_ref: 'down:busybox' });
    // The pod's own store failing fails the pull, naming it.
    const e = (await invoke(t.image, 'PullImage', { image: { image: 'kernel' }, sandbox_config: vmPod }).catch((x: unknown) => x)) as ServiceError;
    expect(e.code).toBe(Status.INVALID_ARGUMENT);
    expect(e.details).toBe("PullImage: vmlet's image store: unsupported media type");
  });

  it('lists the union, removes from both, and reports both filesystems', async () => {
    const { image, sent, reset } = setup();
    expect((await invoke(image, 'ListImages', {})).images).toEqual([{ id: K, repo_tags: ['k:v1', 'k:v2'], repo_digests: [] }, { id: B, repo_tags: ['busybox'] }]);
    reset();
    expect(await invoke(image, 'RemoveImage', { image: { image: 'x' } })).toEqual({});
    expect(sent()).toEqual({ vmlet: ['RemoveImage'], downstream: ['RemoveImage'] });
    expect(await invoke(image, 'RemoveImage', { image: { image: 'x', runtime_handler: 'runc' } })).toEqual({}); // NotFound is removed
    // vmlet's store refusing (a VM uses the image) keeps containerd's copy too.
    reset();
    const e = (await invoke(image, 'RemoveImage', { image: { image: 'used' } }).catch((x: unknown) => x)) as ServiceError;
    expect(e).toMatchObject({ code: Status.FAILED_PRECONDITION, details: "RemoveImage: vmlet's image store: image used is in use by a container" });
    expect(sent()).toEqual({ vmlet: ['RemoveImage'], downstream: [] });
    const fs = await invoke(image, 'ImageFsInfo', {});
    expect(fs.image_filesystems).toEqual([{ fs_id: { mountpoint: '/ctr' } }, { fs_id: { mountpoint: '/vmlet' } }]);
    expect(fs.container_filesystems).toEqual([{ fs_id: { mountpoint: '/vmlet/c' } }]);
  });
});

describe('mergeStatus', () => {
  const cond = (type: string, status: boolean, reason = '', message = '') => ({ type, status, reason, message });
  const mine = {
    status: { conditions: [cond('RuntimeReady', true), cond('NetworkReady', true)] },
    runtime_handlers: [{ name: 'vmlet' }],
    info: { hypervisor: 'tcg' },
  };

  it('is ready when both are, and lists both backends\' handlers', () => {
    const theirs = { status: { conditions: [cond('RuntimeReady', true), cond('NetworkReady', true)] }, runtime_handlers: [{ name: 'runc' }, { name: 'vmlet' }], info: { config: '{}' } };
    const s = mergeStatus(mine, theirs, ENDPOINT);
    expect((s.status as { conditions: unknown[] }).conditions).toEqual([cond('RuntimeReady', true), cond('NetworkReady', true)]);
    expect(s.runtime_handlers).toEqual([{ name: 'vmlet' }, { name: 'runc' }]);
    expect(s.info).toEqual({ hypervisor: 'tcg', 'downstream.config': '{}' });
  });

  it('says which backend is not ready', () => {
    const theirs = { status: { conditions: [cond('RuntimeReady', true), cond('NetworkReady', false, 'NetworkPluginNotReady', 'cni config uninitialized')] }, runtime_handlers: [] };
    const [rr, nr] = (mergeStatus(mine, theirs, ENDPOINT).status as { conditions: ReturnType<typeof cond>[] }).conditions;
    expect(rr!.status).toBe(true);
    expect(nr).toEqual(cond('NetworkReady', false, 'NetworkPluginNotReady', `downstream ${ENDPOINT}: NetworkPluginNotReady: cni config uninitialized`));
  });

  it('is not ready when the downstream does not answer', () => {
    const [rr] = (mergeStatus(mine, { code: Status.UNAVAILABLE, details: 'connect ENOENT' }, ENDPOINT).status as { conditions: ReturnType<typeof cond>[] }).conditions;
    expect(rr).toMatchObject({ type: 'RuntimeReady', status: false, reason: 'DownstreamUnavailable' });
    expect(rr!.message).toContain(ENDPOINT);
  });
});

describe('mergeImages', () => {
  it('lists an image known to both once', () => {
    expect(mergeImages([{ id: 'a', repo_tags: ['x'], repo_digests: ['d1'] }], [{ id: 'a', repo_tags: ['y'], repo_digests: ['d1'] }, { id: 'b' }])).toEqual([
      { id: 'a', repo_tags: ['x', 'y'], repo_digests: ['d1'] },
      { id: 'b' },
    ]);
  });
});

describe('downstream client', () => {
  let dir: string;
  let server: Server;
  let socket: string;
  const seen: { md?: Metadata; deadline?: number } = {};

  beforeAll(async () => {
    dir = tempDir('vmlet-proxy-unit-');
    socket = join(dir, 'cri.sock');
    const cri = loadCri().runtime.v1;
    server = new Server();
    server.addService(cri.RuntimeService.service, {
      Version: ((call, cb) => {
        seen.md = call.metadata;
        const d = call.getDeadline();
        seen.deadline = d instanceof Date ? d.getTime() : d;
        cb(null, { version: '0.1.0', runtime_name: 'fakecri', runtime_version: '9.9', runtime_api_version: 'v1' });
      }) as handleUnaryCall<object, object>,
    });
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  });

  afterAll(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('calls with the caller\'s metadata and deadline', async () => {
    const ds = connectDownstream(`unix://${socket}`);
    try {
      const md = new Metadata();
      md.set('x-request-id', 'r1');
      md.set('user-agent', 'kubelet');
      const deadline = Date.now() + 3000;
      const v = await ds.call<{ runtime_name: string }>('runtime', 'Version', { version: '' }, { metadata: md, deadline });
      expect(v.runtime_name).toBe('fakecri');
      expect(seen.md!.get('x-request-id')).toEqual(['r1']);
      expect(seen.deadline).toBeGreaterThan(Date.now());
      // The caller's, as the server reads it: grpc-timeout is the time left when sent, so the
      // server's deadline is later by the call's transit (59 ms once, on a loaded machine).
      expect(seen.deadline).toBeLessThanOrEqual(deadline + 1000);
    } finally {
      ds.close();
    }
  });

  it('drops transport headers from forwarded metadata', () => {
    const md = new Metadata();
    md.set('user-agent', 'x');
    md.set('te', 'trailers');
    md.add('x-a', '1');
    md.add('x-a', '2');
    const out = forwardedMetadata(md);
    expect(out.getMap()).toEqual({ 'x-a': '1' });
    expect(out.get('x-a')).toEqual(['1', '2']);
  });

  it('checkDownstream reports the version, or what failed and where', async () => {
    expect(await checkDownstream(`unix://${socket}`)).toEqual({ ok: true, version: 'fakecri 9.9 (CRI v1)' });
    const bad = await checkDownstream(`unix://${dir}/nothing.sock`, 1000);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error).toContain(`${dir}/nothing.sock`);
  });
});

describe('config downstream', () => {
  const file = (yaml: string) => {
    const d = tempDir('vmlet-proxy-cfg-');
    const p = join(d, 'c.yaml');
    writeFileSync(p, yaml);
    return p;
  };

  it('is absent by default, read from the file or VMLET_DOWNSTREAM, and validated', () => {
    expect(loadConfig({ flags: { config: file('') }, env: {} }).config.downstream).toBeUndefined();
    expect(loadConfig({ flags: { config: file('downstream: unix:///run/containerd/containerd.sock\n') }, env: {} }).config.downstream).toBe('unix:///run/containerd/containerd.sock');
    expect(loadConfig({ flags: { config: file('') }, env: { VMLET_DOWNSTREAM: 'unix:///x/c.sock' } }).config.downstream).toBe('unix:///x/c.sock');
    for (const bad of ['/run/containerd/containerd.sock', 'tcp://127.0.0.1:1', 'unix://relative.sock', 'unix:///']) {
      expect(() => loadConfig({ flags: { config: file(`downstream: ${bad}\n`) }, env: {} })).toThrow(ConfigError);
    }
  });
});
