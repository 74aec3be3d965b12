// What the streaming server needs to know about VM pods: the console pty of a running VM, and the
// pod IP to forward ports to (routable from the node through the CNI bridge, as the kubelet's own
// probes rely on: no need to enter the pod's netns).
import { failedPrecondition, notFound } from '../errors.js';
import { serialPtyPath } from '../stream/console-attach.js';
import type { VmStreamLookups } from '../stream/vm-backend.js';
import type { PodManager } from './manager.js';

export function podStreamLookups(m: PodManager): VmStreamLookups {
  return {
    async consolePty(containerId) {
      const c = m.mustContainer(containerId);
      if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}; attach needs a running VM`);
      const pty = serialPtyPath(await m.deps.libvirt.domainXML(c.domainName));
      if (!pty) throw failedPrecondition(`VM ${c.domainName} has no serial console pty`);
      return pty;
    },
    async podAddress(podSandboxId) {
      const ip = m.networks.get(podSandboxId)?.ips.find((i) => i.family === 4)?.address;
      if (!ip) throw notFound(`pod sandbox ${podSandboxId} has no pod IP`);
      return ip;
    },
  };
}
