// VM pods on a real CNI network (Debian's bridge + host-local + portmap plugins, real netns):
// the guest gets the pod IP, hostname and DNS, answers ping and HTTP from the host, reaches
// another pod, and a hostPort reaches it. What the guest saw is read from its console log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { call, failure, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { consoleLines, runVmPod, startVmSuite, stopVmSuite, vmletConfig, podDiagnostics, waitForConsoleLine, type VmPod } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { portForwardExchange } from '../helpers/port-forward.js';
import type { PodSandboxStatusResponse__Output } from '../../src/gen/runtime/v1/PodSandboxStatusResponse.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const logDir = tempDir('vmlet-netlogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Pod extends VmPod {
  ip: string;
}

async function startPod(name: string, o: { annotations?: Record<string, string>; dns?: object; ports?: object[] } = {}): Promise<Pod> {
  const pod = await runVmPod(v, {
    name,
    namespace: 'net-test',
    image,
    logDir,
    ...(o.annotations ? { annotations: o.annotations } : {}),
    sandbox: { dns_config: o.dns ?? {}, port_mappings: o.ports ?? [] },
  });
  const ip = (await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: pod.id })).status!.network!.ip;
  return { ...pod, ip };
}

const marker = (pod: Pod, m: string, timeoutMs = 90_000) => waitForConsoleLine(pod.log, m, timeoutMs, () => podDiagnostics(v, pod));

beforeAll(async () => {
  ({ reg, v, refs: [image = ''] } = await startVmSuite([['kernelboot', 'vmlet/kernelboot:net']]));
});

afterAll(() => stopVmSuite(v, reg));

describe('VM pod networking', () => {
  let a: Pod;
  let hostPort = 0;

  it('gives the guest the pod IP, hostname and DNS config; the host reaches it', async () => {
    hostPort = await freePort();
    a = await startPod('alpha', {
      dns: { servers: ['10.250.0.53'], searches: ['net-test.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
      ports: [{ protocol: 'TCP', container_port: 80, host_port: hostPort }],
    });
    expect(a.ip).toMatch(/^10\.250\.0\.\d+$/);
    expect(await marker(a, 'VMLET-HOSTNAME')).toBe('VMLET-HOSTNAME alpha');
    expect(await marker(a, 'VMLET-NETCONFIG')).toContain(`addresses=${a.ip}/24`);
    expect(await marker(a, 'VMLET-DHCP eth0')).toMatch(new RegExp(`^VMLET-DHCP eth0 ${a.ip.replace(/\./g, '\\.')} router=10\\.250\\.0\\.1 dns=10\\.250\\.0\\.53 `));
    expect(await marker(a, 'VMLET-DNS')).toBe('VMLET-DNS nameservers=10.250.0.53 search=net-test.svc.cluster.local,svc.cluster.local');
    // The VM ran no guest code before its tap was wired (started paused, resumed after): the
    // guest's first DHCPDISCOVER was answered, none went unheard.
    const started = parseLogLines(v.logLines).find((l) => l.msg === 'container started' && l.containerId === a.cid);
    expect(typeof started?.tapMs).toBe('number');
    expect(typeof started?.resumeMs).toBe('number');
    const dhcpLog = readFileSync(join(v.stateDir, 'pods', a.id, 'dnsmasq.log'), 'utf8');
    expect(dhcpLog.match(/DHCPDISCOVER\(/g), dhcpLog).toHaveLength(1);
    expect(dhcpLog).toMatch(new RegExp(`DHCPACK\\([^)]+\\) ${a.ip.replace(/\./g, '\\.')} `));
    await marker(a, 'VMLET-HTTPD 80');
    const ping = await execa('ping', ['-c', '1', '-W', '5', a.ip], { reject: false });
    expect(ping.exitCode, ping.stdout).toBe(0);
    const res = await fetch(`http://${a.ip}/`, { signal: AbortSignal.timeout(10_000) });
    expect((await res.text()).trim()).toBe('vmlet-guest alpha');
  });

  it('maps a hostPort to the guest through the portmap plugin', async () => {
    // From the host, a local address's port is DNAT-ed to the pod (portmap's OUTPUT rule).
    const res = await fetch(`http://10.250.0.1:${hostPort}/`, { signal: AbortSignal.timeout(10_000) });
    expect((await res.text()).trim()).toBe('vmlet-guest alpha');
  });

  it('lets two VM pods reach each other by pod IP; DHCP-only guests get the same config', async () => {
    const b = await startPod('beta', { annotations: { 'vmlet.io/network-config': 'dhcp', 'vmlet.io/kernel-args': `vmlet.test=ping:${a.ip}` }, dns: { servers: ['10.250.0.54'], searches: ['beta.test'] } });
    expect(b.ip).not.toBe(a.ip);
    expect(await marker(b, 'VMLET-DHCP eth0')).toMatch(new RegExp(`^VMLET-DHCP eth0 ${b.ip.replace(/\./g, '\\.')} router=10\\.250\\.0\\.1 dns=10\\.250\\.0\\.54 search=beta\\.test hostname=beta`));
    expect(consoleLines(b.log).some((l) => l.startsWith('VMLET-NETCONFIG'))).toBe(false);
    expect(await marker(b, 'VMLET-PING')).toBe(`VMLET-PING ${a.ip} ok`);
  });

  it('network-config static: the guest takes the seed addresses and the pod runs no DHCP server', async () => {
    const c = await startPod('gamma', { annotations: { 'vmlet.io/network-config': 'static' } });
    expect(await marker(c, 'VMLET-NETCONFIG')).toContain(`addresses=${c.ip}/24`);
    // Nobody answers the guest's DHCP client: it gives up, the seed's address stays.
    expect(await marker(c, 'VMLET-NODHCP')).toBe('VMLET-NODHCP eth0');
    expect(existsSync(join(v.stateDir, 'pods', c.id, 'dnsmasq.pid'))).toBe(false);
    await marker(c, 'VMLET-HTTPD 80');
    const ping = await execa('ping', ['-c', '1', '-W', '5', c.ip], { reject: false });
    expect(ping.exitCode, ping.stdout).toBe(0);
    await rt('RemovePodSandbox', { pod_sandbox_id: c.id });
  });

  it('refuses a bad vmlet.io/network-config at RunPodSandbox, before any netns or CNI lease', async () => {
    const before = readdirSync('/run/netns').filter((n) => n.startsWith('vmlet-')).sort();
    const err = await failure(runVmPod(v, { name: 'bad-net', namespace: 'net-test', image, logDir, annotations: { 'vmlet.io/network-config': 'off' } }));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe('annotation vmlet.io/network-config="off" is invalid: allowed both | static | dhcp');
    expect(readdirSync('/run/netns').filter((n) => n.startsWith('vmlet-')).sort()).toEqual(before);
  });

  it('attaches to the console and forwards a port through the streaming server (WebSocket v5)', async () => {
    const { WebSocket } = await import('ws');
    const cid = (await rt<{ containers: { id: string }[] }>('ListContainers', { filter: { pod_sandbox_id: a.id } })).containers[0]!.id;
    // Attach: type into the guest's console shell, read its answer.
    const { url } = await rt<{ url: string }>('Attach', { container_id: cid, stdin: true, stdout: true, tty: true });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    const out: Buffer[] = [];
    ws.on('message', (d: Buffer) => d[0] === 1 && out.push(d.subarray(1)));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('echo attach-$((6*7))\n')]));
    await waitFor('the console to answer', () => Buffer.concat(out).toString().includes('attach-42'), { timeoutMs: 20_000 });
    ws.close();
    // A used URL does not work twice.
    const again = new WebSocket(url, ['v5.channel.k8s.io']);
    const refused = await new Promise<number>((resolve) => again.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)).once('open', () => resolve(101)));
    expect(refused).toBe(404);
    // Port-forward to the guest's httpd.
    await portForwardExchange(v, a.id, 80, 'GET / HTTP/1.0\r\n\r\n', 'vmlet-guest alpha');
  });

  it('after kill -9 of vmlet and of the DHCP server, a restart brings DHCP back; the VM stays reachable', async () => {
    const pidFile = join(v.stateDir, 'pods', a.id, 'dnsmasq.pid');
    const dnsmasqPid = Number(readFileSync(pidFile, 'utf8').trim());
    expect(await v.stop('SIGKILL')).toBeNull();
    process.kill(dnsmasqPid, 'SIGKILL'); // as after a crash; a reboot also loses the netns
    await waitFor('dnsmasq to die', () => !existsSync(`/proc/${dnsmasqPid}/cmdline`) || readFileSync(`/proc/${dnsmasqPid}/stat`, 'utf8').includes(') Z '));
    v = await startVmlet({ stateDir: v.stateDir, config: vmletConfig(reg) });
    const newPid = Number(readFileSync(pidFile, 'utf8').trim());
    expect(newPid).not.toBe(dnsmasqPid);
    expect(readFileSync(`/proc/${newPid}/comm`, 'utf8').trim()).toBe('dnsmasq');
    const ping = await execa('ping', ['-c', '1', '-W', '5', a.ip], { reject: false });
    expect(ping.exitCode, ping.stdout).toBe(0);
    expect((await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: a.id })).status!.network!.ip).toBe(a.ip);
  });

  it('tears the network down: CNI DEL at stop, netns gone at remove', async () => {
    const netns = `/run/netns/vmlet-${a.id.slice(0, 16)}`;
    expect(existsSync(netns)).toBe(true);
    await rt('StopPodSandbox', { pod_sandbox_id: a.id });
    const ping = await execa('ping', ['-c', '1', '-W', '1', a.ip], { reject: false });
    expect(ping.exitCode).not.toBe(0);
    await rt('StopPodSandbox', { pod_sandbox_id: a.id }); // idempotent
    await rt('RemovePodSandbox', { pod_sandbox_id: a.id });
    expect(existsSync(netns)).toBe(false);
  });
});
