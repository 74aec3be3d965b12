// A sandboxed pod's VM as vmlet sees it while it runs: the agent connection (made on first use,
// made again after it drops: vmlet restarted, or the agent's port was reset) and the routing of
// the agent's exit events to whoever waits for them. Records are pod/'s: the owner is told about
// exits (onExit) and about each (re)connection with the agent's view of the containers (onHello).
import type { Logger } from '../log.js';
import { unavailable } from '../errors.js';
import { AgentClient, type ExitEvent, type HelloResult } from '../guest/agent-client.js';
import type { PodVmRecord } from './records.js';
import { ContainerIo } from './container-io.js';
import { guestAgentFailed } from '../metrics/vmlet.js';

export interface PodVmHooks {
  log: Logger;
  onExit(e: ExitEvent): void;
  onHello(h: HelloResult, agent: AgentClient): Promise<void>;
}

/** Exec streams are numbered from 2^31 (docs/guest-agent.md), containers' main processes below. */
export const EXEC_STREAM_BASE = 2 ** 31;

export class PodVm {
  private client: AgentClient | undefined;
  private connecting: Promise<AgentClient> | undefined;
  private readonly waiters = new Map<number, Array<(e: ExitEvent | undefined) => void>>();
  /** Output routing of each container that has run here (by container id). */
  readonly io = new Map<string, ContainerIo>();
  private nextExec = 0;
  private closed = false;

  constructor(
    readonly sandboxId: string,
    readonly rec: PodVmRecord,
    private readonly hooks: PodVmHooks,
  ) {}

  /** The container's output routing (made on first use; its log path is fixed at creation). */
  ioOf(containerId: string, logPath: string): ContainerIo {
    let io = this.io.get(containerId);
    if (!io) this.io.set(containerId, (io = new ContainerIo(logPath)));
    return io;
  }

  /** The connected agent; connects (and says hello) when there is no connection. */
  agent(timeoutMs = 10_000): Promise<AgentClient> {
    if (this.closed) return Promise.reject(unavailable(`pod ${this.sandboxId}: its VM is stopped`));
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connect(timeoutMs).finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(timeoutMs: number): Promise<AgentClient> {
    const log = this.hooks.log.child({ podSandboxId: this.sandboxId });
    const client = await AgentClient.connect(this.rec.agentSocket, { log, timeoutMs });
    client.on('exit', (e: ExitEvent) => this.exited(e));
    client.on('close', (err?: Error) => {
      if (this.client === client) this.client = undefined;
      if (!this.closed) log.warn({ err: err?.message }, 'guest agent connection closed; it is made again on next use');
      if (!this.closed) guestAgentFailed('disconnect');
    });
    const hello = await client.hello();
    await this.hooks.onHello(hello, client);
    this.client = client;
    log.info({ agent: hello.agent, containers: hello.containers.length }, 'guest agent connected');
    return client;
  }

  /** A stream id for an exec session (unique while this vmlet runs; container streams are persisted). */
  execStream(): number {
    this.nextExec = (this.nextExec + 1) % EXEC_STREAM_BASE;
    return EXEC_STREAM_BASE + this.nextExec;
  }

  /** The exit event of `stream`, or undefined after timeoutMs (0: no limit) or when aborted. */
  waitExit(stream: number, timeoutMs: number, signal?: AbortSignal): Promise<ExitEvent | undefined> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (e: ExitEvent | undefined) => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const list = this.waiters.get(stream)?.filter((w) => w !== done) ?? [];
        if (list.length) this.waiters.set(stream, list);
        else this.waiters.delete(stream);
        resolve(e);
      };
      const onAbort = () => done(undefined);
      if (timeoutMs > 0) timer = setTimeout(() => done(undefined), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(stream, [...(this.waiters.get(stream) ?? []), done]);
    });
  }

  private exited(e: ExitEvent): void {
    for (const w of this.waiters.get(e.stream) ?? []) w(e);
    this.hooks.onExit(e);
  }

  /** The VM is gone: waiters get nothing, the connection is closed. */
  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = undefined;
    for (const list of [...this.waiters.values()]) for (const w of list) w(undefined);
    this.waiters.clear();
  }
}
