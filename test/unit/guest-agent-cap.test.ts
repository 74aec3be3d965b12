// A hostile guest or exec client cannot make vmlet buffer without bound: the qemu-ga reply reader
// drops a reply past its cap (an endless string costs nothing), and exec stdin for guest-exec,
// which qemu-ga takes whole, stops at GUEST_EXEC_MAX_INPUT_BYTES with an error naming the cap.
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { createLogger } from '../../src/log.js';
import { AgentFrameParser, MAX_AGENT_FRAME_BYTES, type AgentFrame } from '../../src/vm/guest-agent-frames.js';
import { GuestAgent, guestAgentCounters } from '../../src/vm/guest-agent.js';
import { GUEST_EXEC_MAX_INPUT_BYTES, guestExec } from '../../src/vm/guest-exec.js';
import { vmStreamBackend } from '../../src/stream/vm-backend.js';
import type { StreamIO } from '../../src/stream/backend.js';
import { tempDir } from '../helpers/vmlet.js';

const MiB = 1024 * 1024;
/** The stdin cap, as the error message states it. */
const CAP = 16 * MiB;
const kinds = (fs: AgentFrame[]) => fs.map((f) => f.kind);

describe('AgentFrameParser cap', () => {
  it('holds at most the cap of a 200 MiB endless string, reports it once, and is in step after it', () => {
    const p = new AgentFrameParser();
    const seen: AgentFrame[] = [...p.push(Buffer.from('{"return": {"out-data": "'))];
    let most = 0;
    for (let i = 0; i < 200; i++) {
      seen.push(...p.push(Buffer.alloc(MiB, 0x41))); // fresh memory each time, as sockets give
      most = Math.max(most, p.buffered);
    }
    expect(most).toBeLessThanOrEqual(MAX_AGENT_FRAME_BYTES);
    expect(p.buffered).toBe(0);
    expect(kinds(seen)).toEqual(['oversized']);
    expect(seen[0]).toEqual({ kind: 'oversized', limit: MAX_AGENT_FRAME_BYTES });
    // The string ends after all: the next reply comes out whole.
    expect(p.push(Buffer.from('"}}\n{"return": {"pid": 3}}\n'))).toEqual([{ kind: 'reply', value: { return: { pid: 3 } } }]);
  });

  it('drops a reply that crosses the cap within one chunk, and keeps one exactly at the cap', () => {
    const reply = (n: number) => Buffer.from(`{"return": "${'x'.repeat(n - 14)}"}`);
    const p = new AgentFrameParser(100);
    expect(reply(100)).toHaveLength(100);
    expect(p.push(reply(100))).toEqual([{ kind: 'reply', value: { return: 'x'.repeat(86) } }]);
    expect(kinds(p.push(reply(101)))).toEqual(['oversized']);
    const split = reply(150);
    expect(kinds([...p.push(split.subarray(0, 60)), ...p.push(split.subarray(60))])).toEqual(['oversized']);
    expect(p.push(Buffer.from('{"return": 1}'))).toEqual([{ kind: 'reply', value: { return: 1 } }]);
  });

  it('forgets an oversized reply at a delimiter', () => {
    const p = new AgentFrameParser(16);
    expect(kinds(p.push(Buffer.from('{"return": "aaaaaaaaaaaaaaaaaaaa')))).toEqual(['oversized']);
    expect(p.push(Buffer.concat([Buffer.from([0xff]), Buffer.from('{"return": 7}')]))).toEqual([{ kind: 'delimiter' }, { kind: 'reply', value: { return: 7 } }]);
  });
});

describe('GuestAgent against a guest that never ends its reply', () => {
  let server: Server | undefined;
  let dir: string | undefined;
  const conns: Socket[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.destroy();
    if (server) await new Promise((r) => server!.close(r));
    if (dir) rmSync(dir, { recursive: true, force: true });
    server = dir = undefined;
  });

  it('fails the request naming the cap, logs once, counts, and resynchronises on the next request', async () => {
    dir = tempDir('vmlet-qga-cap-');
    const path = join(dir, 'qga.sock');
    server = createServer((sock) => {
      conns.push(sock);
      const hostile = conns.length === 1;
      let buf = '';
      sock.on('error', () => undefined);
      sock.on('data', (chunk: Buffer) => {
        buf += chunk.toString('latin1').replace(/\xff/g, '');
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const req = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id?: number } };
          buf = buf.slice(nl + 1);
          if (req.execute === 'guest-sync-delimited') sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(JSON.stringify({ return: req.arguments!.id }) + '\n')]));
          else if (hostile) {
            // An endless string, 4 MiB of it before anyone gives up, in 64 KiB writes.
            sock.write('{"return": {"exited": true, "out-data": "');
            for (let i = 0; i < 64; i++) sock.write(Buffer.alloc(64 * 1024, 0x41));
          } else sock.write('{"return": {}}\n');
        }
      });
    });
    await new Promise<void>((r) => server!.listen(path, r));
    const lines: { level: number; msg: string; limitBytes?: number }[] = [];
    const out = new PassThrough();
    out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string })));
    const a = new GuestAgent(path, { maxReplyBytes: MiB, log: createLogger('info', out) });
    const before = guestAgentCounters.oversizedReplies;
    await expect(a.request('guest-exec-status', { pid: 1 })).rejects.toMatchObject({
      kind: 'failed-precondition',
      message: `qemu-guest-agent on ${path} sent a reply longer than ${MiB} bytes (the most vmlet reads); it was dropped`,
    });
    expect(a.oversizedReplies).toBe(1);
    expect(guestAgentCounters.oversizedReplies).toBe(before + 1);
    expect(await a.request('guest-ping')).toEqual({});
    expect(conns).toHaveLength(2);
    await new Promise((r) => setImmediate(r));
    const warned = lines.filter((l) => /longer than the limit/.test(l.msg));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ limitBytes: MiB });
    a.close();
  });
});

describe('exec stdin cap', () => {
  it('guestExec refuses stdin past the cap before asking the agent anything', async () => {
    expect(GUEST_EXEC_MAX_INPUT_BYTES).toBe(CAP);
    const asked: string[] = [];
    const agent = { request: (cmd: string) => (asked.push(cmd), Promise.resolve({ pid: 1, exited: true })) } as unknown as GuestAgent;
    await expect(guestExec(agent, { path: 'cat', input: Buffer.alloc(CAP + 1) })).rejects.toMatchObject({
      kind: 'invalid-argument',
      message: expect.stringContaining(`exec stdin is larger than 16 MiB (${CAP} bytes)`) as unknown,
    });
    expect(asked).toEqual([]);
  });

  const io = (stdin: Readable): StreamIO => ({ stdin, stdout: undefined, stderr: undefined, onResize: () => undefined, signal: new AbortController().signal });
  /** A VM backend whose exec reads stdin whole, as podStreamLookups does for guest-exec. */
  const backend = () =>
    vmStreamBackend({
      consolePty: () => Promise.reject(new Error('unused')),
      podAddress: () => Promise.reject(new Error('unused')),
      async exec(_req, { stdin }) {
        let n = 0;
        for await (const c of stdin!) n += (c as Buffer).length;
        return { exitCode: n };
      },
    });
  const req = { containerId: 'c', cmd: ['cat'], tty: false, stdin: true, stdout: true, stderr: true };

  it('stops a stdin twice the cap at the cap with an error naming it, and stops buffering the client', async () => {
    let sent = 0;
    const endless = new Readable({
      read() {
        sent += MiB;
        this.push(sent > 2 * CAP ? null : Buffer.alloc(MiB));
      },
    });
    await expect(backend().exec(req, io(endless))).rejects.toMatchObject({
      kind: 'invalid-argument',
      message: expect.stringContaining(`larger than 16 MiB (${CAP} bytes)`) as unknown,
    });
    expect(endless.destroyed).toBe(true);
    expect(sent).toBeLessThan(CAP + 4 * MiB);
  });

  it('passes stdin up to the cap through whole', async () => {
    expect(await backend().exec(req, io(Readable.from([Buffer.alloc(CAP - 10), Buffer.alloc(10)])))).toEqual({ exitCode: CAP });
  });
});
