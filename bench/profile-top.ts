// Prints the heaviest functions of a V8 .cpuprofile (from --profile of a benchmark): self time
// (samples in the function itself) and total time (with what it calls), in ms and % of the run.
//   npx tsx bench/profile-top.ts FILE.cpuprofile [--top N=25] [--callers NAME]
//     --callers NAME  where the self time of functions named NAME comes from: their callers' stacks
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const [file] = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(i > 0 && ['--top', '--callers'].includes(all[i - 1]!)));
const topIdx = process.argv.indexOf('--top');
const top = topIdx > 0 ? Number(process.argv[topIdx + 1]) : 25;
const callersIdx = process.argv.indexOf('--callers');
const callersOf = callersIdx > 0 ? process.argv[callersIdx + 1] : undefined;
if (!file || !(top > 0)) {
  console.error('usage: npx tsx bench/profile-top.ts FILE.cpuprofile [--top N]');
  process.exit(2);
}
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const label = (n: Node) => {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/)?/, '$1')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};
const self = new Map<string, number>();
const stacks = new Map<string, number>();
const total = new Map<string, number>();
let sum = 0;
p.samples.forEach((id, i) => {
  const ms = (p.timeDeltas[i] ?? 0) / 1000;
  sum += ms;
  const n = byId.get(id)!;
  self.set(label(n), (self.get(label(n)) ?? 0) + ms);
  if (callersOf !== undefined && n.callFrame.functionName === callersOf) {
    const chain: string[] = [];
    for (let cur = parent.get(id); cur !== undefined && chain.length < 6; cur = parent.get(cur)) chain.push(label(byId.get(cur)!));
    const key = chain.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + ms);
  }
  // Each function once per sample, however deep it recurses.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (seen.has(l)) continue;
    seen.add(l);
    total.set(l, (total.get(l) ?? 0) + ms);
  }
});
const pct = (ms: number) => ((100 * ms) / sum).toFixed(1).padStart(5);
const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
console.log(`${file}: ${(sum / 1000).toFixed(2)} s sampled`);
console.log('\nself ms      %   function');
for (const [l, ms] of rows(self)) console.log(`${ms.toFixed(0).padStart(7)} ${pct(ms)}   ${l}`);
if (callersOf !== undefined) {
  console.log(`\nself time of ${callersOf}, by its callers (nearest first)`);
  for (const [chain, ms] of rows(stacks)) console.log(`${ms.toFixed(0).padStart(7)} ${pct(ms)}   ${chain}`);
}
console.log('\ntotal ms     %   function');
for (const [l, ms] of rows(total)) console.log(`${ms.toFixed(0).padStart(7)} ${pct(ms)}   ${l}`);
