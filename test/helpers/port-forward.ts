// PortForward as crictl/kubectl use it: the RPC hands out a streaming URL, a WebSocket client
// (v4.channel.k8s.io) sends bytes on the port's data channel and reads the answer.
import { WebSocket } from 'ws';
import { call, type VmletProcess } from './vmlet.js';
import { waitFor } from './wait.js';

/** Sends `request` to `port` of the pod through vmlet's streaming server; resolves once the answer contains `expect`. */
export async function portForwardExchange(v: VmletProcess, podSandboxId: string, port: number, request: string, expect: string, timeoutMs = 20_000): Promise<string> {
  const { url } = await call<object, { url: string }>(v.runtime, 'PortForward', { pod_sandbox_id: podSandboxId, port: [port] });
  const ws = new WebSocket(url, ['v4.channel.k8s.io']);
  const data: Buffer[] = [];
  const errors: Buffer[] = [];
  const seen = new Map<number, number>();
  ws.on('message', (d: Buffer) => {
    const ch = d[0]!;
    const n = seen.get(ch) ?? 0;
    seen.set(ch, n + 1);
    if (n === 0) return; // each channel starts with the port number
    (ch === 0 ? data : errors).push(d.subarray(1));
  });
  try {
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(request)]));
    return await waitFor(`port-forward to :${port} to answer ${JSON.stringify(expect)}`, () => {
      if (errors.length) throw new Error(`port-forward error channel: ${Buffer.concat(errors).toString()}`);
      const text = Buffer.concat(data).toString();
      return text.includes(expect) ? text : undefined;
    }, { timeoutMs });
  } finally {
    ws.close();
  }
}
