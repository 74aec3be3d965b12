// The real `vmlet serve` on a temp socket, called with a gRPC client generated from proto/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { call, exitReport, failure, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { VersionResponse__Output } from '../../src/gen/runtime/v1/VersionResponse.js';
import type { StatusResponse__Output } from '../../src/gen/runtime/v1/StatusResponse.js';
import type { RuntimeConfigResponse__Output } from '../../src/gen/runtime/v1/RuntimeConfigResponse.js';
import { waitFor } from '../helpers/wait.js';


describe('vmlet serve', () => {
  let v: VmletProcess;
  beforeAll(async () => {
    v = await startVmlet();
  });
  afterAll(async () => {
    await v?.stop();
  });

  it('creates the socket with mode 0660', () => {
    const st = statSync(v.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
  });

  it('answers Version', async () => {
    const res = await call<object, VersionResponse__Output>(v.runtime, 'Version', { version: 'v1' });
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(res).toEqual({ version: '0.1.0', runtime_name: 'vmlet', runtime_version: pkg.version, runtime_api_version: 'v1' });
  });

  it('reports RuntimeReady and NetworkReady from reality, and the handlers', async () => {
    const res = await call<object, StatusResponse__Output>(v.runtime, 'Status', { verbose: false });
    const byType = Object.fromEntries(res.status!.conditions.map((c) => [c.type, c]));
    expect(byType.RuntimeReady?.status).toBe(true);
    expect(byType.NetworkReady).toMatchObject({ status: true, reason: '' });
    expect(res.runtime_handlers.map((h) => h.name)).toEqual(['vmlet']);
    expect(res.info).toEqual({});
  });

  it('Status verbose carries libvirt, hypervisor and config as JSON', async () => {
    const res = await call<object, StatusResponse__Output>(v.runtime, 'Status', { verbose: true });
    const libvirt = JSON.parse(res.info.libvirt!) as { uri: string; connected: boolean; libraryVersion: string };
    expect(libvirt.uri).toBe('qemu:///system');
    expect(libvirt.connected).toBe(true);
    expect(libvirt.libraryVersion).toMatch(/^\d+\.\d+\.\d+$/);
    const hv = JSON.parse(res.info.hypervisor!) as { accel: string; domainType: string; kvmNotUsedBecause: string | null; qemuVersion: string };
    expect(['kvm', 'tcg']).toContain(hv.accel);
    // Under TCG the reason must be given; under KVM there is none.
    if (hv.accel === 'tcg') expect(hv.kvmNotUsedBecause).toMatch(/\S/);
    else expect(hv.kvmNotUsedBecause).toBeNull();
    expect(hv.domainType).toBe(hv.accel === 'kvm' ? 'kvm' : 'qemu');
    expect(hv.qemuVersion).toMatch(/^\d+\.\d+/);
    const config = JSON.parse(res.info.config!) as { socket: string; stateDir: string };
    expect(config.socket).toBe(v.socket);
    expect(config.stateDir).toBe(v.stateDir);
  });

  it('answers RuntimeConfig with the cgroup driver', async () => {
    const res = await call<object, RuntimeConfigResponse__Output>(v.runtime, 'RuntimeConfig', {});
    const expected = existsSync('/run/systemd/system') ? 'SYSTEMD' : 'CGROUPFS';
    expect(res.linux?.cgroup_driver).toBe(expected);
  });

  it('records the pod CIDR from UpdateRuntimeConfig', async () => {
    await call(v.runtime, 'UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '10.244.3.0/24' } } });
    const saved = JSON.parse(readFileSync(join(v.stateDir, 'runtime-config.json'), 'utf8')) as { podCidr: string };
    expect(saved.podCidr).toBe('10.244.3.0/24');
    const res = await call<object, StatusResponse__Output>(v.runtime, 'Status', { verbose: true });
    expect(JSON.parse(res.info.runtimeConfig!)).toMatchObject({ podCidr: '10.244.3.0/24' });
    const logged = parseLogLines(v.logLines).find((l) => l.msg === 'pod CIDR updated');
    expect(logged).toMatchObject({ podCidr: '10.244.3.0/24' });
  });

  it('answers UNIMPLEMENTED naming the RPC', async () => {
    const checkpoint = await failure(call(v.runtime, 'CheckpointContainer', { container_id: 'c', location: '/tmp/x' }));
    expect(checkpoint.code).toBe(Status.UNIMPLEMENTED);
    expect(checkpoint.details).toContain('CheckpointContainer');
    // Served now: an unknown pod is NOT_FOUND, not UNIMPLEMENTED.
    const podResize = await failure(call(v.runtime, 'UpdatePodSandboxResources', { pod_sandbox_id: 'p' }));
    expect(podResize.code).toBe(Status.NOT_FOUND);
  });

  it('answers UNIMPLEMENTED on a server-streaming RPC', async () => {
    const stream = (v.runtime as unknown as { StreamPodSandboxMetrics(req: object): NodeJS.EventEmitter }).StreamPodSandboxMetrics({});
    const err = await new Promise<ServiceError>((resolve) => stream.once('error', resolve));
    expect(err.code).toBe(Status.UNIMPLEMENTED);
    expect(err.details).toContain('StreamPodSandboxMetrics');
  });

  it('streams the Stream* lists as their List* siblings answer them, then ends', async () => {
    const collect = (client: unknown, method: string, req: object) =>
      new Promise<Array<Record<string, unknown[]>>>((resolve, reject) => {
        const got: Array<Record<string, unknown[]>> = [];
        const s = (client as Record<string, (r: object) => NodeJS.EventEmitter>)[method]!(req);
        s.on('data', (m: Record<string, unknown[]>) => got.push(m));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
    const list = await call<object, { items: unknown[] }>(v.runtime, 'ListPodSandbox', {});
    const streamed = await collect(v.runtime, 'StreamPodSandboxes', {});
    expect(streamed.flatMap((m) => m.pod_sandboxes ?? [])).toEqual(list.items);
    const images = await call<object, { images: unknown[] }>(v.image, 'ListImages', {});
    expect((await collect(v.image, 'StreamImages', {})).flatMap((m) => m.images ?? [])).toEqual(images.images);
    for (const m of ['StreamContainers', 'StreamContainerStats', 'StreamPodSandboxStats']) await expect(collect(v.runtime, m, {})).resolves.toBeInstanceOf(Array);
    // A filter no pod matches: the stream ends with nothing.
    expect((await collect(v.runtime, 'StreamContainers', { filter: { id: 'nonexistent' } })).flatMap((m) => m.containers ?? [])).toEqual([]);
  });

  it('survives a malformed request and keeps serving', async () => {
    const client = v.runtime as unknown as Client;
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99]);
    const err = await new Promise<ServiceError>((resolve, reject) => {
      client.makeUnaryRequest(
        '/runtime.v1.RuntimeService/Status',
        (b: Buffer) => b,
        (b: Buffer) => b,
        garbage,
        (e) => (e ? resolve(e) : reject(new Error('garbage was accepted'))),
      );
    });
    expect(err.code).not.toBe(Status.OK);
    expect(v.proc.exitCode).toBeNull();
    const res = await call<object, VersionResponse__Output>(v.runtime, 'Version', {});
    expect(res.runtime_name).toBe('vmlet');
  });

  it('logs one structured line per RPC with method, duration, code and ids', async () => {
    await call(v.runtime, 'Version', {});
    await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: 'abc123' }); // unknown: succeeds (idempotent)
    await failure(call(v.runtime, 'CheckpointContainer', { container_id: 'def456', location: '/tmp/x' }));
    // This call's own line: an earlier test's CheckpointContainer is logged too, and a line can
    // reach the test after the call's answer (vmlet's stderr is a pipe).
    const lines = await waitFor('the CheckpointContainer log line of def456', () => {
      const ls = parseLogLines(v.logLines).filter((l) => l.msg === 'rpc');
      return ls.some((l) => l.rpc === 'CheckpointContainer' && l.containerId === 'def456') ? ls : undefined;
    });
    const version = lines.find((l) => l.rpc === 'Version');
    expect(version).toMatchObject({ code: 'OK' });
    expect(typeof version!.durationMs).toBe('number');
    expect(lines.find((l) => l.rpc === 'StopPodSandbox')).toMatchObject({ code: 'OK', podSandboxId: 'abc123' });
    expect(lines.find((l) => l.rpc === 'CheckpointContainer' && l.containerId === 'def456')).toMatchObject({ code: 'UNIMPLEMENTED', containerId: 'def456' });
  });
});

describe('vmlet serve, socket handling and shutdown', () => {
  it('refuses a socket another vmlet is serving on', async () => {
    const first = await startVmlet();
    try {
      await expect(startVmlet({ socket: first.socket })).rejects.toThrow(/already serving/);
      const res = await call<object, VersionResponse__Output>(first.runtime, 'Version', {});
      expect(res.runtime_name).toBe('vmlet');
    } finally {
      await first.stop();
    }
  });

  it('replaces a stale socket left by a killed run', async () => {
    const first = await startVmlet();
    expect(await first.stop('SIGKILL')).toBeNull();
    expect(existsSync(first.socket)).toBe(true); // SIGKILL leaves the socket file behind
    const second = await startVmlet({ socket: first.socket });
    try {
      expect(parseLogLines(second.logLines).some((l) => l.msg === 'removed stale socket left by an earlier run')).toBe(true);
      const res = await call<object, VersionResponse__Output>(second.runtime, 'Version', {});
      expect(res.runtime_name).toBe('vmlet');
    } finally {
      await second.stop();
    }
  });

  it('shuts down on SIGTERM: exit 0 and the socket is removed', async () => {
    const v = await startVmlet();
    expect(await v.stop('SIGTERM'), exitReport(v)).toBe(0);
    expect(existsSync(v.socket)).toBe(false);
    expect(parseLogLines(v.logLines).some((l) => l.msg === 'vmlet stopped')).toBe(true);
  });

  it('shuts down on SIGINT too', async () => {
    const v = await startVmlet();
    expect(await v.stop('SIGINT'), exitReport(v)).toBe(0);
    expect(existsSync(v.socket)).toBe(false);
  });

  it('a SIGTERM while it starts is kept: the start ends, then the stop, exit 0 and no socket left', async () => {
    // Sent at its first line, well before the socket: the default action would end it at once.
    const v = await startVmlet({ readyLine: 'vmlet starting' });
    expect(await v.stop('SIGTERM'), exitReport(v)).toBe(0);
    const msgs = parseLogLines(v.logLines).map((l) => l.msg);
    expect(msgs.indexOf('CRI server listening')).toBeGreaterThan(-1);
    expect(msgs.indexOf('vmlet stopped')).toBeGreaterThan(msgs.indexOf('CRI server listening'));
    expect(existsSync(v.socket)).toBe(false);
  });

  it('starts with a corrupted pod record: logs it and skips it', async () => {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const stateDir = join(tempDir('vmlet-corrupt-'), 'state');
    const bad = join(stateDir, 'pods', 'ab'.repeat(32));
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'sandbox.json'), '{"id": "half-writ');
    const v = await startVmlet({ stateDir });
    try {
      const skipped = parseLogLines(v.logLines).find((l) => String(l.msg).startsWith('pod record unreadable: pod set aside'));
      expect(skipped?.file).toBe(join(bad, 'sandbox.json'));
      const res = await call<object, { items: unknown[] }>(v.runtime, 'ListPodSandbox', {});
      expect(res.items).toEqual([]);
    } finally {
      await v.stop();
    }
  });

  it('reports NetworkReady false with a reason when there is no CNI config', async () => {
    const v = await startVmlet({ cniConfDir: tempDir('vmlet-nocni-') });
    try {
      const res = await call<object, StatusResponse__Output>(v.runtime, 'Status', {});
      const net = res.status!.conditions.find((c) => c.type === 'NetworkReady');
      expect(net).toMatchObject({ status: false, reason: 'NetworkPluginNotReady' });
      expect(net!.message).toContain('NoCNIConfig: no CNI network config');
    } finally {
      await v.stop();
    }
  });

  it('reports RuntimeReady false with a reason when libvirt is unreachable', async () => {
    const dir = tempDir('vmlet-nolibvirt-');
    const v = await startVmlet({ args: ['--libvirt-uri', `qemu+unix:///system?socket=${join(dir, 'absent.sock')}`] });
    try {
      const res = await call<object, StatusResponse__Output>(v.runtime, 'Status', {});
      const rt = res.status!.conditions.find((c) => c.type === 'RuntimeReady');
      expect(rt).toMatchObject({ status: false, reason: 'LibvirtUnreachable' });
      expect(rt!.message).toContain('absent.sock');
    } finally {
      await v.stop();
    }
  });
});
