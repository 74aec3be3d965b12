// Named network namespaces (ip netns, so they live under /run/netns and outlive vmlet).
// The pod's network is wired into it by the networking code; here it gets loopback only.
import { execa } from 'execa';
import { existsSync } from 'node:fs';

export const NETNS_DIR = '/run/netns';

export function netnsName(sandboxId: string): string {
  return `vmlet-${sandboxId.slice(0, 16)}`;
}

export async function createNetns(name: string): Promise<string> {
  const path = `${NETNS_DIR}/${name}`;
  if (!existsSync(path)) await execa('ip', ['netns', 'add', name]);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return path;
}

export async function deleteNetns(name: string): Promise<void> {
  if (!existsSync(`${NETNS_DIR}/${name}`)) return;
  await execa('ip', ['netns', 'delete', name]);
}
