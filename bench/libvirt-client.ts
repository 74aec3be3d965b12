// Benchmark (not a test): vmlet's libvirt RPC client against the native binding it replaced, and
// exit detection by lifecycle event against the 1 s poll it replaced.
//  1. Calls per second of a cheap call on one running domain (TCG, 64 MiB, firmware only): the
//     bare getInfo, and lookup + getInfo (what Libvirt.domainInfo does), one call in flight at a
//     time and `depth` at once; over vmlet's RPC client and over @unraid/libvirt when it is
//     still installed (imported dynamically: "binding absent" once it is gone). The binding runs
//     in a child process: with calls in flight at once it sometimes fails ("invalid domain
//     pointer") and sometimes dies of SIGSEGV, which must not take the bench and its VM with it.
//  2. Exit detection after kill -9 of the domain's QEMU, `kills` times: the lifecycle event
//     (Libvirt.onLifecycle) and, running at the same time on the same kill, the old exit poll
//     (Libvirt.activeDomainNames every 1000 ms, as PodManager ran it), each from the kill.
//   npx tsx bench/libvirt-client.ts [seconds per variant=3] [depth=16] [kills=5]
import { fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Libvirt, type LifecycleEvent } from '../src/vm/libvirt.js';
import { LibvirtRpc } from '../src/vm/rpc/index.js';
import { waitFor } from '../test/helpers/wait.js';

const SECONDS = Number(process.argv[2] ?? 3);
const DEPTH = Number(process.argv[3] ?? 16);
const KILLS = Number(process.argv[4] ?? 5);
const URI = 'qemu:///system';
/** Set (to the domain's name) in the child that measures the binding. */
const CHILD_ENV = 'VMLET_BENCH_BINDING_DOMAIN';
/** PodManager.start's monitor interval before events. */
const POLL_MS = 1000;

/** The few parts of @unraid/libvirt 2.2 this bench uses. */
interface BindingDomain {
  getInfo(): Promise<{ state: number }>;
}
interface BindingHypervisor {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  domainLookupByName(name: string): Promise<BindingDomain>;
}
interface BindingModule {
  Hypervisor: new (o: { uri: string }) => BindingHypervisor;
}

async function binding(): Promise<BindingModule | string> {
  const spec = '@unraid/libvirt'; // not a literal: the bench must typecheck once the package is gone
  try {
    return (await import(spec)) as BindingModule;
  } catch (err) {
    return `binding absent (${(err as Error).message.split('\n')[0]})`;
  }
}

/** Calls per second of `fn` with `depth` calls in flight, over `seconds`; failed calls are counted apart. */
async function rate(fn: () => Promise<unknown>, depth: number, seconds: number): Promise<string> {
  for (let i = 0; i < 50; i++) await fn(); // warm-up
  let n = 0;
  const errors: string[] = [];
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      try {
        await fn();
        n++;
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: depth }, worker));
  const perSecond = `${(n / ((performance.now() - t0) / 1000)).toFixed(0)}/s`;
  return errors.length === 0 ? perSecond : `${perSecond} (${errors.length} failed: "${errors[0]}")`;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const fmt = (x: number) => `${x.toFixed(0)} ms`.padStart(8);

async function main(): Promise<void> {
  const name = `vmlet-bench-client-${randomBytes(4).toString('hex')}`;
  const lv = new Libvirt(URI, pino({ level: 'silent' }));
  const rpc = new LibvirtRpc({ uri: URI });
  try {
    await lv.defineDomain(`<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><memballoon model='none'/></devices>
</domain>`);
    await lv.startDomain(name);
    const dom = await rpc.lookupDomain(name);

    console.log(`calls per second on one running domain (${SECONDS} s per variant; libvirt ${await lv.libvirtVersion()})`);
    const variants: Array<[string, () => Promise<unknown>]> = [
      ['RPC client: getInfo', () => rpc.getInfo(dom)],
      ['RPC client: lookup + getInfo (Libvirt.domainInfo)', () => lv.domainInfo(name)],
    ];
    console.log(`${'variant'.padEnd(52)}${'1 in flight'.padStart(14)}  ${DEPTH} in flight`);
    for (const [label, fn] of variants) console.log(`${label.padEnd(52)}${(await rate(fn, 1, SECONDS)).padStart(14)}  ${await rate(fn, DEPTH, SECONDS)}`);
    for (const line of await bindingInChild(name)) console.log(line);

    // Exit detection: both detectors watch every kill.
    const events: Array<LifecycleEvent & { at: number }> = [];
    lv.onLifecycle((e) => {
      if (e.name === name) events.push({ ...e, at: performance.now() });
    });
    await lv.eventsReady();
    let pollSeen: number | undefined;
    const poll = setInterval(() => {
      lv.activeDomainNames(new Set([name]))
        .then((active) => {
          if (!active.has(name) && pollSeen === undefined) pollSeen = performance.now();
        })
        .catch((err: unknown) => console.error(`poll failed: ${(err as Error).message}`));
    }, POLL_MS);
    const byEvent: number[] = [];
    const byPoll: number[] = [];
    try {
      for (let k = 0; k < KILLS; k++) {
        if (k > 0) await lv.startDomain(name);
        const pidFile = `/run/libvirt/qemu/${name}.pid`;
        await waitFor('QEMU pid file', () => existsSync(pidFile));
        const pid = Number(readFileSync(pidFile, 'utf8').trim());
        // Kill at a random point of the poll's period, as a real exit would be.
        await new Promise((r) => setTimeout(r, Math.random() * POLL_MS));
        pollSeen = undefined;
        const t = performance.now();
        process.kill(pid, 'SIGKILL');
        const ev = await waitFor('stopped event', () => events.find((e) => e.event === 'stopped' && e.at >= t), { timeoutMs: 30_000, intervalMs: 1 });
        const seen = await waitFor('poll to notice', () => pollSeen, { timeoutMs: 30_000, intervalMs: 5 });
        byEvent.push(ev.at - t);
        byPoll.push(seen - t);
      }
    } finally {
      clearInterval(poll);
    }
    console.log(`\nexit detection after kill -9 of QEMU (${KILLS} kills; median, p90, max)`);
    console.log(`  lifecycle event (Libvirt.onLifecycle)             ${fmt(pct(byEvent, 50))}${fmt(pct(byEvent, 90))}${fmt(Math.max(...byEvent))}`);
    console.log(`  ${POLL_MS} ms poll (Libvirt.activeDomainNames)          ${fmt(pct(byPoll, 50))}${fmt(pct(byPoll, 90))}${fmt(Math.max(...byPoll))}`);
    console.log(`  (the poll adds ~${POLL_MS / 2} ms on average and up to ${POLL_MS} ms to libvirtd's own detection, which the event reports)`);
  } finally {
    await lv.destroyDomain(name).catch(() => undefined);
    await lv.undefineDomain(name).catch(() => undefined);
    await lv.close();
    await rpc.close();
  }
}

/** The binding's rows, measured by this file run again as a child (see the header); its crash is a row too. */
function bindingInChild(name: string): Promise<string[]> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    const child = fork(fileURLToPath(import.meta.url), [String(SECONDS), String(DEPTH)], {
      execArgv: process.execArgv,
      env: { ...process.env, [CHILD_ENV]: name },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (m: string) => lines.push(m));
    child.on('exit', (code, signal) => {
      if (code !== 0) lines.push(`binding: the process died (${signal ?? `exit ${code}`}) during the next variant`);
      resolve(lines);
    });
  });
}

/** The child's part: the binding's two variants, each row sent to the parent as it is done. */
async function bindingChild(name: string): Promise<void> {
  const send = (line: string) => new Promise<void>((r) => process.send!(line, () => r()));
  const b = await binding();
  if (typeof b === 'string') return send(`${'binding'.padEnd(52)}  ${b}`);
  const hv = new b.Hypervisor({ uri: URI });
  await hv.connectOpen();
  const d = await hv.domainLookupByName(name);
  const variants: Array<[string, () => Promise<unknown>]> = [
    ['binding: getInfo', () => d.getInfo()],
    ['binding: lookup + getInfo (old Libvirt.domainInfo)', async () => (await hv.domainLookupByName(name)).getInfo()],
  ];
  for (const [label, fn] of variants) await send(`${label.padEnd(52)}${(await rate(fn, 1, SECONDS)).padStart(14)}  ${await rate(fn, DEPTH, SECONDS)}`);
  await hv.connectClose().catch(() => undefined);
}

const child = process.env[CHILD_ENV];
if (child) await bindingChild(child);
else await main();
