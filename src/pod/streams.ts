// What the streaming server needs to know about VM pods: the console pty of a running VM, the
// pod IP to forward ports to (routable from the node through the CNI bridge, as the kubelet's own
// probes rely on: no need to enter the pod's netns), and exec through the guest agent.
import type { Readable } from 'node:stream';
import { failedPrecondition, notFound } from '../errors.js';
import { execSync } from './container-exec.js';
import { attachable } from './container-attach.js';
import { vmStreamBackend, type VmStreamLookups } from '../stream/vm-backend.js';
import type { StreamBackend } from '../stream/backend.js';
import { attachSandboxed, execStreamSandboxed } from './sandboxed-exec.js';
import type { PodManager } from './manager.js';

/** Streams for both pod kinds: a sandboxed pod's containers through vmlet's agent, VMs as below. */
export function podStreamBackend(m: PodManager): StreamBackend {
  const vm = vmStreamBackend(podStreamLookups(m));
  const sandboxed = (id: string) => m.container(id)?.kind === 'sandboxed';
  return {
    attach: (req, io) => (sandboxed(req.containerId) ? attachSandboxed(m, req, io) : vm.attach(req, io)),
    exec: (req, io) => (sandboxed(req.containerId) ? execStreamSandboxed(m, req, io) : vm.exec(req, io)),
    portForward: (id, port) => vm.portForward(id, port),
  };
}

export function podStreamLookups(m: PodManager): VmStreamLookups {
  return {
    async consolePty(containerId) {
      const c = attachable(m, containerId);
      const pty = await m.deps.vm.consolePty(c.domainName);
      if (!pty) throw failedPrecondition(`VM ${c.domainName} has no serial console pty`);
      return pty;
    },
    /**
     * qemu-guest-agent's guest-exec takes stdin whole at the start and gives output when the
     * command ends: so stdin is read to its end first and output arrives at exit. No TTY (the
     * Exec RPC refuses tty before a stream is set up).
     */
    async exec(req, io) {
      const stdin = io.stdin ? await readAll(io.stdin) : undefined;
      const r = await execSync(m, req.containerId, req.cmd, 0, stdin);
      await write(io.stdout, r.stdout);
      await write(io.stderr, r.stderr);
      return { exitCode: r.exitCode };
    },
    async podAddress(podSandboxId) {
      // Checked again when the stream dials (the URL may be older than a stop): a stopped pod's
      // address went back to CNI and may be another pod's now.
      const s = m.sandboxes.get(podSandboxId);
      if (!s) throw notFound(`cannot forward ports: pod sandbox ${podSandboxId} not found (removed)`);
      m.requireReady(s, 'cannot forward ports');
      const ip = m.networks.get(podSandboxId)?.ips.find((i) => i.family === 4)?.address;
      if (!ip) throw notFound(`pod sandbox ${podSandboxId} has no pod IP`);
      return ip;
    },
  };
}

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

function write(w: NodeJS.WritableStream | undefined, data: Buffer): Promise<void> {
  if (!w || data.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => w.write(data, (err) => (err ? reject(err) : resolve())));
}
