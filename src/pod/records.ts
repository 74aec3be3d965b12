// What vmlet remembers about sandboxes and containers, and where: one JSON file per record under
// <stateDir>/pods/<sandbox-id>/, written atomically. The CRI configs are kept as the kubelet sent
// them (the CRI data model in vmlet's own types, configs.ts), so status answers echo them back
// unchanged.
import { removeUnmounted } from '../guest/shared-mounts.js';
import { ROOT, qemuDirs, type QemuIdentity } from '../vm/qemu-user.js';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { atomicWrite } from '../util/atomic-write.js';
import { failedPrecondition } from '../errors.js';
import type { ContainerConfig, LinuxContainerResources, PodSandboxConfig } from './configs.js';
import type { MachineSettings } from '../vm/annotations.js';

export type SandboxState = 'ready' | 'notready';
export type ContainerState = 'created' | 'running' | 'exited' | 'unknown';

export interface SandboxRecord {
  id: string;
  config: PodSandboxConfig;
  runtimeHandler: string;
  state: SandboxState;
  /** Nanoseconds since the epoch, as a decimal string (int64 on the wire). */
  createdAt: string;
  /** Named network namespace (under /run/netns) and its path. */
  netns?: { name: string; path: string };
  /**
   * What the pod is, fixed by its first container (or the vmlet.io/pod-kind annotation): 'vm'
   * (VM-image pod: each container is a VM) or 'sandboxed' (one micro-VM, containers inside).
   * Absent until then, and in records written before sandboxed pods.
   */
  kind?: 'vm' | 'sandboxed';
  /** 'sandboxed' is a guess: its VM was booted at an image pull (podvm-ahead.ts), no container has run in it yet. */
  guessed?: true;
  /** The sandboxed pod's VM, once booted. */
  podVm?: PodVmRecord;
  /**
   * Set while RunPodSandbox is under way (netns, CNI ADD, DHCP server, a sandboxed pod's VM). A
   * record still carrying it at start-up is a RunPodSandbox that never answered: manager.ts
   * releases its network and reports the pod NOTREADY.
   */
  creating?: true;
}

export interface PodVmRecord {
  domainName: string;
  agentSocket: string;
  scratch: string;
  consoleLog: string;
  /** The guest kit version it booted. */
  kit: string;
  /** Last process stream id handed out (docs/guest-agent.md: unique for the VM's life). */
  lastStream: number;
  /** Guest RAM now (the balloon's target) and the most it may grow to (absent in older records: no growth). */
  memoryMiB?: number;
  maxMemoryMiB?: number;
  /**
   * A VM taken from the warm pool (podvm-pool.ts) keeps its files in its own dir, removed with the
   * pod: this dir, and its share in it. Absent: the sandbox dir and its `shared`.
   */
  dir?: string;
  shared?: string;
}

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** 'sandboxed': a process tree in the pod's VM (domainName is the pod VM's); absent: the container is a VM. */
  kind?: 'sandboxed';
  /** Sandboxed: the agent stream of the current (or last) run of its main process. */
  stream?: number;
  /** Sandboxed: the signal StopContainer sends first (the image's StopSignal; SIGTERM by default). */
  stopSignal?: number;
  config: ContainerConfig;
  /** Image as asked for, and the id it resolved to. */
  image: string;
  imageId: string;
  domainName: string;
  /** Absolute path of the CRI log file (sandbox log_directory + config.log_path). */
  logPath: string;
  /** virtlogd's file for the serial console, which vmlet tails into logPath. */
  consoleLog: string;
  /** Bytes of consoleLog already copied to logPath. */
  consoleOffset: number;
  /** Inode of the consoleLog file consoleOffset refers to (virtlogd rotates the file). */
  consoleIno?: number;
  /** Files vmlet made for this container (overlay, NVRAM), removed with it. */
  files: string[];
  state: ContainerState;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  /** Set while vmlet itself is stopping the VM, so the exit is attributed correctly. */
  stopping?: 'shutdown' | 'destroy';
  /** Where each VM setting came from (annotation, resources, default): for verbose status. */
  settingSources?: Record<string, string>;
  /** The VM's settings as CreateContainer parsed them (absent in records written before vmlet kept them). */
  settings?: MachineSettings;
  /** Resources as last set by UpdateContainerResources (config.linux.resources until then). */
  resources?: LinuxContainerResources;
}

export const nowNs = (): string => (BigInt(Date.now()) * 1_000_000n).toString();

/** What the kubelet's config and CreateContainer decide about a container; the rest of its record starts as 'created'. */
export type NewContainer = Omit<ContainerRecord, 'consoleOffset' | 'state' | 'createdAt' | 'startedAt' | 'finishedAt' | 'exitCode' | 'reason' | 'message'>;

/** The record of a container CreateContainer just made: created now, never started. */
export function createdContainer(c: NewContainer): ContainerRecord {
  return { ...c, consoleOffset: 0, state: 'created', createdAt: nowNs(), startedAt: '0', finishedAt: '0', exitCode: 0, reason: '', message: '' };
}

/** The wall clock in ms since the epoch, with sub-ms precision. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

/** FailedPrecondition unless the container's VM runs: `container <id> is <state>; <needs>`. */
export function requireRunning(c: ContainerRecord, needs: string): void {
  if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}; ${needs}`);
}

export class PodStateStore {
  constructor(
    readonly root: string,
    private readonly log: Logger,
    /** QEMU's user: a VM's files are in its pod's and container's dirs (vm/qemu-user.ts qemuDirs). */
    private readonly qemu: QemuIdentity = ROOT,
  ) {}

  /**
   * A VM-image container's dir (its disk, seed ISO, nvram), made if missing, with the dirs on its
   * way searchable by QEMU's user: set each time, for a pod made before vmlet ran QEMU unprivileged.
   */
  async makeContainerDir(sandboxId: string, id: string): Promise<string> {
    const dir = this.containerDir(sandboxId, id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await qemuDirs([this.sandboxDir(sandboxId), join(this.sandboxDir(sandboxId), 'containers'), dir], this.qemu);
    return dir;
  }

  sandboxDir(id: string): string {
    return join(this.root, id);
  }

  containerDir(sandboxId: string, id: string): string {
    return join(this.root, sandboxId, 'containers', id);
  }

  async saveSandbox(s: SandboxRecord): Promise<void> {
    await mkdir(this.sandboxDir(s.id), { recursive: true, mode: 0o700 });
    await atomicWrite(join(this.sandboxDir(s.id), 'sandbox.json'), JSON.stringify(s) + '\n', 0o600);
  }

  /** Told of every container record saved or removed (container-events.ts). */
  onContainerSaved?: (c: ContainerRecord) => void;
  onContainerRemoved?: (c: ContainerRecord) => void;

  async saveContainer(c: ContainerRecord): Promise<void> {
    await mkdir(this.containerDir(c.sandboxId, c.id), { recursive: true, mode: 0o700 });
    await atomicWrite(join(this.containerDir(c.sandboxId, c.id), 'container.json'), JSON.stringify(c) + '\n', 0o600);
    this.onContainerSaved?.(c);
  }

  async removeContainer(c: ContainerRecord): Promise<void> {
    await removeUnmounted(this.containerDir(c.sandboxId, c.id)); // its read-only shares' binds
    this.onContainerRemoved?.(c);
  }

  async removeSandbox(id: string): Promise<void> {
    await removeUnmounted(this.sandboxDir(id));
  }

  /**
   * Everything on disk. A record that cannot be read or does not validate is logged with its path
   * and set aside, never fatal: its whole pod is (a pod served without one of its containers
   * would have that container's VM orphaned by RemovePodSandbox). Nothing of a set-aside pod is
   * deleted or stopped: docs/design.md, "Pod records".
   */
  async loadAll(): Promise<{ sandboxes: SandboxRecord[]; containers: ContainerRecord[]; setAside: SetAsideRecord[] }> {
    const sandboxes: SandboxRecord[] = [];
    const containers: ContainerRecord[] = [];
    const setAside: SetAsideRecord[] = [];
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    for (const sid of await readdir(this.root)) {
      if (!/^[a-f0-9]{64}$/.test(sid)) continue;
      const sfile = join(this.sandboxDir(sid), 'sandbox.json');
      const s = await this.read(sfile, (v) => sandboxProblem(v, sid));
      if (s === undefined) continue; // no record: not a pod (a RunPodSandbox that made only its dir)
      const bad: SetAsideRecord['records'] = 'problem' in s ? [{ file: sfile, problem: s.problem }] : [];
      const mine: ContainerRecord[] = [];
      let cids: string[] = [];
      try {
        cids = await readdir(join(this.sandboxDir(sid), 'containers'));
      } catch {
        cids = [];
      }
      for (const cid of cids) {
        const cfile = join(this.containerDir(sid, cid), 'container.json');
        const c = await this.read(cfile, (v) => containerProblem(v, sid, cid));
        if (c === undefined) continue;
        if ('problem' in c) bad.push({ file: cfile, problem: c.problem });
        else mine.push(c.record as ContainerRecord);
      }
      if (bad.length) {
        for (const b of bad) this.log.error({ podSandboxId: sid, file: b.file, err: b.problem }, 'pod record unreadable: pod set aside (not served; its VMs, netns and DHCP server are kept)');
        setAside.push({ sandboxId: sid, dir: this.sandboxDir(sid), records: bad, containerIds: cids });
        continue;
      }
      sandboxes.push((s as { record: unknown }).record as SandboxRecord);
      containers.push(...mine);
    }
    return { sandboxes, containers, setAside };
  }

  /** The parsed record, or why it is unusable; undefined when the file does not exist. */
  private async read(file: string, check: (v: unknown) => string | undefined): Promise<{ record: unknown } | { problem: string } | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return { problem: (err as Error).message };
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      return { problem: `not JSON (${text.length} bytes): ${(err as Error).message}` };
    }
    const problem = check(v);
    return problem ? { problem } : { record: v };
  }
}

/** A pod vmlet found on disk but does not serve, because one of its records is unusable. */
export interface SetAsideRecord {
  sandboxId: string;
  dir: string;
  records: Array<{ file: string; problem: string }>;
  /** Its container dirs (their VMs may still run). */
  containerIds: string[];
}

// Validation of records read back from disk: what the CRI answers and the verbs dereference must
// be there with the right type, so one bad file cannot make every List call fail.
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const NS_RE = /^[0-9]+$/;

function fieldProblems(o: Obj, fields: Record<string, 'string' | 'number' | 'ns' | 'object' | 'string[]' | 'string?' | 'object?'>): string[] {
  const out: string[] = [];
  for (const [k, t] of Object.entries(fields)) {
    const v = o[k];
    const ok =
      t === 'string' ? typeof v === 'string'
      : t === 'string?' ? v === undefined || typeof v === 'string'
      : t === 'number' ? typeof v === 'number' && Number.isFinite(v)
      : t === 'ns' ? typeof v === 'string' && NS_RE.test(v)
      : t === 'object' ? isObj(v)
      : t === 'object?' ? v === undefined || isObj(v)
      : Array.isArray(v) && v.every((x) => typeof x === 'string');
    if (!ok) out.push(`${k} is ${v === undefined ? 'missing' : JSON.stringify(v)?.slice(0, 40)}, not ${t.replace('ns', 'nanoseconds (decimal string)').replace('?', ' (or absent)')}`);
  }
  return out;
}

function labelsProblem(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (!isObj(v) || Object.values(v).some((x) => typeof x !== 'string')) return `${what} is not a map of strings`;
  return undefined;
}

/** Why a sandbox.json in dir `sid` cannot be served, or undefined. */
export function sandboxProblem(v: unknown, sid: string): string | undefined {
  if (!isObj(v)) return 'not a JSON object';
  const p = fieldProblems(v, { id: 'string', config: 'object', runtimeHandler: 'string', state: 'string', createdAt: 'ns', netns: 'object?', podVm: 'object?' });
  if (p.length) return p.join('; ');
  if (v.id !== sid) return `id ${JSON.stringify(v.id)} is not its directory's (${sid})`;
  if (v.state !== 'ready' && v.state !== 'notready') return `state ${JSON.stringify(v.state)} is not ready or notready`;
  const cfg = v.config as Obj;
  if (!isObj(cfg.metadata)) return 'config.metadata is missing';
  const mp = fieldProblems(cfg.metadata, { name: 'string', namespace: 'string', uid: 'string', attempt: 'number' });
  if (mp.length) return mp.map((x) => `config.metadata.${x}`).join('; ');
  const lp = labelsProblem(cfg.labels, 'config.labels') ?? labelsProblem(cfg.annotations, 'config.annotations');
  if (lp) return lp;
  if (v.netns !== undefined) {
    const np = fieldProblems(v.netns as Obj, { name: 'string', path: 'string' });
    if (np.length) return np.map((x) => `netns.${x}`).join('; ');
  }
  if (v.podVm !== undefined) {
    const vp = fieldProblems(v.podVm as Obj, { domainName: 'string', agentSocket: 'string', scratch: 'string', consoleLog: 'string', kit: 'string', lastStream: 'number' });
    if (vp.length) return vp.map((x) => `podVm.${x}`).join('; ');
  }
  return undefined;
}

const CONTAINER_STATES = new Set<string>(['created', 'running', 'exited', 'unknown']);

/** Why a container.json in `<sid>/containers/<cid>` cannot be served, or undefined. */
export function containerProblem(v: unknown, sid: string, cid: string): string | undefined {
  if (!isObj(v)) return 'not a JSON object';
  const p = fieldProblems(v, {
    id: 'string',
    sandboxId: 'string',
    config: 'object',
    image: 'string',
    imageId: 'string',
    domainName: 'string',
    logPath: 'string',
    consoleLog: 'string',
    consoleOffset: 'number',
    files: 'string[]',
    state: 'string',
    createdAt: 'ns',
    startedAt: 'ns',
    finishedAt: 'ns',
    exitCode: 'number',
    reason: 'string',
    message: 'string',
    stopping: 'string?',
    kind: 'string?',
  });
  if (p.length) return p.join('; ');
  if (v.id !== cid) return `id ${JSON.stringify(v.id)} is not its directory's (${cid})`;
  if (v.sandboxId !== sid) return `sandboxId ${JSON.stringify(v.sandboxId)} is not its pod's (${sid})`;
  if (!CONTAINER_STATES.has(v.state as string)) return `state ${JSON.stringify(v.state)} is not one of ${[...CONTAINER_STATES].join(', ')}`;
  const cfg = v.config as Obj;
  if (!isObj(cfg.metadata) || typeof cfg.metadata.name !== 'string') return 'config.metadata.name is missing';
  return labelsProblem(cfg.labels, 'config.labels') ?? labelsProblem(cfg.annotations, 'config.annotations');
}
