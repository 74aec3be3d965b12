// What vmlet remembers about sandboxes and containers, and where: one JSON file per record under
// <stateDir>/pods/<sandbox-id>/, written atomically. The CRI configs are kept as the kubelet sent
// them (the CRI data model in vmlet's own types, configs.ts), so status answers echo them back
// unchanged.
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
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
  /** The sandboxed pod's VM, once booted. */
  podVm?: PodVmRecord;
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
  ) {}

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

  async saveContainer(c: ContainerRecord): Promise<void> {
    await mkdir(this.containerDir(c.sandboxId, c.id), { recursive: true, mode: 0o700 });
    await atomicWrite(join(this.containerDir(c.sandboxId, c.id), 'container.json'), JSON.stringify(c) + '\n', 0o600);
  }

  async removeContainer(c: ContainerRecord): Promise<void> {
    await rm(this.containerDir(c.sandboxId, c.id), { recursive: true, force: true });
  }

  async removeSandbox(id: string): Promise<void> {
    await rm(this.sandboxDir(id), { recursive: true, force: true });
  }

  /** Everything on disk. A record that cannot be read is logged and skipped, never fatal. */
  async loadAll(): Promise<{ sandboxes: SandboxRecord[]; containers: ContainerRecord[] }> {
    const sandboxes: SandboxRecord[] = [];
    const containers: ContainerRecord[] = [];
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    for (const sid of await readdir(this.root)) {
      if (!/^[a-f0-9]{64}$/.test(sid)) continue;
      const s = await this.read<SandboxRecord>(join(this.sandboxDir(sid), 'sandbox.json'));
      if (!s) continue;
      sandboxes.push(s);
      let cids: string[] = [];
      try {
        cids = await readdir(join(this.sandboxDir(sid), 'containers'));
      } catch {
        cids = [];
      }
      for (const cid of cids) {
        const c = await this.read<ContainerRecord>(join(this.containerDir(sid, cid), 'container.json'));
        if (c) containers.push(c);
      }
    }
    return { sandboxes, containers };
  }

  private async read<T extends { id: string }>(file: string): Promise<T | undefined> {
    try {
      const rec = JSON.parse(await readFile(file, 'utf8')) as T;
      if (typeof rec.id !== 'string') throw new Error('no id');
      return rec;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ file, err: (err as Error).message }, 'skipping unreadable state record');
      return undefined;
    }
  }
}
