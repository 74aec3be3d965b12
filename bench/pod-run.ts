// A CRI pod of the benchmarks, timed call by call: RunPodSandbox → CreateContainer →
// StartContainer → a marker in the container's CRI log (sandboxed-pod.ts, first-container.ts).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseCriLogLine } from '../src/stream/cri-log.js';
import { call } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';

/** The first line the benchmarks' containers print: `sh -c 'echo first-line; sleep 3600'`. */
export const FIRST_LINE = 'first-line';
export const FIRST_LINE_COMMAND = ['sh', '-c', `echo ${FIRST_LINE}; sleep 3600`];

export interface PodRun {
  pod: string;
  container: string;
  log: string;
  /** ms per call, the wait for the marker, and `total`. */
  phases: Record<string, number>;
}

export interface PodToRun {
  name: string;
  handler: string;
  image: string;
  /** Where the pod's log directory is made. */
  logRoot: string;
  annotations?: Record<string, string>;
  command?: string[];
  /** FIRST_LINE: a whole CRI log line; anything else: a substring of the log (a guest's console). */
  marker: string;
  linux?: boolean;
  timeoutMs?: number;
  /** Called between RunPodSandbox and CreateContainer with the pod's config, as a kubelet pulls the image there (lapped as PullImage). */
  pull?: (sandboxConfig: object) => Promise<unknown>;
}

/** Whether the CRI log at `path` has a line whose content is `content`. */
export function criLogHas(path: string, content: string): boolean {
  if (!existsSync(path)) return false;
  return readFileSync(path, 'utf8').split('\n').some((l) => l && parseCriLogLine(l).content.replace(/\r+$/, '') === content);
}

export async function startPod(runtime: unknown, o: PodToRun): Promise<PodRun> {
  const rt = <T>(m: string, req: object) => call<object, T>(runtime, m, req);
  const uid = randomBytes(8).toString('hex');
  const logDir = join(o.logRoot, uid);
  mkdirSync(logDir, { recursive: true });
  const config = {
    metadata: { name: o.name, namespace: 'bench', uid, attempt: 0 },
    hostname: o.name,
    log_directory: logDir,
    annotations: o.annotations ?? {},
    ...(o.linux ? { linux: {} } : {}),
  };
  const phases: Record<string, number> = {};
  const t0 = performance.now();
  let t = t0;
  const lap = (k: string) => {
    const now = performance.now();
    phases[k] = now - t;
    t = now;
  };
  const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: o.handler });
  lap('RunPodSandbox');
  if (o.pull) {
    await o.pull(config);
    lap('PullImage');
  }
  const { container_id: container } = await rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod,
    config: { metadata: { name: 'c', attempt: 0 }, image: { image: o.image }, log_path: 'c_0.log', ...(o.command ? { command: o.command } : {}), ...(o.linux ? { linux: {} } : {}) },
    sandbox_config: config,
  });
  lap('CreateContainer');
  await rt('StartContainer', { container_id: container });
  lap('StartContainer');
  const log = join(logDir, 'c_0.log');
  const seen = o.marker === FIRST_LINE ? () => criLogHas(log, o.marker) : () => existsSync(log) && readFileSync(log, 'utf8').includes(o.marker);
  await waitFor(`${o.marker} in ${log}`, seen, { timeoutMs: o.timeoutMs ?? 180_000, intervalMs: 5 });
  lap(o.marker === FIRST_LINE ? 'first log line' : `${o.marker} in log`);
  phases.total = performance.now() - t0;
  return { pod, container, log, phases };
}

export async function removePod(runtime: unknown, pod: string): Promise<void> {
  await call(runtime, 'StopPodSandbox', { pod_sandbox_id: pod });
  await call(runtime, 'RemovePodSandbox', { pod_sandbox_id: pod });
}
