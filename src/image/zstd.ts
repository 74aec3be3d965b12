// zstd layers: decompressed by the zstd program (Debian's zstd package, which node-install
// installs) in a child process, where there is one; by fzstd (pure JavaScript) otherwise.
// Measured on this project's 2-core machine, an 838 MB tar of /usr/lib compressed with zstd -3:
// the program 0.78 s, fzstd 4.5 s (Node's own gunzip of the same tar: 2.2 s); and the program
// runs on a core of its own, beside the thread reading the tar.
import { spawn } from 'node:child_process';
import { Duplex, Transform } from 'node:stream';
import { Decompress } from 'fzstd';
import { VmletError } from '../errors.js';
import { which } from '../util/binaries.js';

export const ZSTD = 'zstd';
/** What a node without the program gets, said at start and by doctor. */
export const WITHOUT_ZSTD = `${ZSTD} not found: zstd-compressed image layers are decompressed in JavaScript, ~6x slower`;

/** The user that runs the zstd program when vmlet is root: it only needs its stdin and stdout. */
const NOBODY = 65534;

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
 * `program -d` as a stream: bytes in to its stdin, out of its stdout. It ends only once the
 * program exits 0; any other exit fails the stream with the program's own words, so a corrupt
 * or truncated layer is never taken for a short one. Destroying the stream kills the program.
 */
export function zstdProcess(program: string, bad: (why: string) => Error): Duplex {
  const root = process.getuid?.() === 0;
  const child = spawn(program, ['-d', '-c', '-q', '--no-progress'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {},
    ...(root ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  const { stdin, stdout, stderr } = child;
  let said = '';
  stderr.setEncoding('utf8');
  stderr.on('data', (s: string) => {
    if (said.length < 4096) said += s;
  });
  // A program that stops reading (bad data) breaks the pipe: its exit status says why.
  stdin.on('error', () => undefined);
  const duplex = new Duplex({
    write(chunk: Buffer, _e, cb) {
      if (stdin.write(chunk)) cb();
      else stdin.once('drain', () => cb());
    },
    final(cb) {
      stdin.end();
      cb();
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      cb(err);
    },
  });
  stdout.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) stdout.pause();
  });
  const broken = (err: Error) => duplex.destroy(new VmletError('internal', `${program}: ${err.message}`));
  child.once('error', broken);
  stdout.on('error', broken);
  stderr.on('error', broken);
  // 'close': the program has exited and its stdout has been read to the end.
  child.once('close', (code, signal) => {
    if (duplex.destroyed) return;
    if (code === 0) duplex.push(null);
    else duplex.destroy(bad(`zstd: ${plain(said) || (signal ? `killed by ${signal}` : `exit status ${code}`)}`));
  });
  return duplex;
}

/** "zstd: /*stdin*\: unsupported format" → "unsupported format". */
function plain(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^zstd:\s*/, '').replace(/^\/\*stdin\*\\\s*:\s*/, '').trim())
    .filter(Boolean)
    .join('; ');
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
