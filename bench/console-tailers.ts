// Benchmark (not a test): the CPU that N idle VM consoles cost vmlet (one ConsoleTailer each,
// as in `vmlet serve`), against the same process with none, over the same interval.
//   npx tsx bench/console-tailers.ts [--tailers 50] [--seconds 10]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConsoleTailer } from '../src/stream/console-tailer.js';
import { tempDir } from '../test/helpers/vmlet.js';

const { values } = parseArgs({ options: { tailers: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' } } });
const N = Number(values.tailers);
const MS = Number(values.seconds) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Percent of one core this process used over `ms`. */
async function cpuOver(ms: number): Promise<number> {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const u = process.cpuUsage(u0);
  return ((u.user + u.system) / 1000 / (performance.now() - t0)) * 100;
}

async function main(): Promise<void> {
  const dir = tempDir('vmlet-bench-tailers-');
  const base = await cpuOver(MS);
  const tailers: ConsoleTailer[] = [];
  for (let i = 0; i < N; i++) {
    const f = join(dir, `console-${i}.log`);
    writeFileSync(f, 'booted\n');
    const t = new ConsoleTailer(f, join(dir, `cri-${i}.log`), join(dir, `offset-${i}`), { offset: 0 }, pino({ level: 'silent' }));
    t.start();
    tailers.push(t);
  }
  await sleep(1000); // the first copies
  const busy = await cpuOver(MS);
  for (const t of tailers) await t.halt();
  console.log(`${N} idle consoles: ${busy.toFixed(2)}% of a core; the same process with none: ${base.toFixed(2)}%; the consoles' share: ${(busy - base).toFixed(2)}% over ${MS / 1000} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
