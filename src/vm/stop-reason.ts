// Why a domain stopped, in libvirt's words (shutdown, destroyed, crashed, failed, …): from the
// lifecycle event when vmlet heard it, otherwise from the end of the domain's QEMU log, where
// libvirtd writes "shutting down, reason=<reason>" as each run ends (after a vmlet restart or a
// lost libvirt connection, the event is gone).
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { STOPPED_DETAIL } from './rpc/constants.js';
import type { LifecycleEvent } from './domain-events.js';

export const QEMU_LOG_DIR = '/var/log/libvirt/qemu';

const STOPPED_REASON: Record<number, string> = {
  [STOPPED_DETAIL.SHUTDOWN]: 'shutdown',
  [STOPPED_DETAIL.DESTROYED]: 'destroyed',
  [STOPPED_DETAIL.CRASHED]: 'crashed',
  [STOPPED_DETAIL.MIGRATED]: 'migrated',
  [STOPPED_DETAIL.SAVED]: 'saved',
  [STOPPED_DETAIL.FAILED]: 'failed',
  [STOPPED_DETAIL.FROM_SNAPSHOT]: 'from-snapshot',
};

/** The reason a lifecycle event says a domain ended; undefined when the event is no end. */
export function stopReasonOf(e: Pick<LifecycleEvent, 'event' | 'detail'>): string | undefined {
  if (e.event === 'stopped') return STOPPED_REASON[e.detail] ?? 'unknown';
  if (e.event === 'crashed') return 'crashed';
  return undefined;
}

/** The last run's end reason from the domain's QEMU log, if libvirtd wrote one. */
export async function lastStopReason(domainName: string, logDir = QEMU_LOG_DIR): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(join(logDir, `${domainName}.log`), 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const all = [...buf.toString('utf8').matchAll(/shutting down, reason=([a-z-]+)/g)];
    return all.at(-1)?.[1];
  } finally {
    await fh.close();
  }
}

/**
 * Removes the domain's QEMU log (with the domain: a new one with the same name starts clean) and
 * the logs of the virtiofsd libvirt ran for its shares (<name>-fs<N>-virtiofsd.log), which
 * libvirt leaves behind: two more files per sandboxed pod, for ever, since a pod's domain name is
 * never used again.
 */
export async function removeQemuLog(domainName: string, logDir = QEMU_LOG_DIR): Promise<void> {
  const head = `${domainName}-fs`;
  const tail = '-virtiofsd.log';
  const virtiofsd = (n: string) => n.startsWith(head) && n.endsWith(tail) && /^\d+$/.test(n.slice(head.length, -tail.length));
  const names = await readdir(logDir).catch(() => [] as string[]);
  await Promise.all([`${domainName}.log`, ...names.filter(virtiofsd)].map((n) => rm(join(logDir, n), { force: true })));
}
