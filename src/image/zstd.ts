// zstd layers: decompressed by the zstd program (Debian's zstd package, which node-install
// installs) in a child process, where there is one; by fzstd (pure JavaScript) otherwise.
// Measured on this project's 2-core machine, an 838 MB tar of /usr/lib compressed with zstd -3:
// the program 0.78 s, fzstd 4.5 s (Node's own gunzip of the same tar: 2.2 s); and the program
// runs on a core of its own, beside the thread reading the tar.
import { Duplex, Transform } from 'node:stream';
import { Decompress } from 'fzstd';
import { which } from '../util/binaries.js';
import { decompressProcess } from './decompress-process.js';

export const ZSTD = 'zstd';
/** What a node without the program gets, said at start and by doctor. */
export const WITHOUT_ZSTD = `${ZSTD} not found: zstd-compressed image layers are decompressed in JavaScript, ~6x slower`;

let found: string | null | undefined;
/** The zstd program on this node, looked up once per thread (undefined: none). */
export function zstdProgram(): string | undefined {
  if (found === undefined) found = which(ZSTD) ?? null;
  return found ?? undefined;
}

/**
 * A zstd stream's decompressor: the zstd program when the node has it, else fzstd. Data the
 * program refuses fails the stream with `bad(what zstd said)`.
 */
export function zstdDecompressor(bad: (why: string) => Error): Duplex {
  const program = zstdProgram();
  return program ? zstdProcess(program, bad) : zstdInJs();
}

/**
 * `zstd -d` as a stream (decompress-process.ts): it ends only once the program exits 0; any
 * other exit fails the stream with the program's own words. Destroying the stream kills it.
 */
export function zstdProcess(program: string, bad: (why: string) => Error): Duplex {
  return decompressProcess(program, ['-d', '-c', '-q', '--no-progress'], ZSTD, bad);
}

/** fzstd, where the node has no zstd program. */
export function zstdInJs(): Transform {
  let out: Transform;
  const d = new Decompress((chunk: Uint8Array) => out.push(Buffer.from(chunk)));
  out = new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  return out;
}
