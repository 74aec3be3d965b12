// A container's capability set from the CRI's security context, as containerd computes it: the
// default set, "ALL" added or dropped first, then each named capability added, then each dropped;
// a privileged container gets them all. Names with or without the CAP_ prefix, any case.
import { invalidArgument } from '../errors.js';

/** linux/capability.h, by number (0 … CAP_LAST_CAP of the guest kit's 6.1 kernel). */
export const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** containerd's default set for a container. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

function capName(raw: string, field: string): string {
  const name = raw.toUpperCase().startsWith('CAP_') ? raw.toUpperCase() : `CAP_${raw.toUpperCase()}`;
  if (!(ALL_CAPABILITIES as readonly string[]).includes(name)) {
    throw invalidArgument(`${field}: unknown capability ${JSON.stringify(raw)}: allowed ALL or a Linux capability such as NET_ADMIN or CAP_SYS_TIME`);
  }
  return name;
}

export function containerCapabilities(add: readonly string[], drop: readonly string[], privileged: boolean): string[] {
  if (privileged) return [...ALL_CAPABILITIES];
  const isAll = (c: string) => c.toUpperCase() === 'ALL';
  let caps = new Set<string>(DEFAULT_CAPABILITIES);
  if (add.some(isAll)) caps = new Set(ALL_CAPABILITIES);
  if (drop.some(isAll)) caps = new Set();
  for (const c of add) if (!isAll(c)) caps.add(capName(c, 'config.linux.security_context.capabilities.add_capabilities'));
  for (const c of drop) if (!isAll(c)) caps.delete(capName(c, 'config.linux.security_context.capabilities.drop_capabilities'));
  return ALL_CAPABILITIES.filter((c) => caps.has(c));
}

/** containerd's default masked and read-only paths (when the kubelet sends none). */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
