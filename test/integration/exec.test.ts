// ExecSync end to end, as the kubelet or crictl calls it: real registry, real libvirtd and QEMU
// (TCG here), the project's test guest, whose qemu-ga answers on vmlet's guest-agent channel.
// Also: the channel on a pc machine (PCI slot picked by QEMU next to libvirt's), stdin through
// the agent directly, 20 concurrent calls, a timeout, vmlet killed mid-exec, and a guest whose
// agent is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { runVmPod, startVmSuite, stopVmSuite, podDiagnostics, waitForConsoleLine, type VmPod } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { AGENT_SOCKET_FALLBACK_DIR, GuestAgent } from '../../src/vm/guest-agent.js';
import { guestExec } from '../../src/vm/guest-exec.js';
import type { ContainerStatusResponse__Output } from '../../src/gen/runtime/v1/ContainerStatusResponse.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const logDir = tempDir('vmlet-execlogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

interface ExecSyncReply {
  stdout: Buffer;
  stderr: Buffer;
  exit_code: number;
}
const exec = (container_id: string, cmd: string[], timeout = 0) => rt<ExecSyncReply>('ExecSync', { container_id, cmd, timeout });
const text = (r: ExecSyncReply) => ({ stdout: r.stdout.toString(), stderr: r.stderr.toString(), exit_code: r.exit_code });

type Pod = VmPod;

const startPod = (name: string, annotations: Record<string, string> = {}): Promise<Pod> => runVmPod(v, { name, namespace: 'exec-test', image, logDir, annotations });

const marker = (pod: Pod, m: string, timeoutMs = 100_000) => waitForConsoleLine(pod.log, m, timeoutMs, () => podDiagnostics(v, pod));

/** The agent starts in the background at boot; its first answer may trail the hostname marker. */
const firstExec = (pod: Pod) =>
  waitFor('qemu-ga to answer ExecSync', () => exec(pod.cid, ['true']).then((r) => r.exit_code === 0), { timeoutMs: 60_000, intervalMs: 500 });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

beforeAll(async () => {
  ({ reg, v, refs: [image = ''] } = await startVmSuite([['kernelboot', 'vmlet/kernelboot:exec']], { allowAnnotations: ['vmlet.io/machine'] }));
});

afterAll(() => stopVmSuite(v, reg));

describe('ExecSync through qemu-guest-agent', () => {
  let pod: Pod;

  it('runs a command in the guest: cat /etc/hostname is the pod hostname', async () => {
    pod = await startPod('exec-q35');
    expect(await marker(pod, 'VMLET-HOSTNAME')).toBe('VMLET-HOSTNAME exec-q35');
    const socket = join(AGENT_SOCKET_FALLBACK_DIR, pod.cid, 'qga.sock');
    expect(existsSync(socket)).toBe(true); // QEMU's, in its own dir under the fallback (the state dir path is too long)
    expect(statSync(join(AGENT_SOCKET_FALLBACK_DIR, pod.cid)).mode & 0o777).toBe(0o700);
    await firstExec(pod);
    expect(text(await exec(pod.cid, ['cat', '/etc/hostname']))).toEqual({ stdout: 'exec-q35\n', stderr: '', exit_code: 0 });
    // An id prefix works as for every other call.
    expect(text(await exec(pod.cid.slice(0, 12), ['echo', 'a b', '$HOME']))).toMatchObject({ stdout: 'a b $HOME\n' });
    const st = await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: pod.cid, verbose: true });
    expect((JSON.parse(st.info.info!) as { domainXml: string }).domainXml).toContain('org.qemu.guest_agent.0');
    const logged = v.logLines.filter((l) => l.includes('"msg":"exec"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.at(-1)).toMatchObject({ containerId: pod.cid, command: 'echo', exitCode: 0 });
    expect(logged.some((l) => JSON.stringify(l).includes('$HOME'))).toBe(false); // never the arguments
  });

  it('returns exit codes, stderr, 127 for a missing command and 128 + signal', async () => {
    expect(text(await exec(pod.cid, ['sh', '-c', 'exit 3']))).toEqual({ stdout: '', stderr: '', exit_code: 3 });
    expect(text(await exec(pod.cid, ['sh', '-c', 'echo out; echo oops >&2; exit 1']))).toEqual({ stdout: 'out\n', stderr: 'oops\n', exit_code: 1 });
    const missing = text(await exec(pod.cid, ['no-such-command', '--flag']));
    expect(missing.exit_code).toBe(127);
    expect(missing.stderr).toMatch(/no-such-command.*No such file or directory/);
    expect(text(await exec(pod.cid, ['sh', '-c', 'kill -9 $$'])).exit_code).toBe(137);
  });

  it('answers 20 concurrent calls, each with its own output', async () => {
    const t0 = performance.now();
    const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => exec(pod.cid, ['echo', String(i)])));
    console.log(`20 concurrent ExecSync: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(outs.map((o) => text(o))).toEqual(Array.from({ length: 20 }, (_, i) => ({ stdout: `${i}\n`, stderr: '', exit_code: 0 })));
  });

  it('measures the round trip of ExecSync echo hi (median of 50)', async () => {
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      expect(text(await exec(pod.cid, ['echo', 'hi'])).stdout).toBe('hi\n');
      times.push(performance.now() - t0);
    }
    const s = [...times].sort((a, b) => a - b);
    console.log(`ExecSync echo hi over gRPC: median ${median(times).toFixed(1)} ms, p90 ${s[44]!.toFixed(1)} ms, min ${s[0]!.toFixed(1)} ms (TCG)`);
  });

  it('fails with DEADLINE_EXCEEDED at the timeout and kills the command', async () => {
    const t0 = Date.now();
    const err = await failure(exec(pod.cid, ['sleep', '3600'], 2));
    const took = Date.now() - t0;
    expect(err.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(err.details).toMatch(/did not finish within 2 s/);
    expect(took).toBeGreaterThanOrEqual(2000); // the sleep outlives the test: only the timeout ends the call
    await waitFor('the sleep to be killed', async () => text(await exec(pod.cid, ['sh', '-c', 'ps | grep -c "[s]leep 3600"'])).stdout === '0\n', {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('keeps working after vmlet is killed mid-exec and restarted (QEMU owns the socket)', async () => {
    const pending = exec(pod.cid, ['sleep', '3']).catch((e: unknown) => e);
    // Mid-exec: the sleep runs in the guest (other calls interleave with its status polls).
    await waitFor('the sleep to run in the guest', async () => (await exec(pod.cid, ['pidof', 'sleep'])).exit_code === 0, { timeoutMs: 10_000, intervalMs: 50 });
    const stateDir = v.stateDir;
    const config = readFileSync(join(v.dir, 'none.yaml'), 'utf8');
    await v.stop('SIGKILL');
    await pending;
    v = await startVmlet({ stateDir, config });
    // The sleep's reply may still be on its way to the old connection: the new one resynchronises past it.
    expect(text(await exec(pod.cid, ['cat', '/etc/hostname']))).toMatchObject({ stdout: 'exec-q35\n', exit_code: 0 });
  });

  it('refuses bad calls with the right codes', async () => {
    expect((await failure(exec(pod.cid, []))).code).toBe(Status.INVALID_ARGUMENT);
    expect((await failure(exec('0000000000000000', ['true']))).code).toBe(Status.NOT_FOUND);
  });

  it('streams exec over the Exec RPC (WebSocket v5): output, exit code, stdin; refuses a TTY', async () => {
    const { WebSocket } = await import('ws');
    /** Runs one exec session: returns stdout, stderr and the status JSON from the error channel. */
    const session = async (cmd: string[], stdin?: string) => {
      const { url } = await rt<{ url: string }>('Exec', { container_id: pod.cid, cmd, stdout: true, stderr: true, stdin: stdin !== undefined });
      const ws = new WebSocket(url, ['v5.channel.k8s.io']);
      const by: Record<number, Buffer[]> = { 1: [], 2: [], 3: [] };
      ws.on('message', (d: Buffer) => by[d[0]!]?.push(d.subarray(1)));
      await new Promise((r, j) => ws.once('open', r).once('error', j));
      if (stdin !== undefined) {
        ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(stdin)]));
        ws.send(Buffer.from([255, 0])); // v5: stdin closed
      }
      await new Promise((r) => ws.once('close', r));
      const str = (n: number) => Buffer.concat(by[n]!).toString();
      return { stdout: str(1), stderr: str(2), status: JSON.parse(str(3) || '{}') as { status?: string; details?: { causes?: { message: string }[] } } };
    };
    const ok = await session(['cat', '/etc/hostname']);
    expect(ok.stdout).toBe('exec-q35\n');
    expect(ok.status.status).toBe('Success');
    const bad = await session(['sh', '-c', 'echo oops >&2; exit 3']);
    expect(bad.stderr).toBe('oops\n');
    expect(bad.status.status).toBe('Failure');
    expect(bad.status.details?.causes?.[0]?.message).toBe('3');
    expect((await session(['cat'], 'piped in\n')).stdout).toBe('piped in\n');
    const tty = await failure(rt('Exec', { container_id: pod.cid, cmd: ['sh'], tty: true, stdin: true, stdout: true }));
    expect(tty.code).toBe(Status.FAILED_PRECONDITION);
    expect(tty.details).toMatch(/TTY/);
  });

  it('says the guest runs no agent once qemu-ga is gone', async () => {
    // Stop the agent from inside, after this call has returned (output pipes closed first).
    // The guest says on its console when qemu-ga is really gone (no fixed wait).
    const gone = 'VMLET-QGA-GONE';
    const script = `(sleep 1; kill $(pidof qemu-ga); while pidof qemu-ga; do sleep 0.1; done; echo ${gone} >/dev/console) >/dev/null 2>&1 </dev/null &`;
    expect((await exec(pod.cid, ['sh', '-c', script])).exit_code).toBe(0);
    await marker(pod, gone, 30_000);
    const first = await failure(exec(pod.cid, ['true']));
    expect(first.code).toBe(Status.FAILED_PRECONDITION);
    expect(first.details).toMatch(/qemu-guest-agent/);
    const second = await failure(exec(pod.cid, ['true']));
    expect(second.code).toBe(Status.FAILED_PRECONDITION);
    expect(second.details).toBe(`guest runs no qemu-guest-agent (no answer on ${join(AGENT_SOCKET_FALLBACK_DIR, pod.cid, 'qga.sock')} within 5 s)`);
  });

  it('refuses a stopped container with FAILED_PRECONDITION', async () => {
    await rt('StopContainer', { container_id: pod.cid, timeout: 0 });
    const err = await failure(exec(pod.cid, ['true']));
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toBe(`container ${pod.cid} is exited; exec needs a running container`);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    expect(existsSync(join(AGENT_SOCKET_FALLBACK_DIR, pod.cid))).toBe(false); // the socket's dir went with the container
  });

  it('works on a pc machine too, and feeds stdin through the agent', async () => {
    const pc = await startPod('exec-pc', { 'vmlet.io/machine': 'pc' });
    expect(await marker(pc, 'VMLET-HOSTNAME')).toBe('VMLET-HOSTNAME exec-pc');
    // Nobody has connected yet: talk to the agent directly (ExecSync has no stdin), then let go,
    // since QEMU serves one client at a time.
    const agent = new GuestAgent(join(AGENT_SOCKET_FALLBACK_DIR, pc.cid, 'qga.sock'));
    await waitFor('qemu-ga to answer', () => agent.ping().then(() => true), { timeoutMs: 60_000, intervalMs: 500 });
    const r = await guestExec(agent, { path: 'cat', input: Buffer.from('through stdin\n') });
    expect({ out: r.stdout.toString(), code: r.exitCode }).toEqual({ out: 'through stdin\n', code: 0 });
    agent.close();
    expect(text(await exec(pc.cid, ['cat', '/etc/hostname']))).toEqual({ stdout: 'exec-pc\n', stderr: '', exit_code: 0 });
    await rt('RemovePodSandbox', { pod_sandbox_id: pc.id });
  });
});
