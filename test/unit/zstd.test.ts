// zstd layers' decompressors (src/image/zstd.ts): the real zstd program (node-install installs
// Debian's zstd package) in a child process, and fzstd where a node has none. Data is compressed
// here by the same program.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { zstdInJs, zstdProcess, zstdProgram } from '../../src/image/zstd.js';
import { HostileLayerError, decompressor } from '../../src/image/layer-tar.js';
import { waitFor } from '../helpers/wait.js';
import { VmletError } from '../../src/errors.js';

const program = zstdProgram();
const bad = (why: string) => new HostileLayerError('sha256:x', why);
if (!program) throw new Error('the zstd program is not installed: node-install/install.sh installs it (Debian package zstd)');

/** Compressible bytes (text with some noise), a few MiB: several zstd blocks. */
const plainBytes = Buffer.concat(Array.from({ length: 4096 }, (_, i) => Buffer.from(`line ${i} ${randomBytes(8).toString('hex')} ${'lorem ipsum '.repeat(80)}\n`)));
const compressed = execFileSync(program, ['-q', '-c', '-3'], { input: plainBytes, maxBuffer: 64 << 20 });

/** Runs `bytes` through `stream` in 64 KiB pieces, reading slowly enough to make it wait. */
async function through(stream: NodeJS.ReadWriteStream, bytes: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  const pieces = function* () {
    for (let i = 0; i < bytes.length; i += 65536) yield bytes.subarray(i, i + 65536);
  };
  await pipeline(
    Readable.from(pieces()),
    stream,
    new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        setImmediate(cb);
      },
    }),
  );
  return Buffer.concat(out);
}

/** The zstd programs that are children of this process. */
function zstdChildren(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === 'zstd' && ppid === process.pid) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('zstd decompression', () => {
  it('the program and fzstd give back the same bytes, and layers of zstd media types use the program', async () => {
    expect(compressed.length).toBeLessThan(plainBytes.length / 4);
    expect((await through(zstdProcess(program, bad), compressed)).equals(plainBytes)).toBe(true);
    expect((await through(zstdInJs(), compressed)).equals(plainBytes)).toBe(true);
    const viaMediaType = decompressor('application/vnd.oci.image.layer.v1.tar+zstd', 'sha256:x');
    const seen = waitFor('a zstd child', () => zstdChildren().length > 0 || undefined, { timeoutMs: 5000, intervalMs: 5 });
    const out = through(viaMediaType, compressed);
    await seen;
    expect((await out).equals(plainBytes)).toBe(true);
  });

  it('fails, never ends short, on data that is not zstd, on a truncated stream and on trailing garbage, naming what zstd said', async () => {
    await expect(through(zstdProcess(program, bad), Buffer.from('not zstd at all'))).rejects.toThrow(/^image layer sha256:x rejected: zstd: unsupported format$/);
    await expect(through(zstdProcess(program, bad), compressed.subarray(0, compressed.length - 100))).rejects.toThrow(/^image layer sha256:x rejected: zstd: .*(premature end|unexpected end)/);
    await expect(through(zstdProcess(program, bad), Buffer.concat([compressed, randomBytes(2000)]))).rejects.toThrow(/^image layer sha256:x rejected: zstd: /);
    await expect(through(zstdInJs(), compressed.subarray(0, compressed.length - 100))).rejects.toThrow();
  });

  it('runs the program as nobody when vmlet is root, and kills it when the stream is destroyed', async () => {
    const before = new Set(zstdChildren());
    const d = zstdProcess(program, bad);
    d.on('error', () => undefined);
    d.write(compressed.subarray(0, 1000));
    const [pid] = await waitFor('the zstd child', () => {
      const mine = zstdChildren().filter((p) => !before.has(p));
      return mine.length ? mine : undefined;
    }, { timeoutMs: 5000, intervalMs: 5 });
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    expect(uid).toBe(process.getuid?.() === 0 ? 65534 : process.getuid?.());
    d.destroy();
    await waitFor('the zstd child to be gone', () => !zstdChildren().includes(pid!) || undefined, { timeoutMs: 5000, intervalMs: 5 });
  });

  it('a program that cannot start fails the stream with its name', async () => {
    const err = await through(zstdProcess('/nonexistent/zstd', bad), compressed).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(VmletError);
    expect((err as VmletError).kind).toBe('internal');
    expect((err as VmletError).message).toMatch(/^\/nonexistent\/zstd: spawn .*ENOENT/);
  });
});
