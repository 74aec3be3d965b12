// The guest-agent client against a fake qemu-ga on a unix socket in a temp dir: framing (replies
// split across chunks, several in one chunk, the 0xFF delimiter), resynchronisation past stale
// replies, error replies, no answer, one request at a time, guest-exec polling and its results.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { VmletError, notFound } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { execSync } from '../../src/pod/container-exec.js';
import type { PodManager } from '../../src/pod/manager.js';
import type { ContainerRecord } from '../../src/pod/records.js';
import { AGENT_SOCKET_FALLBACK_DIR, GuestAgent, GuestAgentError, agentSocketPath, existingAgentSocket } from '../../src/vm/guest-agent.js';
import { AgentFrameParser, type AgentFrame } from '../../src/vm/guest-agent-frames.js';
import { guestExec } from '../../src/vm/guest-exec.js';
import { tempDir } from '../helpers/vmlet.js';

const FF = Buffer.from([0xff]);
const b = (s: string) => Buffer.from(s);

describe('AgentFrameParser', () => {
  const replies = (fs: AgentFrame[]) => fs.flatMap((f) => (f.kind === 'reply' ? [f.value] : []));

  it('returns whole replies however the bytes are cut', () => {
    const text = '{"return": {"pid": 7}}\n{"return": {"exited": true, "out-data": "aGk="}}\n';
    const whole = replies(new AgentFrameParser().push(b(text)));
    expect(whole).toEqual([{ return: { pid: 7 } }, { return: { exited: true, 'out-data': 'aGk=' } }]);
    for (const size of [1, 2, 3, 5, 13]) {
      const p = new AgentFrameParser();
      const got: unknown[] = [];
      for (let i = 0; i < text.length; i += size) got.push(...replies(p.push(b(text.slice(i, i + size)))));
      expect(got, `chunks of ${size}`).toEqual(whole);
    }
  });

  it('is not fooled by braces, quotes and backslashes inside strings, nor by split UTF-8', () => {
    const value = { error: { class: 'GenericError', desc: 'Failed to execute child process “a}{\\"b” (No such file or directory)' } };
    const bytes = b(JSON.stringify(value));
    const p = new AgentFrameParser();
    const got: unknown[] = [];
    for (let i = 0; i < bytes.length; i++) got.push(...replies(p.push(bytes.subarray(i, i + 1))));
    expect(got).toEqual([value]);
  });

  it('drops everything before the delimiter after expectDelimiter, including half a reply', () => {
    const p = new AgentFrameParser();
    p.expectDelimiter();
    const frames = p.push(Buffer.concat([b('t": {"pid": 3}}\n{"return": {}}\n'), FF, b('{"return": 42}\n')]));
    expect(frames).toEqual([{ kind: 'delimiter' }, { kind: 'reply', value: { return: 42 } }]);
  });

  it('ends a half-read reply at a delimiter and reports stray bytes', () => {
    const p = new AgentFrameParser();
    expect(p.push(b('{"return": {"pi'))).toEqual([]);
    expect(p.push(Buffer.concat([FF, b('{"return": 1}')]))).toEqual([{ kind: 'delimiter' }, { kind: 'reply', value: { return: 1 } }]);
    expect(p.push(b('oops {"return": 2}'))).toEqual([{ kind: 'garbage', text: 'oops' }, { kind: 'reply', value: { return: 2 } }]);
  });
});

describe('agentSocketPath', () => {
  it('uses a qemu/ dir of the container dir when the path fits a unix socket', () => {
    expect(agentSocketPath('/var/lib/vmlet/c/1', 'abc')).toEqual({ path: '/var/lib/vmlet/c/1/qemu/qga.sock', dir: '/var/lib/vmlet/c/1/qemu', fallback: false });
  });
  it('falls back to /run/vmlet/qga/<id>/qga.sock past 107 bytes (always, with 64-hex ids)', () => {
    const id = 'c'.repeat(64);
    const dir = `/var/lib/vmlet/pods/${'s'.repeat(64)}/containers/${id}`;
    const got = agentSocketPath(dir, id);
    expect(got).toEqual({ path: `${AGENT_SOCKET_FALLBACK_DIR}/${id}/qga.sock`, dir: `${AGENT_SOCKET_FALLBACK_DIR}/${id}`, fallback: true });
    expect(Buffer.byteLength(got.path)).toBeLessThanOrEqual(107);
    const exactly107 = '/' + 'd'.repeat(107 - '/qemu/qga.sock'.length - 1);
    expect(agentSocketPath(exactly107, 'x').fallback).toBe(false);
    expect(agentSocketPath(exactly107 + 'd', 'x').fallback).toBe(true);
  });
  it('finds the socket of a VM started while QEMU ran as root (the old path) when the new one is not there', () => {
    const dir = tempDir('vmlet-qga-');
    try {
      expect(existingAgentSocket(dir, 'x')).toBe(join(dir, 'qemu', 'qga.sock')); // neither: the new one
      writeFileSync(join(dir, 'qga.sock'), '');
      expect(existingAgentSocket(dir, 'x')).toBe(join(dir, 'qga.sock'));
      mkdirSync(join(dir, 'qemu'));
      writeFileSync(join(dir, 'qemu', 'qga.sock'), '');
      expect(existingAgentSocket(dir, 'x')).toBe(join(dir, 'qemu', 'qga.sock'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------- fake agent

type Reply = Record<string, unknown> | Buffer | null; // null: never answer

interface FakeAgent {
  path: string;
  server: Server;
  /** Every request received, in order (0xFF bytes and sync requests included). */
  requests: { execute: string; arguments?: Record<string, unknown> }[];
  connections: Socket[];
  /** Set when a request arrived while the previous one was still unanswered. */
  overlapped: boolean;
}

const fakes: FakeAgent[] = [];
afterEach(async () => {
  for (const f of fakes.splice(0)) {
    for (const c of f.connections) c.destroy(); // as QEMU does when the VM stops
    await new Promise((r) => f.server.close(r));
  }
});

/**
 * A qemu-ga stand-in: one JSON request per line, 0xFF bytes ignored (the real agent answers them
 * with a parse error, which the client must skip: `parseErrorOnFF`), guest-sync-delimited
 * answered with 0xFF + the id. `handle` answers everything else; replies go out after `delayMs`.
 */
async function fakeAgent(
  handle: (cmd: string, args: Record<string, unknown> | undefined) => Reply,
  o: { onConnect?: (s: Socket, n: number) => void; delayMs?: number; parseErrorOnFF?: boolean; sync?: 'answer' | 'never' } = {},
): Promise<FakeAgent> {
  const dir = tempDir('vmlet-qga-');
  const fake: FakeAgent = { path: join(dir, 'qga.sock'), server: undefined as unknown as Server, requests: [], connections: [], overlapped: false };
  fake.server = createServer((sock) => {
    fake.connections.push(sock);
    o.onConnect?.(sock, fake.connections.length);
    let buf = Buffer.alloc(0);
    let busy = false;
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (buf[0] === 0xff) {
          buf = buf.subarray(1);
          if (o.parseErrorOnFF !== false) sock.write(`{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\\ufffd'"}}\n`);
          continue;
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) break;
        const req = JSON.parse(buf.subarray(0, nl).toString()) as { execute: string; arguments?: Record<string, unknown> };
        buf = buf.subarray(nl + 1);
        fake.requests.push(req);
        if (busy) fake.overlapped = true;
        let reply: Reply;
        if (req.execute === 'guest-sync-delimited') reply = o.sync === 'never' ? null : Buffer.concat([FF, b(JSON.stringify({ return: req.arguments!.id }) + '\n')]);
        else reply = handle(req.execute, req.arguments);
        if (reply === null) continue;
        busy = true;
        const out = Buffer.isBuffer(reply) ? reply : b(JSON.stringify(reply) + '\n');
        setTimeout(() => {
          busy = false;
          if (!sock.destroyed) sock.write(out);
        }, o.delayMs ?? 0);
      }
    });
  });
  await new Promise<void>((r) => fake.server.listen(fake.path, r));
  fakes.push(fake);
  return fake;
}

/** A fake guest-exec: each pid exits after `polls` status requests with the given status. */
function execHandler(run: (args: Record<string, unknown>) => { polls?: number; status: Record<string, unknown> } | { error: { class: string; desc: string } }) {
  let next = 100;
  const procs = new Map<number, { polls: number; status: Record<string, unknown> }>();
  return (cmd: string, args: Record<string, unknown> | undefined): Reply => {
    if (cmd === 'guest-ping') return { return: {} };
    if (cmd === 'guest-exec') {
      const r = run(args!);
      if ('error' in r) return r;
      const pid = next++;
      procs.set(pid, { polls: r.polls ?? 0, status: r.status });
      return { return: { pid } };
    }
    if (cmd === 'guest-exec-status') {
      const p = procs.get(args!.pid as number);
      if (!p) return { error: { class: 'GenericError', desc: `Invalid parameter 'pid'` } };
      if (p.polls-- > 0) return { return: { exited: false } };
      procs.delete(args!.pid as number);
      return { return: { exited: true, ...p.status } };
    }
    return { error: { class: 'CommandNotFound', desc: `The command ${cmd} has not been found` } };
  };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

describe('GuestAgent', () => {
  it('resynchronises past stale replies and a stale delimited reply before answering', async () => {
    const fake = await fakeAgent(() => ({ return: {} }), {
      onConnect: (s) => s.write(Buffer.concat([b('"out-data": "eA=="}}\n{"return": {"pid": 9}}\n'), FF, b('{"return": 12345}\n'), b('{"return": {}}\n')])),
    });
    const a = new GuestAgent(fake.path);
    await a.ping();
    await a.ping();
    expect(fake.requests.map((r) => r.execute)).toEqual(['guest-sync-delimited', 'guest-ping', 'guest-ping']);
    a.close();
  });

  it('turns an error reply into a GuestAgentError naming the command, the class and the description', async () => {
    const fake = await fakeAgent(() => ({ error: { class: 'CommandNotFound', desc: 'The command guest-exec has been disabled for this instance' } }));
    const a = new GuestAgent(fake.path);
    const err = (await a.request('guest-exec', { path: 'x' }).catch((e: unknown) => e)) as GuestAgentError;
    expect(err).toBeInstanceOf(GuestAgentError);
    expect(err).toBeInstanceOf(VmletError);
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe('qemu-guest-agent: guest-exec failed: The command guest-exec has been disabled for this instance (CommandNotFound)');
    // The connection is still in step: the next request gets its own reply.
    expect(await a.request('guest-info').catch((e: Error) => e.message)).toMatch(/guest-info failed/);
    a.close();
  });

  it('says the guest runs no agent when nothing answers the resync', async () => {
    const fake = await fakeAgent(() => null, { sync: 'never' });
    const a = new GuestAgent(fake.path, { replyTimeoutMs: 300 });
    const err = (await a.ping().catch((e: unknown) => e)) as VmletError;
    expect(fake.requests.filter((q) => q.execute === 'guest-sync-delimited')).toHaveLength(1); // one resync, then the verdict
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe(`guest runs no qemu-guest-agent (no answer on ${fake.path} within 0.3 s)`);
  });

  it('fails requests queued behind a resync that got no answer at once, then tries again', async () => {
    const fake = await fakeAgent(() => ({ return: {} }), { sync: 'never' });
    const a = new GuestAgent(fake.path, { replyTimeoutMs: 300 });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => a.ping()));
    // All five failed on the one resync that went unanswered, none waited for its own.
    expect(fake.requests.filter((q) => q.execute === 'guest-sync-delimited')).toHaveLength(1);
    expect(results.every((r) => r.status === 'rejected' && /guest runs no qemu-guest-agent/.test(String(r.reason)))).toBe(true);
    await expect(a.ping()).rejects.toThrow(/guest runs no qemu-guest-agent/); // a new request tries again
    expect(fake.connections).toHaveLength(2);
  });

  it('says so when the socket is missing or nobody listens', async () => {
    const dir = tempDir('vmlet-qga-');
    const err = (await new GuestAgent(join(dir, 'none.sock')).ping().catch((e: unknown) => e)) as VmletError;
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toMatch(/no guest-agent channel: .*none\.sock does not exist/);
  });

  it('closes a connection whose reply is late, and resynchronises on the next request', async () => {
    let slow = true;
    const fake = await fakeAgent((cmd) => {
      if (cmd === 'guest-info' && slow) {
        slow = false;
        return null; // never answered on this connection
      }
      return { return: { cmd } };
    });
    const a = new GuestAgent(fake.path, { replyTimeoutMs: 300 });
    await expect(a.request('guest-info')).rejects.toThrow(/stopped answering \(no reply to guest-info within 0.3 s\)/);
    expect(await a.request('guest-info')).toEqual({ cmd: 'guest-info' });
    expect(fake.connections).toHaveLength(2);
    a.close();
  });

  it('waits as long as a slow reply keeps coming (the timeout counts silence, not the whole reply)', async () => {
    const big = JSON.stringify({ return: { exited: true, 'out-data': b64(Buffer.alloc(3000, 7)) } }) + '\n';
    let sock: Socket | undefined;
    const fake = await fakeAgent((cmd) => (cmd === 'guest-exec-status' ? null : { return: {} }), { onConnect: (s) => (sock = s) });
    const a = new GuestAgent(fake.path, { replyTimeoutMs: 300 });
    await a.ping();
    const reply = a.request<{ 'out-data': string }>('guest-exec-status', { pid: 1 });
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100)); // 1 s in all, never 300 ms of silence
      sock!.write(big.slice((i * big.length) / 10, ((i + 1) * big.length) / 10));
    }
    expect(Buffer.from((await reply)['out-data'], 'base64')).toHaveLength(3000);
    a.close();
  });

  it('reconnects after the VM side closed the connection (a VM restart)', async () => {
    const fake = await fakeAgent(() => ({ return: {} }));
    const a = new GuestAgent(fake.path);
    await a.ping();
    fake.connections[0]!.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await a.ping();
    expect(fake.connections).toHaveLength(2);
    a.close();
  });

  it('sends one request at a time on its connection, even with 20 concurrent execs', async () => {
    const fake = await fakeAgent(
      execHandler((args) => ({ polls: 2, status: { exitcode: 0, 'out-data': b64(`${(args.arg as string[])[0]}\n`) } })),
      { delayMs: 2 },
    );
    const a = new GuestAgent(fake.path);
    const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => guestExec(a, { path: 'echo', args: [String(i)] })));
    expect(outs.map((o) => o.stdout.toString())).toEqual(Array.from({ length: 20 }, (_, i) => `${i}\n`));
    expect(fake.overlapped).toBe(false);
    expect(fake.connections).toHaveLength(1);
    a.close();
  });
});

describe('guestExec', () => {
  it('sends path, args, env and stdin (base64), polls until exit and decodes the output', async () => {
    let seen: Record<string, unknown> = {};
    const fake = await fakeAgent(
      execHandler((args) => {
        seen = args;
        return { polls: 3, status: { exitcode: 3, 'out-data': b64('out ✓\n'), 'err-data': b64(Buffer.from([0, 1, 2, 0xff])) } };
      }),
    );
    const a = new GuestAgent(fake.path);
    const r = await guestExec(a, { path: '/bin/sh', args: ['-c', 'x'], env: ['A=1'], input: Buffer.from('in\n') });
    expect(seen).toEqual({ path: '/bin/sh', arg: ['-c', 'x'], env: ['A=1'], 'input-data': b64('in\n'), 'capture-output': true });
    expect(r).toMatchObject({ exitCode: 3, truncated: false });
    expect(r.stdout.toString()).toBe('out ✓\n');
    expect([...r.stderr]).toEqual([0, 1, 2, 0xff]);
    expect(fake.requests.filter((q) => q.execute === 'guest-exec-status')).toHaveLength(4);
    a.close();
  });

  it('reports a signal as exit code 128 + signal', async () => {
    const fake = await fakeAgent(execHandler(() => ({ status: { signal: 9 } })));
    const a = new GuestAgent(fake.path);
    expect(await guestExec(a, { path: 'sleep' })).toMatchObject({ exitCode: 137, signal: 9 });
    a.close();
  });

  it('fails with deadline-exceeded at the timeout and kills the command in the guest', async () => {
    const fake = await fakeAgent(execHandler((args) => (args.path === '/bin/sh' ? { status: { exitcode: 0 } } : { polls: 1e9, status: {} })));
    const a = new GuestAgent(fake.path);
    const t0 = Date.now();
    const err = (await guestExec(a, { path: 'sleep', args: ['30'] }, { timeoutMs: 300 }).catch((e: unknown) => e)) as VmletError;
    const took = Date.now() - t0;
    expect(err.kind).toBe('deadline-exceeded');
    expect(err.message).toMatch(/^command "sleep" did not finish within 0.3 s/);
    expect(took).toBeGreaterThanOrEqual(300); // the fake's command never ends: only the timeout ends the call
    await new Promise((r) => setTimeout(r, 100));
    const kill = fake.requests.find((q) => q.execute === 'guest-exec' && q.arguments?.path === '/bin/sh');
    expect(kill?.arguments).toMatchObject({ arg: ['-c', 'kill -9 100'] });
    a.close();
  });

  it('passes an agent error on guest-exec through', async () => {
    const desc = "Guest agent command failed, error was 'Failed to execute child process “nope” (No such file or directory)'";
    const fake = await fakeAgent(execHandler(() => ({ error: { class: 'GenericError', desc } })));
    const a = new GuestAgent(fake.path);
    await expect(guestExec(a, { path: 'nope' })).rejects.toMatchObject({ command: 'guest-exec', errorClass: 'GenericError', desc });
    a.close();
  });
});

// ------------------------------------------------------------------- execSync over a fake agent

/** Just what execSync reads of a PodManager: the container, its dir (a short one, so the socket is <dir>/qga.sock) and the log. */
function fakeManager(dir: string, state: ContainerRecord['state'] = 'running') {
  const lines: Record<string, unknown>[] = [];
  const out = new PassThrough();
  out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)));
  const rec = { id: 'c0ffee', sandboxId: 's1', state } as ContainerRecord;
  const m = {
    log: createLogger('info', out),
    store: { containerDir: () => dir },
    mustContainer: (id: string) => {
      if (!'c0ffee'.startsWith(id)) throw notFound(`container ${id} not found`);
      return rec;
    },
  };
  return { m: m as unknown as PodManager, lines };
}

describe('execSync', () => {
  const dirOf = (f: FakeAgent) => f.path.slice(0, -'/qga.sock'.length);

  it('returns stdout, stderr and the exit code, and logs argv[0] only', async () => {
    const fake = await fakeAgent(execHandler(() => ({ polls: 1, status: { exitcode: 3, 'out-data': b64('o'), 'err-data': b64('e') } })));
    const { m, lines } = fakeManager(dirOf(fake));
    const r = await execSync(m, 'c0f', ['sh', '-c', 'echo s3cr3t-token; exit 3'], 0);
    expect({ stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exitCode }).toEqual({ stdout: 'o', stderr: 'e', exitCode: 3 });
    await new Promise((res) => setImmediate(res));
    const line = lines.find((l) => l.msg === 'exec')!;
    expect(line).toMatchObject({ containerId: 'c0ffee', podSandboxId: 's1', command: 'sh', exitCode: 3 });
    expect(typeof line.durationMs).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('s3cr3t');
  });

  it('answers a command the guest cannot start with exit code 127 and the reason on stderr', async () => {
    const desc = "Guest agent command failed, error was 'Failed to execute child process “nope” (No such file or directory)'";
    const fake = await fakeAgent(execHandler(() => ({ error: { class: 'GenericError', desc } })));
    const r = await execSync(fakeManager(dirOf(fake)).m, 'c0ffee', ['nope'], 0);
    expect(r.exitCode).toBe(127);
    expect(r.stderr.toString()).toBe('Failed to execute child process “nope” (No such file or directory)\n');
  });

  it('refuses an empty command, a negative timeout, an unknown or a stopped container', async () => {
    const { m } = fakeManager('/nonexistent');
    await expect(execSync(m, 'c0ffee', [], 0)).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(execSync(m, 'c0ffee', [''], 0)).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(execSync(m, 'c0ffee', ['true'], -1)).rejects.toMatchObject({ kind: 'invalid-argument' });
    await expect(execSync(m, 'beef', ['true'], 0)).rejects.toMatchObject({ kind: 'not-found' });
    const stopped = fakeManager('/nonexistent', 'exited').m;
    await expect(execSync(stopped, 'c0ffee', ['true'], 0)).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: 'container c0ffee is exited; exec needs a running container',
    });
  });

  it('says the guest runs no agent when the channel never answers (~5 s)', async () => {
    const fake = await fakeAgent(() => null, { sync: 'never' });
    const t0 = Date.now();
    const err = (await execSync(fakeManager(dirOf(fake)).m, 'c0ffee', ['true'], 0).catch((e: unknown) => e)) as VmletError;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4900);
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe(`guest runs no qemu-guest-agent (no answer on ${fake.path} within 5 s)`);
  }, 15_000);
});
