// Start, stop and remove of a sandboxed pod's container: the agent runs, signals and forgets the
// process tree in the guest; exits come back as agent events (podvm-boot.ts). The caller holds
// the container's lock.
import { join } from 'node:path';
import { failedPrecondition, VmletError } from '../errors.js';
import { unbindContainerMounts } from '../guest/shared-mounts.js';
import type { ExitEvent } from '../guest/agent-client.js';
import type { PodManager } from './manager.js';
import { exitFromAgent, finishSandboxed, podShareDir, podVmOf } from './podvm-boot.js';
import type { ContainerRecord } from './records.js';

/** After SIGKILL, how long to wait for the agent to report the exit before recording it anyway. */
const KILL_WAIT_MS = 10_000;

export async function startSandboxed(m: PodManager, c: ContainerRecord): Promise<void> {
  if (c.state !== 'created') throw failedPrecondition(`container ${c.id} is ${c.state}; only a created container can be started`);
  const s = m.mustSandbox(c.sandboxId);
  const p = podVmOf(m, s);
  if (!p) throw failedPrecondition(`pod ${s.id} is not ready (its VM is not running); create a new pod`);
  const agent = await p.agent();
  const stream = ++s.podVm!.lastStream;
  await m.store.saveSandbox(s);
  const io = p.ioOf(c.id, c.logPath);
  await io.log.open();
  const detach = agent.attachSink(stream, io.sink());
  // A short-lived process may end before its start is answered: its exit is kept for below.
  let early: ExitEvent | undefined;
  void p.waitExit(stream, 0).then((e) => (early = e));
  let started: { pid: number; startedAt: bigint };
  try {
    started = await agent.startContainer(c.id, stream);
  } catch (err) {
    detach();
    throw err;
  }
  Object.assign(c, { state: 'running', stream, startedAt: started.startedAt.toString(), finishedAt: '0', exitCode: 0, reason: '', message: '' });
  await m.store.saveContainer(c);
  m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, pid: started.pid, stream }, 'container started in the pod VM');
  if (early) await finishSandboxed(m, c, exitFromAgent(early));
}

/** The stop signal (the image's, SIGTERM by default), `timeoutSec` to exit, then SIGKILL. */
export async function stopSandboxed(m: PodManager, c: ContainerRecord, timeoutSec: number): Promise<void> {
  if (c.state !== 'running') return;
  const s = m.sandboxes.get(c.sandboxId);
  const p = s && podVmOf(m, s);
  if (!p || c.stream === undefined) {
    await finishSandboxed(m, c, { exitCode: 137, reason: 'Error', message: 'the pod VM is not running' });
    return;
  }
  const exited = p.waitExit(c.stream, 0);
  const within = (ms: number) => Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
  const send = async (sig: number) => {
    try {
      await (await p.agent()).signal(c.id, sig);
    } catch (err) {
      // Already ended (its exit event is on its way): nothing to signal.
      if (!(err instanceof VmletError && err.kind === 'failed-precondition')) throw err;
    }
  };
  try {
    if (timeoutSec > 0) {
      await send(c.stopSignal ?? 15);
      if (await within(timeoutSec * 1000)) return;
    }
    await send(9);
    if (await within(KILL_WAIT_MS)) return;
  } catch (err) {
    m.log.warn({ containerId: c.id, err: (err as Error).message }, 'cannot signal the container through the guest agent');
  }
  await finishSandboxed(m, c, { exitCode: 137, reason: 'Error', message: 'killed; the guest agent did not report its exit' });
}

export async function removeSandboxed(m: PodManager, c: ContainerRecord): Promise<void> {
  const s = m.sandboxes.get(c.sandboxId);
  const p = s && podVmOf(m, s);
  if (p) {
    try {
      await (await p.agent()).removeContainer(c.id);
    } catch (err) {
      m.log.warn({ containerId: c.id, err: (err as Error).message }, 'the guest agent could not remove the container; the pod VM keeps its rootfs until the pod goes');
    }
    await p.io.get(c.id)?.log.close();
    p.io.delete(c.id);
  }
  await unbindContainerMounts(s ? podShareDir(m, s) : join(m.store.sandboxDir(c.sandboxId), 'shared'), c.id);
  await m.store.removeContainer(c);
  m.containers.delete(c.id);
  m.log.info({ containerId: c.id, podSandboxId: c.sandboxId }, 'container removed from the pod VM');
}
