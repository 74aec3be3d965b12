// V8 CPU profiles of a vmlet the benchmarks start (--profile DIR). The profiler is preloaded with
// node --require through NODE_OPTIONS (--cpu-prof is not allowed there): SIGUSR2 starts V8's
// sampling profiler, the next SIGUSR2 writes what it sampled to DIR/<name>-<pid>.cpuprofile
// (Chrome DevTools' Performance tab opens it; bench/profile-top.ts prints its heaviest functions).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { tempDir } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';

const PRELOAD = (dir: string) => `
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const s = new inspector.Session();
s.connect();
s.post('Profiler.enable');
s.post('Profiler.setSamplingInterval', { interval: 200 });
let on = false;
process.on('SIGUSR2', () => {
  if (!on) return (on = true), s.post('Profiler.start');
  on = false;
  s.post('Profiler.stop', (err, res) => {
    if (!err) writeFileSync(${JSON.stringify(dir)} + '/' + (process.env.BENCH_PROFILE_NAME || 'vmlet') + '-' + process.pid + '.cpuprofile', JSON.stringify(res.profile));
  });
});
`;

/** The NODE_OPTIONS value that preloads the profiler, writing its profiles to `dir`. */
export function profilerOptions(dir: string): string {
  mkdirSync(dir, { recursive: true }); // the preload's write fails silently into a missing dir
  const preload = join(tempDir('vmlet-bench-prof-'), 'profiler.cjs');
  writeFileSync(preload, PRELOAD(resolve(dir)));
  return `--require ${preload}`;
}

/**
 * Runs `start`, which spawns a process (a vmlet), with the profiler preloaded into it when `dir`
 * is given: its profiles are named `name`-<pid>. The environment is as it was afterwards.
 */
export async function profiled<T>(dir: string | undefined, name: string, start: () => Promise<T>): Promise<T> {
  if (!dir) return start();
  Object.assign(process.env, { NODE_OPTIONS: profilerOptions(dir), BENCH_PROFILE_NAME: name });
  try {
    return await start();
  } finally {
    delete process.env.NODE_OPTIONS;
    delete process.env.BENCH_PROFILE_NAME;
  }
}

/** Starts (first call) or stops and writes (second call) the profile of each process. */
export function toggleProfilers(procs: ChildProcess[]): void {
  for (const p of procs) p.kill('SIGUSR2');
}

/** Where `name`'s profile of `proc` lands once stopped; waits until it is written. */
export async function profileWritten(dir: string, name: string, proc: ChildProcess): Promise<string> {
  const file = join(resolve(dir), `${name}-${proc.pid}.cpuprofile`);
  await waitFor(`${file} to be written`, () => existsSync(file), { timeoutMs: 30_000 });
  return file;
}
