// A decompressor program (zstd, xz) run on untrusted bytes: in a child process, as nobody when
// vmlet is root (it only needs its stdin and stdout), with no environment; a stream that ends
// only once the program exits 0, so corrupt or truncated input is never taken for short input.
import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { VmletError } from '../errors.js';

const NOBODY = 65534;

/**
 * A decompressor program (`args`: decompress stdin to stdout) as a stream: bytes in to its stdin, out of its stdout. It ends only once the
 * program exits 0; any other exit fails the stream with the program's own words, so a corrupt
 * or truncated layer is never taken for a short one. Destroying the stream kills the program.
 */
export function decompressProcess(program: string, args: readonly string[], name: string, bad: (why: string) => Error): Duplex {
  const root = process.getuid?.() === 0;
  const child = spawn(program, args, {
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
    else duplex.destroy(bad(`${name}: ${plain(said, name) || (signal ? `killed by ${signal}` : `exit status ${code}`)}`));
  });
  return duplex;
}

/** "zstd: /*stdin*\: unsupported format", "xz: (stdin): File format not recognized" → the words after. */
function plain(stderr: string, name: string): string {
  const prefix = new RegExp(`^${name.replace(/[^\w-]/g, '')}:\\s*`);
  return stderr
    .split('\n')
    .map((l) => l.replace(prefix, '').replace(/^(\/\*stdin\*\\|\(stdin\))\s*:\s*/, '').trim())
    .filter(Boolean)
    .join('; ');
}
