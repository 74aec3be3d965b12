// A warm-pool VM as the pod layer sees it (pure; the pool itself is podvm-pool.ts): what it is,
// and which pods' VMs it can become.
import type { MachineSettings } from '../vm/annotations.js';

/** In a claimed pool VM's dir: the id of the pod that took it (the pool's sweep keeps the VM while that pod's dir exists). */
export const CLAIMED_BY = 'claimed-by';

export interface PoolVm {
  id: string;
  domainName: string;
  /** Its own dir (<stateDir>/pool/<id>): scratch disk, share, console log, agent socket. */
  dir: string;
  scratch: string;
  shared: string;
  consoleLog: string;
  agentSocket: string;
  /** The tap libvirt made for its NIC, in the host netns until a pod claims the VM. */
  tap: string;
  kit: string;
  settings: MachineSettings;
  key: string;
}

/**
 * What makes two pod VMs the same machine, but for what changes while one runs: vCPUs (hotplug)
 * and guest RAM (balloon), checked against the pool VM's maxima in take(). podVmSpec fixes the
 * disk bus, firmware, serial log and display, so they are left out.
 */
export function podVmKey(s: MachineSettings): string {
  const { vcpus: _v, memoryMiB: _m, maxMemoryMiB: _mm, sources: _s, diskBus: _d, firmware: _f, serialLog: _l, vnc: _n, ...rest } = s;
  return JSON.stringify(Object.entries(rest).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Whether a pod VM with `want` can be the pool VM `v` (then grown or shrunk to `want`). */
export function fitsPoolVm(v: Pick<PoolVm, 'key' | 'settings'>, want: MachineSettings): boolean {
  const max = v.settings;
  return podVmKey(want) === v.key && want.maxMemoryMiB <= max.maxMemoryMiB && want.memoryMiB <= max.maxMemoryMiB && want.vcpus <= max.maxVcpus;
}

