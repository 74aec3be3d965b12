// Named network namespaces (ip netns, so they live under /run/netns and outlive vmlet).
// Made empty here: the pod network's wiring (pod-network.ts) brings its loopback up in the
// same `ip` process that rewires eth0, one process start fewer per pod.
import { execa } from 'execa';
import { existsSync } from 'node:fs';

export const NETNS_DIR = '/run/netns';

export function netnsName(sandboxId: string): string {
  return `vmlet-${sandboxId.slice(0, 16)}`;
}

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

export async function createNetns(name: string): Promise<string> {
  const path = netnsPath(name);
  if (!existsSync(path)) await execa('ip', ['netns', 'add', name]);
  return path;
}

export async function deleteNetns(name: string): Promise<void> {
  if (!existsSync(`${NETNS_DIR}/${name}`)) return;
  await execa('ip', ['netns', 'delete', name]);
}
