// The vmlet a long benchmark watches (load.ts): started with its /metrics endpoint on and a
// preload that runs a full GC on demand, and its figures read from /proc and /metrics.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startVmlet, tempDir, type StartOptions, type VmletProcess } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';
import { inotifyWatches, openFds, procStatus } from './kubelet-poll.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * vmlet's own figures from its /metrics endpoint (name → value, unlabelled series only), on a
 * connection of its own that is closed after: a kept-alive one would count among vmlet's handles.
 */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(body)).on('error', reject);
    }).on('error', reject);
  });
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const hit = /^([a-z0-9_]+) (\S+)$/.exec(line);
    if (hit) m.set(hit[1]!, Number(hit[2]));
  }
  return m;
}

/**
 * Preloaded into vmlet (NODE_OPTIONS): on SIGUSR2 a full garbage collection, then its memory and
 * the heap's share of compiled code and bytecode in a file, so that a leak check compares memory
 * still held rather than garbage not yet collected. vmlet itself neither uses SIGUSR2 nor
 * exposes gc().
 */
const GC_PRELOAD = `'use strict';
const fs = require('node:fs');
process.on('SIGUSR2', () => {
  globalThis.gc();
  const file = process.env.VMLET_GC_REPORT;
  const code = require('node:v8').getHeapCodeStatistics();
  fs.writeFileSync(file + '.tmp', JSON.stringify({ ...process.memoryUsage(), code: code.code_and_metadata_size + code.bytecode_and_metadata_size }));
  fs.renameSync(file + '.tmp', file);
});
`;

export interface Held {
  heapUsed: number;
  /** Of heapUsed: compiled code and bytecode with their metadata (the JIT's, growing for minutes). */
  code: number;
  /** Buffers and other memory outside the heap that JS objects hold. */
  external: number;
  rss: number;
}

/** vmlet's heap and RSS right after a full collection (bytes). */
export async function collected(v: VmletProcess, report: string): Promise<Held> {
  rmSync(report, { force: true });
  v.proc.kill('SIGUSR2');
  return waitFor('vmlet\'s memory after a full GC', () => existsSync(report) && (JSON.parse(readFileSync(report, 'utf8')) as Held), { timeoutMs: 30_000, intervalMs: 100 });
}

export interface Figures {
  rssKiB: number;
  fds: number;
  /** Watches on its inotify instance (the console tailers' fs.watch). */
  watches: number;
  threads: number;
  heapUsedBytes: number;
  handles: number;
  lagP99Ms: number;
}

export async function figures(v: VmletProcess, port: number): Promise<Figures> {
  const pid = v.proc.pid!;
  const m = await scrape(port);
  return {
    rssKiB: procStatus(pid, 'VmRSS'),
    fds: openFds(pid),
    watches: inotifyWatches(pid),
    threads: procStatus(pid, 'Threads'),
    heapUsedBytes: m.get('nodejs_heap_size_used_bytes') ?? NaN,
    handles: m.get('nodejs_active_resources_total') ?? NaN,
    lagP99Ms: (m.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000,
  };
}

export interface WatchedVmlet {
  v: VmletProcess;
  /** Its /metrics endpoint's port on 127.0.0.1. */
  port: number;
  /** Where the preload writes its memory after a GC (collected()). */
  gcReport: string;
}

/** startVmlet with metricsAddress set (after `o.config`) and the GC preload. */
export async function startWatchedVmlet(o: StartOptions): Promise<WatchedVmlet> {
  const port = await freePort();
  const dir = tempDir('vmlet-load-gc-');
  const gcReport = join(dir, 'memory.json');
  writeFileSync(join(dir, 'gc.cjs'), GC_PRELOAD);
  const saved = { NODE_OPTIONS: process.env.NODE_OPTIONS, VMLET_GC_REPORT: process.env.VMLET_GC_REPORT };
  // startVmlet's child inherits the environment: set for its spawn only.
  Object.assign(process.env, { NODE_OPTIONS: `--expose-gc --require ${join(dir, 'gc.cjs')}`, VMLET_GC_REPORT: gcReport });
  try {
    const v = await startVmlet({ ...o, config: `${o.config ?? ''}metricsAddress: "127.0.0.1:${port}"\n` });
    return { v, port, gcReport };
  } finally {
    for (const [k, val] of Object.entries(saved)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  }
}
