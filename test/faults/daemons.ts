// The node's libvirtd and virtlogd, stopped and brought back the way they were started: by
// node-install/start-daemons.sh (which the installer and test/prepare.sh run) when systemd is
// not PID 1, its pid files under /run naming them; by systemctl otherwise. They are shared with
// every VM on the node: the suite keeps each stop short.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { ROOT } from '../helpers/vmlet.js';
import { virsh } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';
import { alive, liveComm } from '../helpers/proc.js';

const SYSTEMD = existsSync('/run/systemd/system');
/** start-daemons.sh ran libvirtd under its keeper (no systemd): a libvirtd that dies on its own comes back by itself. */
export const KEEPER = !SYSTEMD;
const START_DAEMONS = join(ROOT, 'node-install/start-daemons.sh');

/** The live process of `name` its pid file names (undefined when none runs). */
export function daemonPid(name: 'libvirtd' | 'virtlogd'): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(`/run/${name}.pid`, 'utf8').trim());
  } catch {
    return undefined;
  }
  return liveComm(pid) === name ? pid : undefined;
}

const gone = (pid: number) => !alive(pid);

export const libvirtAnswers = (): boolean => {
  try {
    virsh('version');
    return true;
  } catch {
    return false;
  }
};

/**
 * Stops libvirtd with `signal` and waits until it is gone (its socket no longer answers). A
 * SIGKILL is a crash to its keeper, which starts it again a second later: then this returns once
 * the killed process is gone, without waiting for a silence that may already be over.
 */
export async function stopLibvirtd(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (SYSTEMD) {
    await execa('systemctl', signal === 'SIGKILL' ? ['kill', '--signal=SIGKILL', 'libvirtd.service'] : ['stop', 'libvirtd.service', 'libvirtd.socket']);
  } else {
    const pid = daemonPid('libvirtd');
    if (!pid) throw new Error('no libvirtd running (its pid file /run/libvirtd.pid names none): run node-install/start-daemons.sh');
    process.kill(pid, signal);
    await waitFor(`libvirtd ${pid} to exit`, () => gone(pid), { timeoutMs: 30_000 });
    if (signal === 'SIGKILL') return;
  }
  await waitFor('libvirtd to stop answering', () => !libvirtAnswers(), { timeoutMs: 30_000 });
}

/** Starts libvirtd (and virtlogd if needed) as the node's installer does; resolves once it answers. */
export async function startDaemons(): Promise<void> {
  if (SYSTEMD) await execa('systemctl', ['start', 'libvirtd.socket', 'libvirtd.service']);
  else await execa('bash', [START_DAEMONS]);
  await waitFor('libvirtd to answer', libvirtAnswers, { timeoutMs: 30_000 });
}

/**
 * Restarts libvirtd as the installer does when qemu.conf changed (start-daemons.sh
 * --restart-libvirtd: through its keeper without systemd); resolves with the script's output
 * once libvirtd answers.
 */
export async function restartLibvirtd(): Promise<string> {
  const { stdout } = await execa('bash', [START_DAEMONS, '--restart-libvirtd']);
  await waitFor('libvirtd to answer', libvirtAnswers, { timeoutMs: 30_000 });
  return stdout;
}

/** The address of a process's stack: placed at random by each exec (ASLR), so it tells a re-exec. */
const stackOf = (pid: number) => readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => l.endsWith('[stack]'));

/**
 * Files virtlogd writes whose directory is gone (a running VM whose state dir was deleted, as a
 * test that leaks a VM leaves it). libvirt 9.0's virtlogd reopens every log by path when it
 * re-executes and exits when one fails, leaving every VM on the node without console logs.
 */
export function virtlogdLogsOutOfReach(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/ \(deleted\)$/, '');
    } catch {
      continue; // closed meanwhile
    }
    if (target.startsWith('/') && !existsSync(dirname(target))) out.push(target);
  }
  return out;
}

/**
 * virtlogd re-executes itself, keeping every log file and the pipe each QEMU writes its console
 * into (SIGUSR1: what its systemd unit's reload and a package upgrade do). Resolves once the new
 * image runs under the same pid.
 */
export async function reexecVirtlogd(): Promise<void> {
  if (SYSTEMD) {
    await execa('systemctl', ['reload', 'virtlogd.service']);
    return;
  }
  const pid = daemonPid('virtlogd');
  if (!pid) throw new Error('no virtlogd running (its pid file /run/virtlogd.pid names none): run node-install/start-daemons.sh');
  const lost = virtlogdLogsOutOfReach(pid);
  if (lost.length) {
    throw new Error(`not re-executing virtlogd: it writes logs in directories that are gone, and would exit when it reopens them (${lost.join(', ')}); remove the VMs that write them (virsh list; virsh destroy <name>)`);
  }
  const before = stackOf(pid);
  process.kill(pid, 'SIGUSR1');
  await waitFor('virtlogd to re-execute', () => daemonPid('virtlogd') === pid && stackOf(pid) !== before, { timeoutMs: 30_000, intervalMs: 20 });
}
