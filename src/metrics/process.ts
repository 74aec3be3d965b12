// The Node process's own figures under the names prom-client's default collectors use
// (process_*, nodejs_*), so dashboards made for any Node service read vmlet's too.
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from './registry.js';

/** Open file descriptors (Linux /proc), or undefined where it cannot be read. */
function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the one readdir itself holds
  } catch {
    return undefined;
  }
}

/** The soft limit on open files from /proc/self/limits. */
function maxFds(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const n = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Registers the process collectors on `reg` (once per registry). */
export function collectDefaultMetrics(reg: Registry): void {
  const registers = [reg];
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  // CPU time is a counter, but its value is read from the process, not incremented: a gauge-like
  // collect hook on a counter keeps the TYPE line right.
  let lastCpu = { user: 0, system: 0 };
  const cpuUser = new Counter({ name: 'process_cpu_user_seconds_total', help: 'Total user CPU time spent in seconds.', registers });
  const cpuSystem = new Counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers });
  const cpuTotal = new Counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers });
  const readCpu = (): void => {
    const u = process.cpuUsage();
    const du = Math.max(0, u.user / 1e6 - lastCpu.user);
    const ds = Math.max(0, u.system / 1e6 - lastCpu.system);
    lastCpu = { user: u.user / 1e6, system: u.system / 1e6 };
    cpuUser.inc(du);
    cpuSystem.inc(ds);
    cpuTotal.inc(du + ds);
  };
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    registers,
    collect() {
      readCpu(); // hooks all run before rendering: the CPU counters are brought up to date here
      this.set(startSeconds);
    },
  });
  new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers,
    collect() {
      const n = openFds();
      if (n !== undefined) this.set(n);
    },
  });
  new Gauge({
    name: 'process_max_fds',
    help: 'Maximum number of open file descriptors.',
    registers,
    collect() {
      const n = maxFds();
      if (n !== undefined) this.set(n);
    },
  });
  new Gauge({ name: 'nodejs_heap_size_total_bytes', help: 'Process heap size from Node.js in bytes.', registers, collect() { this.set(process.memoryUsage().heapTotal); } });
  new Gauge({ name: 'nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.', registers, collect() { this.set(process.memoryUsage().heapUsed); } });
  new Gauge({ name: 'nodejs_external_memory_bytes', help: 'Node.js external memory size in bytes.', registers, collect() { this.set(process.memoryUsage().external); } });
  new Gauge({
    name: 'nodejs_eventloop_lag_p99_seconds',
    help: 'The 99th percentile of the event loop delay since the last scrape, in seconds.',
    registers,
    collect() {
      this.set(loopDelay.percentile(99) / 1e9);
      loopDelay.reset();
    },
  });
  new Gauge({
    name: 'nodejs_active_resources_total',
    help: 'Number of active resources keeping the event loop alive (libuv handles and requests).',
    registers,
    collect() {
      this.set(process.getActiveResourcesInfo().length);
    },
  });
  new Gauge({
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    labelNames: ['version'],
    registers,
    collect() {
      this.set({ version: process.version }, 1);
    },
  });
}
