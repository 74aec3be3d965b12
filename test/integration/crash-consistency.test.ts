// Crash consistency at start-up, with the real vmlet, CNI plugins (bridge, host-local) and
// dnsmasq: vmlet is killed with -9, the state dir is left as a crash at the worst moment would
// leave it, and the restarted vmlet must release what nothing else tracks (the CNI lease, the
// pod's dnsmasq) and keep serving despite a record it cannot read.
// Its own bridge, subnet and IPAM dir, removed at the end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { spawnSync } from 'node:child_process';
import { call, CNI_BIN_DIRS, MAIN, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const rand = () => randomBytes(3).toString('hex');
const octet = 100 + (randomBytes(1)[0]! % 150);
const BRIDGE = `vmcc${rand()}`;
const NETWORK = `vmlet-crash-${BRIDGE}`;
let confDir: string;
let ipamDir: string;
let v: VmletProcess | undefined;
const pods: string[] = [];

beforeAll(() => {
  confDir = tempDir('vmlet-crash-cni-');
  ipamDir = join(confDir, 'ipam');
  writeFileSync(
    join(confDir, '10-crash.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: NETWORK,
      plugins: [{ type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: `10.251.${octet}.0/24` }]] } }],
    }),
  );
});

afterAll(async () => {
  if (v) {
    for (const id of pods) await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await v.stop();
  }
  await execa('ip', ['link', 'del', BRIDGE], { reject: false });
});

const rt = <T>(method: string, req: object) => call<object, T>(v!.runtime, method, req);

async function runPod(name: string): Promise<string> {
  const config = { metadata: { name, namespace: 'vmlet-crash', uid: randomBytes(8).toString('hex'), attempt: 0 }, hostname: name, labels: { suite: 'crash' } };
  const { pod_sandbox_id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  pods.push(pod_sandbox_id);
  return pod_sandbox_id;
}

/** host-local's lease files: one per address, holding the container id. */
const leases = () => {
  const d = join(ipamDir, NETWORK);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).map((f) => readFileSync(join(d, f), 'utf8').split(/\s/)[0]) : [];
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('start-up after a crash', () => {
  it('releases the lease and dnsmasq of a pod whose RunPodSandbox never answered or whose network.json is lost, and serves despite a bad record', async () => {
    v = await startVmlet({ cniConfDir: confDir });
    const cut = await runPod('cut-short');
    const lost = await runPod('lost-state');
    const fine = await runPod('fine');
    const podDir = (id: string) => join(v!.stateDir, 'pods', id);
    const dnsmasq = (id: string) => Number(readFileSync(join(podDir(id), 'dnsmasq.pid'), 'utf8').trim());
    expect(leases().sort()).toEqual([cut, lost, fine].sort());
    const pids = { cut: dnsmasq(cut), lost: dnsmasq(lost), fine: dnsmasq(fine) };
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);

    expect(await v.stop('SIGKILL')).toBeNull();
    // As if vmlet died during RunPodSandbox, after CNI ADD and dnsmasq but before it answered.
    const rec = JSON.parse(readFileSync(join(podDir(cut), 'sandbox.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(podDir(cut), 'sandbox.json'), JSON.stringify({ ...rec, creating: true }));
    // A network state lost to a crash (torn write, no fsync): only the record says the pod exists.
    writeFileSync(join(podDir(lost), 'network.json'), '{"version":2,"sandboxId":"');
    // A record that parses but is not one.
    const badId = randomBytes(32).toString('hex');
    mkdirSync(join(v.stateDir, 'pods', badId));
    writeFileSync(join(v.stateDir, 'pods', badId, 'sandbox.json'), '{"id":"x"}');

    v = await startVmlet({ cniConfDir: confDir, stateDir: v.stateDir });
    const { items } = await rt<{ items: Array<{ id: string; state: string }> }>('ListPodSandbox', {});
    const state = Object.fromEntries(items.map((p) => [p.id, p.state]));
    expect(state).toEqual({ [cut]: 'SANDBOX_NOTREADY', [lost]: 'SANDBOX_NOTREADY', [fine]: 'SANDBOX_READY' });
    // CNI DEL ran: host-local gave the two addresses back; the third pod keeps its own.
    expect(leases()).toEqual([fine]);
    await waitFor('the two dnsmasq to exit', () => !alive(pids.cut) && !alive(pids.lost), { timeoutMs: 10_000 });
    expect(alive(pids.fine)).toBe(true);
    const logs = parseLogLines(v.logLines);
    for (const id of [cut, lost]) expect(logs.some((l) => l.podSandboxId === id && String(l.msg).startsWith('pod network released at start'))).toBe(true);
    const badFile = join(v.stateDir, 'pods', badId, 'sandbox.json');
    expect(logs.some((l) => l.file === badFile && l.podSandboxId === badId && l.level === 50)).toBe(true);
    expect(readFileSync(badFile, 'utf8')).toBe('{"id":"x"}'); // kept for the operator
    // ... and shown to the operator by `vmlet doctor`, with what is kept.
    const doc = spawnSync(
      process.execPath,
      [MAIN, 'doctor', '--config', '/dev/null', '--state-dir', v.stateDir, '--socket', join(tempDir('vmlet-crash-doc-'), 'v.sock'), '--cni-conf-dir', confDir, ...CNI_BIN_DIRS.flatMap((d) => ['--cni-bin-dir', d])],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const line = doc.stdout.split('\n').find((l) => l.split(/\s+/)[1] === 'pod-records') ?? doc.stdout;
    expect(line).toMatch(/^WARN/);
    expect(line).toContain(`${badFile}: config is missing`);
    expect(line).toContain(`kept: netns vmlet-${badId.slice(0, 16)}`);

    // The kubelet's clean-up of the NOTREADY pods works as for any stopped pod.
    for (const id of [cut, lost]) {
      await rt('StopPodSandbox', { pod_sandbox_id: id });
      await rt('RemovePodSandbox', { pod_sandbox_id: id });
      expect(existsSync(podDir(id))).toBe(false);
    }
  });
  it('deletes the netns of a pod whose RunPodSandbox stopped before recording it', async () => {
    if (v) {
      // The test before's vmlet and pods: gone before this one starts its own.
      for (const id of pods.splice(0)) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
      await v.stop();
    }
    v = await startVmlet({ cniConfDir: confDir });
    const early = await runPod('early');
    const recFile = join(v.stateDir, 'pods', early, 'sandbox.json');
    const rec = JSON.parse(readFileSync(recFile, 'utf8')) as { netns: { name: string; path: string } } & Record<string, unknown>;
    const netns = rec.netns.path;
    expect(existsSync(netns)).toBe(true);
    expect(await v.stop('SIGKILL')).toBeNull();
    // As if vmlet died right after making the netns: the record says creating and names none.
    const { netns: _made, ...unrecorded } = rec;
    writeFileSync(recFile, JSON.stringify({ ...unrecorded, creating: true }));

    v = await startVmlet({ cniConfDir: confDir, stateDir: v.stateDir });
    const { items } = await rt<{ items: Array<{ id: string; state: string }> }>('ListPodSandbox', {});
    expect(items.find((p) => p.id === early)?.state).toBe('SANDBOX_NOTREADY');
    await rt('StopPodSandbox', { pod_sandbox_id: early });
    await rt('RemovePodSandbox', { pod_sandbox_id: early });
    expect(existsSync(netns)).toBe(false);
    expect(existsSync(join(v.stateDir, 'pods', early))).toBe(false);
  });
});
