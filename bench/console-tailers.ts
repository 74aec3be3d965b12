// Benchmark (not a test): the CPU that N idle VM consoles cost vmlet (one ConsoleTailer each,
// as in `vmlet serve`), against the same process with none, over the same interval; then a
// console line's delay to the CRI log: lone lines after a quiet spell, and lines in a burst (as
// a boot writes them: one every 2 ms).
//   npx tsx bench/console-tailers.ts [--tailers 50] [--seconds 10] [--lines 40]
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConsoleTailer } from '../src/stream/console-tailer.js';
import { tempDir } from '../test/helpers/vmlet.js';

const { values } = parseArgs({ options: { tailers: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' }, lines: { type: 'string', default: '40' } } });
const N = Number(values.tailers);
const LINES = Number(values.lines);
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
  await latency(dir);
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/** ms from a console write to the CRI log holding it, polled every 0.2 ms. */
async function latency(dir: string): Promise<void> {
  const consoleLog = join(dir, 'lat-console.log');
  const cri = join(dir, 'lat-cri.log');
  writeFileSync(consoleLog, '');
  const t = new ConsoleTailer(consoleLog, cri, join(dir, 'lat-offset'), { offset: 0 }, pino({ level: 'silent' }));
  t.start();
  await sleep(500);
  const size = () => {
    try {
      return statSync(cri).size;
    } catch {
      return 0;
    }
  };
  const one = async (gapMs: number): Promise<number> => {
    const before = size();
    const t0 = performance.now();
    appendFileSync(consoleLog, `line ${t0}\n`);
    while (size() === before) await new Promise((r) => setTimeout(r, 0.2));
    const ms = performance.now() - t0;
    await sleep(gapMs);
    return ms;
  };
  const lone: number[] = [];
  for (let i = 0; i < LINES; i++) lone.push(await one(300));
  // A burst: a line every 2 ms, written while the CRI log is polled; each line's delay from its own write.
  const burst: number[] = [];
  const wroteAt: number[] = [];
  const writer = (async () => {
    for (let i = 0; i < LINES; i++) {
      wroteAt.push(performance.now());
      appendFileSync(consoleLog, `burst ${i} ${'x'.repeat(60)}\n`);
      await sleep(2);
    }
  })();
  const seen = new Set<number>();
  const t0 = performance.now();
  while (seen.size < LINES && performance.now() - t0 < 10_000) {
    const text = readFileSync(cri, 'utf8');
    const now = performance.now();
    for (let i = 0; i < wroteAt.length; i++) {
      if (!seen.has(i) && text.includes(`burst ${i} `)) {
        seen.add(i);
        burst.push(now - wroteAt[i]!);
      }
    }
    await new Promise((r) => setTimeout(r, 0.2));
  }
  await writer;
  await t.halt();
  const f = (xs: number[]) => `median ${pct(xs, 50).toFixed(1)} ms, p90 ${pct(xs, 90).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
  console.log(`console line → CRI log, ${LINES} lone lines (300 ms apart): ${f(lone)}`);
  console.log(`console line → CRI log, a burst of ${LINES} lines 2 ms apart: ${f(burst)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
