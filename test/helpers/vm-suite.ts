// What the VM pod test files share: a registry with the test images pushed, vmlet with them
// pulled, teardown that leaves no VM behind whatever failed, and reading the guest's console
// from a container's CRI log.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, parseLogLines, ROOT, startVmlet, type VmletProcess } from './vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestImageName, type TestRegistry } from './registry.js';
import { waitFor } from './wait.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';

export interface VmSuite {
  reg: TestRegistry;
  v: VmletProcess;
  /** Pushed references, in the order asked for. */
  refs: string[];
  /** The config vmlet runs with (for a restart on the same state dir). */
  config: string;
}

/** The guest kit test/prepare.sh builds (VMLET_GUEST_KIT: another build), for vmlets that boot sandboxed pods. */
export const TEST_GUEST_KIT = process.env.VMLET_GUEST_KIT ?? join(ROOT, '.cache/guest-kit');

/**
 * Pushes each [image, repo:tag] to a fresh registry and starts vmlet with all of them pulled;
 * `allowAnnotations`: the gated annotations the suite's pods use (config allowedAnnotations.vmlet);
 * `guestKit`: sandboxed pods boot the test build of the guest kit (TEST_GUEST_KIT);
 * `config`: more lines of vmlet's config (YAML).
 */
export async function startVmSuite(images: Array<[TestImageName, string]>, opts: { allowAnnotations?: string[]; guestKit?: boolean; config?: string } = {}): Promise<VmSuite> {
  await ensureTestImages();
  const reg = await startRegistry();
  const refs: string[] = [];
  for (const [name, tag] of images) refs.push((await pushImage(reg, name, tag)).reference);
  const config = `${vmletConfig(reg)}${opts.guestKit ? `guestKitDir: ${TEST_GUEST_KIT}\n` : ''}${opts.config ?? ''}`;
  const v = await startVmlet({ config, ...(opts.allowAnnotations ? { allowAnnotations: opts.allowAnnotations } : {}) });
  for (const image of refs) await call(v.image, 'PullImage', { image: { image } });
  return { reg, v, refs, config };
}

/** vmlet's config for pulling from the test registry over plain HTTP. */
export function vmletConfig(reg: TestRegistry): string {
  return `registries:\n  insecure: ["${reg.host}"]\n`;
}

/**
 * A sandboxed pod's VM is ready (its 'pod VM ready' log line): it boots after RunPodSandbox
 * answered (vmlet.io/pod-kind: sandboxed) or at a pull (podVmAtPull). Returns that line.
 */
export function podVmReady(v: VmletProcess, podId: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  return waitFor(`the pod VM of ${podId.slice(0, 8)} ready`, () => parseLogLines(v.logLines).find((e) => e.msg === 'pod VM ready' && e.podSandboxId === podId), { timeoutMs, intervalMs: 50 });
}

/** Removes every pod vmlet still has, then stops vmlet and the registry. */
export async function stopVmSuite(v: VmletProcess | undefined, reg: TestRegistry | undefined): Promise<void> {
  if (v) {
    const pods = await call<object, { items: { id: string }[] }>(v.runtime, 'ListPodSandbox', {}).catch(() => ({ items: [] }));
    for (const p of pods.items) await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
    await v.stop();
  }
  await reg?.stop();
}

/** The guest's console lines so far, from a container's CRI log (a tty's trailing \r removed). */
export function consoleLines(logPath: string): string[] {
  if (!existsSync(logPath)) return [];
  return readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l).content.replace(/\r+$/, ''));
}

// Markers after which the guest will never print the one waited for (its DHCP client gave up).
const NEVER_AFTER: Array<[string, string]> = [
  ['VMLET-DHCP ', 'VMLET-NODHCP eth0'],
  ['VMLET-DHCP6 ', 'VMLET-NODHCP6 eth0'],
];

/** The console's last lines, for a failure message. */
export function consoleTail(logPath: string, n = 25): string {
  return consoleLines(logPath).slice(-n).join('\n');
}

/**
 * The first console line starting with `prefix`, once it appears. Fails at once when the guest
 * printed a marker that rules it out, and on any failure shows the console's last lines.
 */
export async function waitForConsoleLine(logPath: string, prefix: string, timeoutMs = 90_000, diagnose?: () => string): Promise<string> {
  const never = NEVER_AFTER.filter(([want]) => `${prefix} `.startsWith(want)).map(([, stop]) => stop);
  try {
    return await waitFor(
      `${prefix} in ${logPath}`,
      () => {
        const lines = consoleLines(logPath);
        const hit = lines.find((l) => l.startsWith(prefix));
        if (hit !== undefined) return hit;
        const stop = lines.find((l) => never.some((s) => l.startsWith(s)));
        if (stop !== undefined) throw new GaveUp(`the guest printed "${stop}"`);
        return undefined;
      },
      { timeoutMs, intervalMs: 100, stopOn: (e) => e instanceof GaveUp },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- the console's last lines (CRI log) ---\n${consoleTail(logPath)}${diagnose ? `\n${diagnose()}` : ''}`);
  }
}

class GaveUp extends Error {}

const tail = (path: string, n: number) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(-n - 1).join('\n') : '(none)');

/**
 * What tells a guest that missed its network from a console line lost on the way: the raw
 * console file QEMU writes, the pod's dnsmasq log and vmlet's log lines about the pod.
 */
export function podDiagnostics(v: VmletProcess, pod: VmPod): string {
  const dir = join(v.stateDir, 'pods', pod.id);
  return [
    `--- raw console (${join(dir, 'containers', pod.cid, 'console.log')}) ---`,
    tail(join(dir, 'containers', pod.cid, 'console.log'), 15),
    '--- dnsmasq.log ---',
    tail(join(dir, 'dnsmasq.log'), 10),
    '--- vmlet log lines of the pod ---',
    v.logLines.filter((l) => l.includes(pod.id)).slice(-8).join('\n'),
  ].join('\n');
}

export interface VmPod {
  id: string;
  cid: string;
  /** The container's CRI log (the guest's console). */
  log: string;
}

export interface VmPodOptions {
  name: string;
  namespace: string;
  image: string;
  /** Each pod's CRI logs go to <logDir>/<pod uid>/vm.log. */
  logDir: string;
  annotations?: Record<string, string>;
  /** The container's linux.resources. */
  resources?: object;
  /** More PodSandboxConfig fields (labels, dns_config, port_mappings, …). */
  sandbox?: object;
  /** More ContainerConfig fields (labels, …). */
  container?: object;
  /** StartContainer too (default true). */
  start?: boolean;
}

/** A VM pod: RunPodSandbox, CreateContainer with the image, and StartContainer unless start is false. */
export async function runVmPod(v: VmletProcess, o: VmPodOptions): Promise<VmPod> {
  const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
  const uid = randomBytes(8).toString('hex');
  const config = {
    metadata: { name: o.name, namespace: o.namespace, uid, attempt: 0 },
    hostname: o.name,
    log_directory: join(o.logDir, uid),
    annotations: o.annotations ?? {},
    ...o.sandbox,
  };
  const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  const { container_id: cid } = await rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: id,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: o.image }, log_path: 'vm.log', ...(o.resources ? { linux: { resources: o.resources } } : {}), ...o.container },
    sandbox_config: config,
  });
  if (o.start ?? true) await rt('StartContainer', { container_id: cid });
  return { id, cid, log: join(o.logDir, uid, 'vm.log') };
}

/** qemu-ga starts in the background at boot: its first answer may trail the console markers. */
export function waitForAgent(v: VmletProcess, cid: string, timeoutMs = 60_000): Promise<boolean> {
  const exec = () => call<object, { exit_code: number }>(v.runtime, 'ExecSync', { container_id: cid, cmd: ['true'], timeout: 10 });
  return waitFor('qemu-ga to answer ExecSync', () => exec().then((r) => r.exit_code === 0, () => false), { timeoutMs, intervalMs: 500 });
}
