// libvirt's own view, for tests that check what vmlet did independently of vmlet: virsh output.
import { execFileSync } from 'node:child_process';

export const LIBVIRT_URI = 'qemu:///system';

export const virsh = (...args: string[]): string => execFileSync('virsh', ['-c', LIBVIRT_URI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Whether libvirt knows the domain (running or not). */
export function domainExists(name: string): boolean {
  try {
    virsh('domstate', name);
    return true;
  } catch {
    return false;
  }
}

/** `virsh schedinfo` / `dommemstat` / `dominfo` style "key : value" or "key value" lines. */
export function virshKeyValues(out: string, sep: RegExp): Record<string, string> {
  const kv: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = line.trim().split(sep);
    if (m.length === 2 && m[0]) kv[m[0].trim()] = m[1]!.trim();
  }
  return kv;
}

const numbers = (kv: Record<string, string>) => Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, Number(v)]));

/** The running domain's scheduler parameters (cpu_shares, global_quota, …) as numbers. */
export const schedinfo = (dom: string): Record<string, number> => numbers(virshKeyValues(virsh('schedinfo', dom, '--live'), /\s*:\s*/));

/** The balloon's figures (actual, rss, …, in KiB) as numbers. */
export const dommemstat = (dom: string): Record<string, number> => numbers(virshKeyValues(virsh('dommemstat', dom), /\s+/));
