// The pod network matrix: VM pods on the CNI setups real nodes have, with the DHCP clients real
// guests run. Each cell boots real guests through vmlet (RunPodSandbox → StartContainer) on a
// network made by Debian's CNI plugins, and checks from inside the guest (ExecSync through
// qemu-ga) and from the node:
//   - the guest holds the pod IP and the CNI routes, leased on its first DISCOVER;
//   - it reaches another VM pod, a plain container's netns and the node;
//   - PortForward and a hostPort (portmap) reach its httpd.
// The first cell is the installer's own CNI config, verbatim (hairpinMode on: the setup whose
// reflected broadcasts broke DHCP under a learning bridge in the pod).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { pino } from 'pino';
import { call, ROOT, tempDir, CNI_BIN_DIRS, startVmlet, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { ensureTestImages, pushImage, startRegistry } from '../helpers/registry.js';
import { runVmPod, vmletConfig, waitForAgent, waitForConsoleLine, stopVmSuite, type VmPod } from '../helpers/vm-suite.js';
import { portForwardExchange } from '../helpers/port-forward.js';
import { waitFor } from '../helpers/wait.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';
import { cniAdd, cniDel, loadNetworkConfList, parseCniResult, type CniAttachment, type CniConfList } from '../../src/net/cni.js';
import { createNetns, deleteNetns } from '../../src/net/netns.js';
import type { PodSandboxStatusResponse__Output } from '../../src/gen/runtime/v1/PodSandboxStatusResponse.js';

type Client = 'udhcpc' | 'udhcpc-broadcast' | 'dhclient';
interface Cell {
  name: string;
  /** The conflist (JSON text). */
  conflist: string;
  client: Client;
  /** The node's address on the pod network (bridge gateway, or ptp's host end). */
  node: string;
  /** The node's IPv6 address on the pod network, when the cell is dual-stack. */
  node6?: string;
  /** Routes the guest must hold (`ip route` lines, from the CNI result). */
  routes: (podIp: string) => string[];
}

const log = pino({ level: 'silent' });
const rand = () => randomBytes(3).toString('hex');
const n = 100 + (randomBytes(1)[0]! % 100);
const ipamDir = tempDir('vmlet-mx-ipam-');
const INSTALLER_CONFLIST = join(ROOT, 'node-install/10-vmlet-bridge.conflist');

function bridgeConf(o: { name: string; bridge: string; hairpin: boolean; subnet: string; subnet6?: string }): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: o.name,
    plugins: [
      {
        type: 'bridge', bridge: o.bridge, isGateway: true, ipMasq: false, hairpinMode: o.hairpin,
        ipam: {
          type: 'host-local', dataDir: ipamDir,
          ranges: [[{ subnet: o.subnet }], ...(o.subnet6 ? [[{ subnet: o.subnet6 }]] : [])],
          routes: [{ dst: '0.0.0.0/0' }, ...(o.subnet6 ? [{ dst: '::/0' }] : [])],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}

const defaultVia = (gw: string) => () => [`default via ${gw} dev eth0`];
const bridges: string[] = [];
const newBridge = () => {
  const b = `vmmx${rand()}`;
  bridges.push(b);
  return b;
};

const cells: Cell[] = [
  // The installer's defaults: bridge vmlet0, hairpinMode on, ipMasq, 10.89.0.0/16, portmap.
  { name: 'installer config (bridge, hairpin on), udhcpc', conflist: readFileSync(INSTALLER_CONFLIST, 'utf8'), client: 'udhcpc', node: '10.89.0.1', routes: defaultVia('10.89.0.1') },
  {
    name: 'bridge hairpin on, udhcpc with the broadcast flag',
    conflist: bridgeConf({ name: 'vmlet-mx-hp', bridge: newBridge(), hairpin: true, subnet: `10.253.${n}.0/24` }),
    client: 'udhcpc-broadcast', node: `10.253.${n}.1`, routes: defaultVia(`10.253.${n}.1`),
  },
  {
    name: 'bridge hairpin off, udhcpc',
    conflist: bridgeConf({ name: 'vmlet-mx-nohp', bridge: newBridge(), hairpin: false, subnet: `10.253.${n + 1}.0/24` }),
    client: 'udhcpc', node: `10.253.${n + 1}.1`, routes: defaultVia(`10.253.${n + 1}.1`),
  },
  {
    // Calico-style: ptp routes the subnet through the host end, nothing is on-link but it.
    name: 'ptp (/32 in the guest, gateway on-link by route), udhcpc',
    conflist: JSON.stringify({
      cniVersion: '1.0.0', name: 'vmlet-mx-ptp',
      plugins: [
        { type: 'ptp', ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: `10.254.${n}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
    client: 'udhcpc', node: `10.254.${n}.1`,
    routes: () => [`default via 10.254.${n}.1 dev eth0`, `10.254.${n}.0/24 via 10.254.${n}.1 dev eth0`, `10.254.${n}.1 dev eth0`],
  },
  {
    name: 'bridge hairpin on, dual stack, dhclient (DHCPv4 + DHCPv6)',
    conflist: bridgeConf({ name: 'vmlet-mx-ds', bridge: newBridge(), hairpin: true, subnet: `10.253.${n + 2}.0/24`, subnet6: `fd00:253:${n}::/64` }),
    client: 'dhclient', node: `10.253.${n + 2}.1`, node6: `fd00:253:${n}::1`, routes: defaultVia(`10.253.${n + 2}.1`),
  },
];

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const cniDir = tempDir('vmlet-mx-cni-');
const logDir = tempDir('vmlet-mx-logs-');
const installerBridgeExisted = existsSync('/sys/class/net/vmlet0');
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:matrix')).reference;
  v = await startVmlet({ config: vmletConfig(reg), cniConfDir: cniDir });
  await call(v.image, 'PullImage', { image: { image } });
}, 120_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await stopVmSuite(v, reg);
  for (const b of [...bridges, ...(installerBridgeExisted ? [] : ['vmlet0'])]) await execa('ip', ['link', 'del', b], { reject: false });
  rmSync(ipamDir, { recursive: true, force: true });
});

const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

async function podIps(id: string): Promise<string[]> {
  const net = (await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: id })).status!.network!;
  return [net.ip, ...net.additional_ips.map((i) => i.ip)];
}

async function exec(cid: string, cmd: string): Promise<{ code: number; out: string }> {
  const r = await rt<{ exit_code: number; stdout: Buffer; stderr: Buffer }>('ExecSync', { container_id: cid, cmd: ['sh', '-c', cmd], timeout: 20 });
  return { code: r.exit_code, out: `${Buffer.from(r.stdout).toString()}${Buffer.from(r.stderr).toString()}` };
}

/** A plain container's network: CNI ADD with the cell's conflist in a netns of its own. */
async function plainContainer(confList: CniConfList): Promise<string[]> {
  const id = `mxc${rand()}${rand()}`;
  const ns = `vmlet-mxc-${rand()}`;
  const path = await createNetns(ns);
  const att: CniAttachment = { containerId: id, netns: path, ifName: 'eth0', args: '', runtimeConfig: {} };
  const added = await cniAdd(confList, att, { binDirs: CNI_BIN_DIRS, log });
  cleanups.push(async () => {
    await cniDel(confList, att, added.raw, { binDirs: CNI_BIN_DIRS, log });
    await deleteNetns(ns);
  });
  return parseCniResult(added.raw).ips.map((i) => i.address);
}

/** Milliseconds between two console markers, from the CRI log's timestamps. */
function markerGapMs(logPath: string, from: string, to: string): number | undefined {
  const lines = readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l));
  const t = (p: string) => lines.find((l) => l.content.replace(/\r+$/, '').startsWith(p))?.time.getTime();
  const a = t(from);
  const b = t(to);
  return a !== undefined && b !== undefined ? b - a : undefined;
}

describe.each(cells)('VM pod network: $name', (cell) => {
  let a: VmPod & { ips: string[] };
  let b: VmPod & { ips: string[]; name: string };
  let container: string[] = [];
  let hostPort = 0;

  it('leases the pod IP to the guest on its first DISCOVER, with the CNI routes', async () => {
    for (const f of readdirSync(cniDir)) rmSync(join(cniDir, f));
    writeFileSync(join(cniDir, '10-cell.conflist'), cell.conflist);
    const confList = loadNetworkConfList(cniDir, CNI_BIN_DIRS);
    hostPort = 20000 + (randomBytes(2).readUInt16BE() % 20000);
    const tag = rand();
    // B: another VM pod (static network-config, the default); A: the pod under test, DHCP only,
    // with the cell's client.
    const pb = await runVmPod(v, { name: `mxb-${tag}`, namespace: 'net-matrix', image, logDir });
    b = { ...pb, ips: await podIps(pb.id), name: `mxb-${tag}` };
    const pa = await runVmPod(v, {
      name: `mxa-${tag}`, namespace: 'net-matrix', image, logDir,
      annotations: { 'vmlet.io/network-config': 'dhcp', 'vmlet.io/kernel-args': `vmlet.dhcp=${cell.client}${cell.node6 ? ' vmlet.dhcp6=dhclient' : ''}` },
      sandbox: { port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: hostPort }] },
    });
    a = { ...pa, ips: await podIps(pa.id) };
    for (const p of [a, b]) cleanups.push(() => rt('RemovePodSandbox', { pod_sandbox_id: p.id }));
    container = await plainContainer(confList);
    expect(a.ips).toHaveLength(cell.node6 ? 2 : 1);
    const ip4 = a.ips[0]!;

    const leased = await waitForConsoleLine(a.log, 'VMLET-DHCP eth0', 90_000);
    expect(leased).toMatch(new RegExp(`^VMLET-DHCP eth0 ${ip4.replace(/\./g, '\\.')} router=${cell.node.replace(/\./g, '\\.')} `));
    // The first DISCOVER got its answer: one DISCOVER before the first ACK in dnsmasq's log.
    const dnsmasqLog = readFileSync(join(v.stateDir, 'pods', a.id, 'dnsmasq.log'), 'utf8');
    const beforeAck = dnsmasqLog.slice(0, dnsmasqLog.indexOf('DHCPACK('));
    expect(dnsmasqLog).toContain('DHCPACK(');
    expect(beforeAck.match(/DHCPDISCOVER\(/g) ?? []).toHaveLength(1);
    const gap = markerGapMs(a.log, `VMLET-DHCPSTART eth0 ${cell.client}`, 'VMLET-DHCP eth0');
    console.log(`[${cell.name}] client start → lease in the guest: ${gap ?? '?'} ms`);

    // In the guest: the address and the CNI's routes (ptp's /32 comes with on-link routes).
    await waitForAgent(v, a.cid);
    const addr = await exec(a.cid, 'ip -4 addr show dev eth0');
    expect(addr.out).toMatch(new RegExp(`inet ${ip4.replace(/\./g, '\\.')}/\\d+`));
    const routes = (await exec(a.cid, 'ip -4 route')).out.split('\n').map((l) => l.trim().replace(/\s+/g, ' '));
    for (const r of cell.routes(ip4)) expect(routes.some((l) => l.startsWith(r)), `route "${r}" in\n${routes.join('\n')}`).toBe(true);
  });

  it('reaches another VM pod, a plain container and the node', async () => {
    await waitForConsoleLine(b.log, 'VMLET-HTTPD 80', 90_000);
    for (const target of [b.ips[0]!, container[0]!, cell.node]) {
      const r = await exec(a.cid, `ping -c 1 -W 3 ${target}`);
      expect(r.code, `ping ${target} from the guest:\n${r.out}`).toBe(0);
    }
    // And the other pod's httpd answers the guest.
    // (busybox nc: the static busybox's wget crashes in its resolver)
    const http = await exec(a.cid, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${b.ips[0]} 80`);
    expect(http.out, `nc exit ${http.code}`).toContain(`vmlet-guest ${b.name}`);
  });

  it('is reached by PortForward and through its hostPort', async () => {
    await waitForConsoleLine(a.log, 'VMLET-HTTPD 80', 90_000);
    const answer = await portForwardExchange(v, a.id, 80, 'GET / HTTP/1.0\r\n\r\n', 'vmlet-guest');
    expect(answer).toContain('200 OK');
    const body = await waitFor(`http://${cell.node}:${hostPort}/ (portmap) → the guest`, async () => {
      const r = await fetch(`http://${cell.node}:${hostPort}/`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
      return r?.ok ? (await r.text()).trim() : undefined;
    }, { timeoutMs: 20_000, intervalMs: 250 });
    expect(body).toMatch(/^vmlet-guest mxa-/);
  });

  // Only dual-stack cells have this step (defined, not skipped, elsewhere).
  if (cell.node6 !== undefined) it('gives the guest its IPv6 pod address by DHCPv6 and reaches IPv6 neighbours', async () => {
    const ip6 = a.ips[1]!;
    expect(await waitForConsoleLine(a.log, 'VMLET-DHCP6 eth0', 60_000)).toMatch(new RegExp(`^VMLET-DHCP6 eth0 ${ip6} `));
    const addr = await exec(a.cid, 'ip -6 addr show dev eth0');
    expect(addr.out).toContain(`inet6 ${ip6}/`);
    // B has its IPv6 address from the seed's network-config (static), the container from CNI.
    for (const target of [b.ips[1]!, container[1]!, cell.node6!]) {
      const r = await waitFor(`ping6 ${target} from the guest`, async () => {
        const p = await exec(a.cid, `ping -6 -c 1 -W 2 ${target}`);
        return p.code === 0 ? p : undefined;
      }, { timeoutMs: 15_000, intervalMs: 500 });
      expect(r.code).toBe(0);
    }
  });

  it('cleans up: no netns, lease or hostPort rule left after RemovePodSandbox', async () => {
    for (const p of [a, b]) await rt('RemovePodSandbox', { pod_sandbox_id: p.id });
    for (const p of [a, b]) expect(existsSync(`/run/netns/vmlet-${p.id.slice(0, 16)}`)).toBe(false);
    expect((await execa('iptables', ['-t', 'nat', '-S'])).stdout).not.toContain(a.id);
  });
});
