// Frames of the vmlet guest agent protocol: encoding, decoding across split and merged chunks,
// the length bounds (refused before anything is buffered) and empty payloads. Then AgentClient
// against a fake agent on a unix socket: error codes, time limits, malformed input, connection loss.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmletError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { AgentClient, type ExitEvent } from '../../src/guest/agent-client.js';
import { FrameDecoder, FrameType, MAX_FRAME_LENGTH, encodeFrame, type Frame } from '../../src/guest/agent-frames.js';

const lengthPrefix = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};

describe('guest agent frames', () => {
  it('encodes length, type, stream and payload', () => {
    const f = encodeFrame(FrameType.STDOUT, 0x8000_0001, Buffer.from('hi'));
    expect(f.toString('hex')).toBe('00000007' + '05' + '80000001' + Buffer.from('hi').toString('hex'));
  });

  it('decodes a frame fed one byte at a time', () => {
    const d = new FrameDecoder();
    const bytes = encodeFrame(FrameType.RESPONSE, 7, Buffer.from('{"result":{}}'));
    const out = [];
    for (const b of bytes) out.push(...d.push(Buffer.from([b])));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ type: FrameType.RESPONSE, stream: 7 });
    expect(out[0]!.payload.toString()).toBe('{"result":{}}');
    expect(d.buffered).toBe(0);
  });

  it('decodes several frames from one chunk and a frame split across chunks', () => {
    const d = new FrameDecoder();
    const a = encodeFrame(FrameType.EVENT, 0, Buffer.from('{"event":"ready"}'));
    const b = encodeFrame(FrameType.STDERR, 3, Buffer.alloc(40_000, 0x61));
    const c = encodeFrame(FrameType.ACK, 3, lengthPrefix(99));
    const all = Buffer.concat([a, b, c]);
    const first = d.push(all.subarray(0, a.length + 100));
    expect(first.map((f) => f.type)).toEqual([FrameType.EVENT]);
    const rest = d.push(all.subarray(a.length + 100));
    expect(rest.map((f) => f.type)).toEqual([FrameType.STDERR, FrameType.ACK]);
    expect(rest[0]!.payload.equals(Buffer.alloc(40_000, 0x61))).toBe(true);
    expect(rest[1]!.payload.readUInt32BE(0)).toBe(99);
  });

  it('takes an empty payload (length 5)', () => {
    const d = new FrameDecoder();
    const [f] = d.push(encodeFrame(FrameType.CLOSE_STDIN, 9));
    expect(f).toMatchObject({ type: FrameType.CLOSE_STDIN, stream: 9 });
    expect(f!.payload.length).toBe(0);
  });

  it('refuses a zero length prefix', () => {
    expect(() => new FrameDecoder().push(lengthPrefix(0))).toThrow(VmletError);
  });

  it('refuses a 2 MiB length prefix before its bytes arrive', () => {
    const d = new FrameDecoder();
    expect(() => d.push(Buffer.concat([lengthPrefix(2 * 1024 * 1024), Buffer.from([5])]))).toThrow(/outside 5\.\.1048581/);
  });

  it('accepts exactly the largest frame and refuses to encode a larger one', () => {
    const d = new FrameDecoder();
    const max = encodeFrame(FrameType.RESPONSE, 1, Buffer.alloc(MAX_FRAME_LENGTH - 5));
    expect(d.push(max)).toHaveLength(1);
    expect(() => encodeFrame(FrameType.RESPONSE, 1, Buffer.alloc(MAX_FRAME_LENGTH - 4))).toThrow(VmletError);
  });
});

describe('AgentClient against a fake agent', () => {
  const log = createLogger('fatal');
  let server: Server | undefined;
  let dir: string | undefined;
  afterEach(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    server = dir = undefined;
  });

  /** A connected client and the agent's end, which hands each frame it gets to onFrame. */
  async function pair(onFrame: (f: Frame, agent: Socket) => void): Promise<{ client: AgentClient; agent: Socket }> {
    dir = mkdtempSync(join(tmpdir(), 'vmlet-agent-unit-'));
    const path = join(dir, 's');
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer((s) => {
        const d = new FrameDecoder();
        s.on('data', (c: Buffer) => d.push(c).forEach((f) => onFrame(f, s)));
        resolve(s);
      });
    });
    await new Promise<void>((resolve) => server!.listen(path, resolve));
    const socket = connect(path);
    await new Promise((resolve) => socket.once('connect', resolve));
    return { client: AgentClient.over(socket, { log }), agent: await accepted };
  }
  const reply = (agent: Socket, id: number, body: unknown) => agent.write(encodeFrame(FrameType.RESPONSE, id, Buffer.from(JSON.stringify(body))));
  const method = (f: Frame) => (JSON.parse(f.payload.toString()) as { method: string }).method;

  it('parses ns fields as bigint and maps error codes to kinds', async () => {
    const { client } = await pair((f, agent) => {
      if (method(f) === 'hello') {
        reply(agent, f.stream, { result: { version: 1, agent: 'x', bootNs: '1700000000123456789', containers: [{ id: 'a', state: 'exited', pid: 5, exitCode: 1, signal: 0, startedAt: '1700000000123456789', finishedAt: '1700000001123456789', stream: 3 }, { id: 7 }] } });
      } else reply(agent, f.stream, { error: { code: 'not-found', message: 'container a not found' } });
    });
    const h = await client.hello();
    expect(h.bootNs).toBe(1700000000123456789n);
    expect(h.containers).toEqual([{ id: 'a', state: 'exited', pid: 5, exitCode: 1, signal: 0, startedAt: 1700000000123456789n, finishedAt: 1700000001123456789n, stream: 3 }]);
    await expect(client.removeContainer('a')).rejects.toMatchObject({ kind: 'not-found', message: 'container a not found' });
    client.close();
  });

  it('times out a call naming the method, and rejects pending calls when the connection goes', async () => {
    const { client, agent } = await pair(() => {});
    await expect(client.stats({ timeoutMs: 50 })).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringContaining('stats') as unknown });
    const pending = client.startContainer('a', 1);
    const closed = new Promise((resolve) => client.once('close', resolve));
    agent.destroy();
    await expect(pending).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringContaining('start_container') as unknown });
    await closed;
    await expect(client.hello()).rejects.toBeInstanceOf(VmletError);
  });

  it('ignores malformed events, ACKs output after the sink, and emits exit after the output', async () => {
    const acks: number[] = [];
    const { client, agent } = await pair((f) => {
      if (f.type === FrameType.ACK) acks.push(f.payload.readUInt32BE(0));
    });
    const seen: string[] = [];
    let release: () => void = () => {};
    client.attachSink(4, {
      stdout: (d) => new Promise<void>((resolve) => { seen.push(d.toString()); release = resolve; }),
      stderr: () => {},
    });
    const exit = new Promise<ExitEvent>((resolve) => client.once('exit', resolve));
    agent.write(encodeFrame(FrameType.EVENT, 0, Buffer.from('not json')));
    agent.write(encodeFrame(FrameType.EVENT, 0, Buffer.from('{"event":"surprise"}')));
    agent.write(encodeFrame(FrameType.STDOUT, 4, Buffer.from('abc')));
    agent.write(encodeFrame(FrameType.STDOUT, 9, Buffer.from('nobody listens')));
    agent.write(encodeFrame(FrameType.EVENT, 0, Buffer.from('{"event":"exit","stream":4,"id":"a","exec":false,"pid":3,"exitCode":0,"signal":0,"oomKilled":false,"finishedAt":"1"}')));
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(['abc']);
    expect(acks).toEqual([14]); // stream 9's output, dropped and ACKed at once
    release();
    expect(await exit).toMatchObject({ stream: 4, finishedAt: 1n });
    await new Promise((r) => setTimeout(r, 20));
    expect(acks).toEqual([14, 3]);
    client.close();
  });

  it('drops the connection on an oversized frame', async () => {
    const { client, agent } = await pair(() => {});
    const closed = new Promise<Error | undefined>((resolve) => client.once('close', resolve));
    const head = Buffer.alloc(9);
    head.writeUInt32BE(2 * 1024 * 1024, 0);
    agent.write(head);
    expect(await closed).toBeInstanceOf(VmletError);
  });
});
