// vmlet's limit on open files, read from /proc/self/limits (Node.js has no getrlimit). Each VM pod
// holds a few descriptors (its QMP monitor, its console, its log) and each exec, attach or
// port-forward stream more. Node.js raises its soft limit to the hard one at start, as Go programs
// (containerd) do, so what can be low is the hard limit a supervisor gives it: vmlet.service's
// LimitNOFILE=1048576 and node-install/vmlet-service.sh raise it.
import { readFileSync } from 'node:fs';

/** Below this soft limit vmlet warns at start. */
export const LOW_OPEN_FILES = 4096;

export interface OpenFilesLimit {
  soft: number;
  hard: number;
}

/** The "Max open files" line of a /proc/PID/limits text ("unlimited" as Infinity); undefined when absent. */
export function parseOpenFilesLimit(limits: string): OpenFilesLimit | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s/m.exec(limits);
  if (!m) return undefined;
  const n = (v: string) => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

/** This process's limit, or undefined where /proc cannot say. */
export function openFilesLimit(): OpenFilesLimit | undefined {
  try {
    return parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}
