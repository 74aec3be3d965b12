// Bad input at volume against the real vmlet (libvirtd, CNI bridge + host-local + portmap on a
// bridge and /16 of its own): FUZZ_N (10 000) requests to every CRI method with random and
// boundary values in every field and random annotations (test/helpers/fuzz.ts, seed FUZZ_SEED),
// half of RunPodSandbox's on a valid pod so they reach the network and the annotation parser; then
// raw bytes on the socket. vmlet must answer each with a status that is not INTERNAL or UNKNOWN,
// keep serving, and leave no netns, tap, DHCP server, domain or pod dir behind once the pods it
// made are removed. No VM boots: no image is pulled, every image reference reaches no registry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { status, type ServiceError } from '@grpc/grpc-js';
import { call, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { RequestGen, Rng, safeImages } from '../helpers/fuzz.js';
import { virsh } from '../helpers/virsh.js';

const N = Number(process.env.FUZZ_N ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? randomBytes(4).readUInt32LE(0));
const BRIDGE = `vmfz${randomBytes(2).toString('hex')}`;
const BAD = new Set<status | -1>([status.INTERNAL, status.UNKNOWN, -1]);
let v: VmletProcess;
let confDir = '';

beforeAll(async () => {
  confDir = tempDir('vmlet-fuzz-cni-');
  writeFileSync(join(confDir, '10-fuzz.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-fuzz-${BRIDGE}`,
    plugins: [
      { type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', dataDir: join(confDir, 'ipam'), ranges: [[{ subnet: '10.242.0.0/16' }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }));
  // Every gated annotation allowed: the fuzz reaches the parsers behind the policy.
  v = await startVmlet({ cniConfDir: confDir, allowAnnotations: ['*'] });
}, 60_000);

afterAll(async () => {
  await v?.stop();
  await execa('ip', ['link', 'del', BRIDGE], { reject: false });
}, 60_000);

type Method = { service: 'runtime' | 'image'; name: string; request: string; streaming: boolean };

function methods(gen: RequestGen): Method[] {
  const out: Method[] = [];
  for (const [service, full] of [['runtime', 'runtime.v1.RuntimeService'], ['image', 'runtime.v1.ImageService']] as const) {
    const svc = gen.def[full] as unknown as Record<string, { requestType: { type: { name: string } }; responseStream: boolean; originalName?: string }>;
    for (const [name, m] of Object.entries(svc)) out.push({ service, name, request: m.requestType.type.name, streaming: m.responseStream });
  }
  return out;
}

/**
 * One call; the gRPC status code it ended with (OK = 0). Streams are read for at most 200 ms. A
 * call with no answer 5 s past its deadline is a finding of its own (code -1).
 */
function invoke(m: Method, req: object, timeoutMs: number): Promise<{ code: status | -1; details: string }> {
  const client = (m.service === 'runtime' ? v.runtime : v.image) as unknown as Record<string, (...a: unknown[]) => unknown>;
  const deadline = new Date(Date.now() + (m.streaming ? 200 : timeoutMs));
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<{ code: -1; details: string }>((resolve) => {
    timer = setTimeout(() => resolve({ code: -1, details: 'no answer 5 s past the deadline' }), deadline.getTime() - Date.now() + 5000);
  });
  return Promise.race([hung, answer(client, m, req, deadline)]).finally(() => clearTimeout(timer));
}

function answer(client: Record<string, (...a: unknown[]) => unknown>, m: Method, req: object, deadline: Date): Promise<{ code: status; details: string }> {
  return new Promise((resolve) => {
    if (!m.streaming) {
      client[m.name]!.call(client, req, { deadline }, (err: ServiceError | null) => resolve({ code: err?.code ?? status.OK, details: err?.details ?? '' }));
      return;
    }
    const s = client[m.name]!.call(client, req, { deadline }) as NodeJS.EventEmitter;
    s.on('data', () => undefined);
    s.on('error', (err: ServiceError) => resolve({ code: err.code === status.DEADLINE_EXCEEDED ? status.OK : err.code, details: err.details }));
    s.on('end', () => resolve({ code: status.OK, details: '' }));
  });
}

/** What a pod of vmlet's could leave on the host: its netns, taps, DHCP servers, domains, state dirs. */
function leftovers(ids: string[]) {
  const short = ids.map((id) => id.slice(0, 16));
  const netns = readdirSync('/run/netns').filter((n) => short.some((s) => n.includes(s)));
  const taps = readdirSync('/sys/class/net').filter((n) => n.startsWith('vmt-') && ids.some((id) => n === `vmt-${id.slice(0, 11)}`));
  const dnsmasq = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return cmd.includes('dnsmasq') && cmd.includes(v.stateDir);
    } catch {
      return false;
    }
  });
  const domains = virsh('list', '--all', '--name').split('\n').filter((n) => ids.some((id) => n.includes(id.slice(0, 8))));
  const podDirs = existsSync(join(v.stateDir, 'pods')) ? readdirSync(join(v.stateDir, 'pods')) : [];
  return { netns, taps, dnsmasq, domains, podDirs };
}

describe('CRI fuzz', () => {
  it(`${N} random requests: no INTERNAL or UNKNOWN, vmlet keeps serving, nothing left behind`, async () => {
    const rng = new Rng(SEED);
    const gen = new RequestGen(rng);
    const all = methods(gen);
    const live: string[] = []; // pods made by the fuzz, kept a while as targets for id-based calls
    const made: string[] = [];
    const bad: string[] = [];
    const codes = new Map<string, number>();
    const validPod = () => ({ metadata: { name: `fz-${rng.int(1e6)}`, namespace: 'fuzz', uid: randomBytes(8).toString('hex'), attempt: 0 }, log_directory: tempDir('vmlet-fuzz-logs-') });
    const knownId = () => (live.length && rng.chance(0.5) ? rng.pick(live) : undefined);

    console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} replays it)`);
    let prev = '';
    for (let i = 0; i < N; i++) {
      if (i % 2000 === 0) console.log(`fuzz: request ${i}, ${made.length} pods made, ${bad.length} findings`);
      const m = rng.pick(all);
      const req = gen.message(m.request);
      safeImages(req, rng);
      if (m.name === 'RunPodSandbox') {
        // Only a few pods at once: each costs a netns, a lease and a DHCP server until removed.
        if (live.length >= 4 || rng.chance(0.7)) req.runtime_handler = rng.chance(0.5) ? 'no-such-handler' : req.runtime_handler;
        else {
          req.runtime_handler = 'vmlet';
          req.config = { ...(req.config as object), ...validPod(), ...(rng.chance(0.5) ? {} : { linux: {} }) };
        }
      }
      for (const k of ['pod_sandbox_id', 'container_id']) if (k in req || rng.chance(0.3)) req[k] = knownId() ?? req[k];
      const t0 = performance.now();
      const r = await invoke(m, req, m.name === 'RunPodSandbox' ? 60_000 : 15_000);
      const took = performance.now() - t0;
      if (took > 1000 && process.env.FUZZ_DEBUG) console.log(`fuzz: ${m.name} took ${took.toFixed(0)} ms (${status[r.code]}), previous: ${prev}`);
      prev = `${m.name} ${JSON.stringify(req).slice(0, 300)}`;
      const key = `${m.name} ${status[r.code] ?? 'HUNG'}`;
      codes.set(key, (codes.get(key) ?? 0) + 1);
      if (r.code === status.DEADLINE_EXCEEDED) console.log(`fuzz: ${m.name} DEADLINE_EXCEEDED: ${JSON.stringify(req).slice(0, 3000)}`);
      if (BAD.has(r.code)) bad.push(`${m.name} → ${status[r.code] ?? 'HUNG'}: ${r.details}\n  request: ${JSON.stringify(req).slice(0, 2000)}`);
      if (r.code === status.UNAVAILABLE && v.proc.exitCode !== null) throw new Error(`vmlet died at request ${i} (${m.name}), seed ${SEED}:\n${v.logLines.slice(-20).join('\n')}`);
      if (m.name === 'RunPodSandbox' && r.code === status.OK) {
        const pods = await call<object, { items: Array<{ id: string }> }>(v.runtime, 'ListPodSandbox', {});
        for (const p of pods.items) {
          if (made.includes(p.id)) continue;
          made.push(p.id);
          live.push(p.id);
        }
      }
      if (live.length > 3 && rng.chance(0.02)) {
        const id = live.shift()!;
        await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
        await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
      }
    }
    const slow = parseLogLines(v.logLines).filter((l) => typeof l.durationMs === 'number' && l.durationMs > 2000);
    for (const l of slow.slice(0, 10)) console.log(`fuzz: slow answer: ${JSON.stringify(l).slice(0, 600)}`);
    console.log(`fuzz seed ${SEED}: ${N} requests, ${made.length} pods made; answers: ${[...codes].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);

    // Raw bytes on the socket: garbage, and HTTP/2's preface followed by garbage.
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.from(Array.from({ length: 1 + rng.int(4096) }, () => rng.int(256)));
      await new Promise<void>((resolve) => {
        const s = connect(v.socket, () => {
          s.end(rng.chance(0.5) ? Buffer.concat([preface, junk]) : junk);
        });
        s.on('data', () => undefined);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.setTimeout(2000, () => s.destroy());
      });
    }

    // Still serving; remove what the fuzz made, then nothing of it is left.
    expect((await call<object, { runtime_name: string }>(v.runtime, 'Version', {})).runtime_name).toBe('vmlet');
    for (const id of made) {
      await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
      await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
    }
    expect((await call<object, { items: unknown[] }>(v.runtime, 'ListPodSandbox', {})).items).toEqual([]);
    expect(leftovers(made)).toEqual({ netns: [], taps: [], dnsmasq: [], domains: [], podDirs: [] });
    expect(bad, `seed ${SEED}: ${bad.length} INTERNAL/UNKNOWN answers`).toEqual([]);
  }, 900_000);
});
