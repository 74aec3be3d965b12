// The pod network end to end with real parts: Debian's CNI plugins (bridge, host-local,
// portmap) on a test conflist, real network namespaces, dnsmasq, busybox udhcpc, and the
// project's test guest booted through libvirt with the tap approach vmlet uses (libvirt makes
// the tap in the host netns, attachPodTap moves it into the pod netns and joins it to eth0 with
// tc redirects).
// Every test uses its own bridge name and a private 10.250.x.0/24 and removes all it made.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { pino } from 'pino';
import { createNetns, deleteNetns } from '../../src/net/netns.js';
import { nicXml } from '../../src/vm/domain-xml.js';
import {
  attachPodTap,
  dhcpRunning,
  loadPodNetworkState,
  reattachPodNetwork,
  setupPodNetwork,
  teardownPodNetwork,
  type PodNetworkState,
  type SetupPodNetworkInput,
} from '../../src/net/index.js';
import { dhcpFiles, dhcpPid, startDhcp, stopDhcp } from '../../src/net/dhcp.js';
import { Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { kernelGuest, kernelGuestXml, READY_MARKER } from '../helpers/guest.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: process.env.VMLET_TEST_LOG ?? 'silent' });
const rand = () => randomBytes(3).toString('hex');
// One /24 per test file run, away from the default 10.250.0.0/24 other tests use.
const octet = 100 + (randomBytes(1)[0]! % 150);
const SUBNET = `10.250.${octet}.0/24`;
const GATEWAY = `10.250.${octet}.1`;
const BRIDGE = `vmtn${rand()}`;
const cleanups: Array<() => Promise<unknown>> = [];

const ipOut = async (args: string[]) => (await execa('ip', args)).stdout;
const linkExists = async (ns: string | undefined, dev: string) =>
  (await execa('ip', [...(ns ? ['-n', ns] : []), 'link', 'show', 'dev', dev], { reject: false })).exitCode === 0;

function writeConf(): { confDir: string; ipamDir: string } {
  const confDir = tempDir('vmlet-netconf-');
  const ipamDir = join(confDir, 'ipam');
  writeFileSync(
    join(confDir, '10-net-test.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `vmlet-net-test-${BRIDGE}`,
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: SUBNET }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  return { confDir, ipamDir };
}

let conf: { confDir: string; ipamDir: string };

function input(sandboxId: string, netnsName: string, netnsPath: string, extra: Partial<SetupPodNetworkInput> = {}): SetupPodNetworkInput {
  return {
    sandboxId,
    netnsName,
    netnsPath,
    podName: 'web-0',
    namespace: 'default',
    podUid: `uid-${sandboxId}`,
    hostname: 'web-0',
    dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    portMappings: [],
    confDir: conf.confDir,
    binDirs: ['/opt/cni/bin', '/usr/lib/cni'],
    stateDir: tempDir('vmlet-netstate-'),
    log,
    ...extra,
  };
}

async function newPod(extra: Partial<SetupPodNetworkInput> = {}): Promise<{ id: string; ns: string; state: PodNetworkState }> {
  const id = `${rand()}${randomBytes(10).toString('hex')}`;
  const ns = `vmlet-nt-${id.slice(0, 8)}`;
  const path = await createNetns(ns);
  cleanups.push(() => deleteNetns(ns));
  const state = await setupPodNetwork(input(id, ns, path, extra));
  cleanups.push(() => teardownPodNetwork(state));
  return { id, ns, state };
}

/**
 * Runs busybox udhcpc in a client netns joined by a veth whose pod end stands in for the VM's
 * tap (named `tap`, wired by `wire`); returns udhcpc's env at "bound".
 */
async function dhcpClient(podNs: string, mac: string, tap: string, wire: () => Promise<unknown>, tries = 3, extra: string[] = []): Promise<Record<string, string> | undefined> {
  const r = rand();
  const cns = `vmlet-ntc-${r}`;
  const dir = tempDir('vmlet-udhcpc-');
  const script = join(dir, 'script.sh');
  writeFileSync(script, `#!/bin/sh\n[ "$1" = bound ] && env > ${dir}/bound.env\nexit 0\n`);
  chmodSync(script, 0o755);
  await execa('ip', ['netns', 'add', cns]);
  try {
    await execa('ip', ['link', 'add', `vc${r}`, 'type', 'veth', 'peer', 'name', tap]);
    await execa('ip', ['link', 'set', `vc${r}`, 'netns', cns]);
    await execa('ip', ['link', 'set', tap, 'netns', podNs]);
    await wire();
    await execa('ip', ['-n', cns, 'link', 'set', `vc${r}`, 'address', mac, 'up']);
    const res = await execa('ip', ['netns', 'exec', cns, 'busybox', 'udhcpc', '-i', `vc${r}`, '-f', '-n', '-q', '-t', String(tries), '-T', '1', ...extra, '-s', script], { reject: false });
    if (res.exitCode !== 0) return undefined;
    const env: Record<string, string> = {};
    for (const line of readFileSync(join(dir, 'bound.env'), 'utf8').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
    }
    return env;
  } finally {
    await execa('ip', ['-n', podNs, 'link', 'del', tap], { reject: false });
    await execa('ip', ['netns', 'del', cns], { reject: false });
  }
}

beforeAll(() => {
  conf = writeConf();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await execa('ip', ['link', 'del', BRIDGE], { reject: false });
});

describe('pod network: CNI ADD, wiring, DHCP, teardown', () => {
  it('moves the pod IP from eth0 to the VM side and serves it by DHCP to the VM MAC only', async () => {
    const { id, ns, state } = await newPod();
    const eth0Mac = (JSON.parse(await ipOut(['-n', ns, '-j', 'link', 'show', 'dev', 'eth0'])) as Array<{ address: string }>)[0]!.address;
    // The state: pod IP with prefix and gateway, MTU, MAC, names, and the raw CNI result.
    expect(state.ips).toHaveLength(1);
    expect(state.ips[0]!.address).toMatch(new RegExp(`^10\\.250\\.${octet}\\.\\d+$`));
    expect(state.ips).toEqual([{ family: 4, address: state.ips[0]!.address, prefix: 24, gateway: GATEWAY }]);
    expect(state.routes).toEqual([{ family: 4, dst: '0.0.0.0/0', gw: GATEWAY }]);
    expect(state.mtu).toBe(1500);
    // The guest carries eth0's own MAC (plugins that check source MACs pass its frames).
    expect(state.mac).toBe(eth0Mac);
    expect(state.tapMac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(state.tap).toBe(`vmt-${id.slice(0, 11)}`);
    expect((state.cni.result as { cniVersion: string }).cniVersion).toBe('1.0.0');
    expect(JSON.parse(JSON.stringify(state))).toEqual(state);
    expect(loadPodNetworkState(join(state.dhcp.conf, '..'))).toEqual(state);
    const podIp = state.ips[0]!.address;

    // In the netns: eth0 has no address at all (no IPv6 link-local either: the guest has its
    // MAC) and no bridge; no routes.
    const eth0 = JSON.parse(await ipOut(['-n', ns, '-j', 'addr', 'show', 'dev', 'eth0'])) as Array<{ master?: string; addr_info: Array<{ family: string }> }>;
    expect(eth0[0]!.master).toBeUndefined();
    expect(eth0[0]!.addr_info).toEqual([]);
    expect(await linkExists(ns, 'br0')).toBe(false);
    expect(await ipOut(['-n', ns, '-4', 'route', 'show'])).toBe('');
    // The wiring brought the netns' loopback up (createNetns leaves it down).
    expect(await ipOut(['-n', ns, 'link', 'show', 'dev', 'lo'])).toMatch(/<LOOPBACK,UP,LOWER_UP>/);

    // A real DHCP client with the VM's MAC, behind a stand-in tap wired as vmlet wires the VM's,
    // gets the full static lease.
    const wire = () => attachPodTap(state);
    const t0 = performance.now();
    const env = await dhcpClient(ns, state.mac, state.tap, wire);
    const dhcpMs = performance.now() - t0;
    expect(env).toMatchObject({
      ip: podIp,
      subnet: '255.255.255.0',
      router: GATEWAY,
      dns: '10.96.0.10',
      search: 'default.svc.cluster.local svc.cluster.local',
      domain: 'default.svc.cluster.local',
      hostname: 'web-0',
      mtu: '1500',
      serverid: '169.254.75.10',
      lease: '4294967295', // infinite
    });
    console.log(`udhcpc in a client netns: lease after ${Math.round(dhcpMs)} ms (includes veth + netns setup)`);
    // Any other MAC gets no answer.
    expect(await dhcpClient(ns, '02:00:00:00:00:01', state.tap, wire, 2)).toBeUndefined();

    // vmlet restart: a killed dnsmasq is started again, a live one is kept.
    const pid = dhcpPid(state.dhcp, ns)!;
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGKILL');
    await waitFor('dnsmasq gone', () => !dhcpRunning(state));
    expect(await reattachPodNetwork(state, { log })).toEqual({ dhcp: 'restarted', tap: 'absent' });
    expect(await reattachPodNetwork(state, { log })).toEqual({ dhcp: 'running', tap: 'absent' });
    expect((await dhcpClient(ns, state.mac, state.tap, wire))?.ip).toBe(podIp);

    // Teardown: DHCP stopped, eth0 gone, IP released; twice is fine.
    await teardownPodNetwork(state, { log });
    expect(dhcpRunning(state)).toBe(false);
    expect(await linkExists(ns, 'eth0')).toBe(false);
    expect(readdirSync(join(conf.ipamDir, state.cni.network))).not.toContain(podIp);
    await teardownPodNetwork(state, { log });
  });

  it('tears down idempotently after the netns is already gone (CNI_NETNS empty)', async () => {
    const { ns, state } = await newPod({
      portMappings: [{ protocol: 'TCP', container_port: 80, host_port: 20000 + (randomBytes(2).readUInt16BE() % 20000), host_ip: '' }],
    });
    const podIp = state.ips[0]!.address;
    expect((await execa('iptables', ['-t', 'nat', '-S'])).stdout).toContain(state.sandboxId);
    await deleteNetns(ns);
    await teardownPodNetwork(state, { log });
    await teardownPodNetwork(state, { log });
    expect(dhcpRunning(state)).toBe(false);
    expect(readdirSync(join(conf.ipamDir, state.cni.network))).not.toContain(podIp);
    expect((await execa('iptables', ['-t', 'nat', '-S'])).stdout).not.toContain(state.sandboxId);
  });

  it('undoes CNI ADD and the wiring when a later step of setup fails', async () => {
    const id = `${rand()}${randomBytes(10).toString('hex')}`;
    const ns = `vmlet-nt-${id.slice(0, 8)}`;
    const path = await createNetns(ns);
    cleanups.push(() => deleteNetns(ns));
    // A state dir dnsmasq cannot take (a comma): DHCP start fails after CNI ADD and wiring.
    const stateDir = join(tempDir('vmlet-netstate-'), 'a,b');
    mkdirSync(stateDir);
    await expect(setupPodNetwork(input(id, ns, path, { stateDir }))).rejects.toThrow(/pod network setup failed: dnsmasq cannot take the path/);
    expect(await linkExists(ns, 'eth0')).toBe(false);
    const used = readdirSync(join(conf.ipamDir, `vmlet-net-test-${BRIDGE}`)).filter((f) => f.startsWith('10.250.'));
    expect(used).toEqual([]);
  });

  it('keeps a pod wired by an older vmlet (state version 1: bridge br0 in the netns) working across a restart', async () => {
    const { ns, state } = await newPod();
    const podIp = state.ips[0]!.address;
    // Rewire as vmlet 0.1 did: eth0 and the tap on br0 (169.254.75.10/32), dnsmasq on br0, the
    // guest on a MAC of its own.
    await stopDhcp(state.dhcp);
    await execa('ip', ['-n', ns, '-batch', '-'], {
      input: ['link add br0 type bridge stp_state 0 forward_delay 0', 'link set eth0 master br0', 'addr add 169.254.75.10/32 dev br0', 'link set br0 up'].join('\n') + '\n',
    });
    const legacy: PodNetworkState = { ...state, version: 1, bridge: 'br0', mac: '02:aa:00:00:00:01' };
    delete legacy.link;
    delete legacy.tapMac;
    writeFileSync(legacy.dhcp.conf, readFileSync(legacy.dhcp.conf, 'utf8')
      .replace(`interface=${state.tap}`, 'interface=br0').replace('bind-dynamic', 'bind-interfaces')
      .replace('shared-network=169.254.75.10,', 'shared-network=br0,').replace(state.mac, legacy.mac));
    // vmlet starts: dnsmasq again from its config; the tap (here a veth standing in) joins br0.
    expect((await reattachPodNetwork(legacy, { log })).dhcp).toBe('restarted');
    const env = await dhcpClient(ns, legacy.mac, legacy.tap, async () => {
      expect(await attachPodTap(legacy)).toBe('attached');
      expect(await ipOut(['-n', ns, 'link', 'show', 'dev', legacy.tap])).toContain('master br0');
    });
    expect(env?.ip).toBe(podIp);
    await teardownPodNetwork(legacy, { log });
    expect(await linkExists(ns, 'br0')).toBe(false);
    expect(readdirSync(join(conf.ipamDir, state.cni.network))).not.toContain(podIp);
  });

  it('serves a /32 pod IP with an off-link gateway (Calico style) through classless static routes', async () => {
    const ns = `vmlet-nt-${rand()}`;
    await createNetns(ns);
    cleanups.push(() => deleteNetns(ns));
    const files = dhcpFiles(tempDir('vmlet-netstate-'));
    cleanups.push(() => stopDhcp(files));
    const mac = '02:11:22:33:44:55';
    const tap = `vmt-${rand()}`;
    // dnsmasq starts before its interface exists, as it does before the VM's first tap.
    await startDhcp(ns, {
      iface: tap, mac, ip: `10.250.${octet}.77`, prefix: 32, gateway: '169.254.1.1', serverAddress: '169.254.75.10',
      routes: [{ dst: '169.254.1.1/32' }, { dst: '0.0.0.0/0', gw: '169.254.1.1' }], dnsServers: [], searches: [], mtu: 1450,
    }, files);
    const wire = async () => {
      await execa('ip', ['-n', ns, 'addr', 'add', '169.254.75.10/32', 'dev', tap]);
      await execa('ip', ['-n', ns, 'link', 'set', tap, 'up']);
    };
    const env = await dhcpClient(ns, mac, tap, wire, 3, ['-O', 'staticroutes']);
    expect(env).toMatchObject({
      ip: `10.250.${octet}.77`, subnet: '255.255.255.255', router: '169.254.1.1', mtu: '1450', serverid: '169.254.75.10',
      staticroutes: '169.254.1.1/32 0.0.0.0 0.0.0.0/0 169.254.1.1',
    });
    await stopDhcp(files);
    expect(dhcpPid(files)).toBeUndefined();
  });

  it('setupPodNetwork takes well under a second (median of 5)', async () => {
    const times: number[] = [];
    for (let n = 0; n < 5; n++) {
      const id = `${rand()}${randomBytes(10).toString('hex')}`;
      const ns = `vmlet-nt-${id.slice(0, 8)}`;
      const path = await createNetns(ns);
      const t0 = performance.now();
      const state = await setupPodNetwork(input(id, ns, path));
      times.push(performance.now() - t0);
      const t1 = performance.now();
      await teardownPodNetwork(state, { log });
      times.push(-(performance.now() - t1)); // teardown, kept apart below
      await deleteNetns(ns);
    }
    const setup = times.filter((t) => t > 0).sort((a, b) => a - b);
    const teardown = times.filter((t) => t < 0).map((t) => -t).sort((a, b) => a - b);
    console.log(`setupPodNetwork: median ${Math.round(setup[2]!)} ms (${setup.map(Math.round).join(', ')}); teardownPodNetwork: median ${Math.round(teardown[2]!)} ms`);
    expect(setup[2]!).toBeLessThan(1000);
  });
});

// ---------------------------------------------------------------------------------- the VM

const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
afterAll(async () => {
  await lv.close();
});

/** GET / over plain TCP; resolves with the body. */
function httpGet(host: string, port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = connect({ host, port }, () => s.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
    const t = setTimeout(() => s.destroy(new Error('timeout')), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (buf += d));
    s.on('end', () => {
      clearTimeout(t);
      resolve(buf.slice(buf.indexOf('\r\n\r\n') + 4));
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

async function pingOnce(ip: string): Promise<boolean> {
  const cmd = (await execa('sh', ['-c', 'command -v ping'], { reject: false })).exitCode === 0 ? ['ping'] : ['busybox', 'ping'];
  return (await execa(cmd[0]!, [...cmd.slice(1), '-c', '1', '-W', '2', ip], { reject: false })).exitCode === 0;
}

describe('pod network: a real guest through libvirt', () => {
  it('boots the test guest on the pod network: DHCP gives it the pod IP, ping and a hostPort reach it, teardown cleans up', async () => {
    const hostPort = 20000 + (randomBytes(2).readUInt16BE() % 20000);
    const { ns, state } = await newPod({ portMappings: [{ protocol: 'TCP', container_port: 80, host_port: hostPort, host_ip: '' }] });
    const podIp = state.ips[0]!.address;
    const name = `vmlet-test-net-${rand()}`;
    cleanups.push(async () => {
      await lv.destroyDomain(name).catch(() => undefined);
      await lv.undefineDomain(name).catch(() => undefined);
    });
    const consoleLog = join(tempDir('vmlet-netvm-'), 'console.log');
    const accel = decideAccel('auto', probeHost());
    // on_reboot=restart (the helper's default is destroy, i.e. QEMU -no-reboot) for the reset below.
    const xml = kernelGuestXml({ name, guest: kernelGuest(), domainType: accel.domainType, consoleLog })
      .replace('<memballoon', `${nicXml(state).join('\n')}\n    <memballoon`)
      .replace('<on_reboot>destroy</on_reboot>', '<on_reboot>restart</on_reboot>');
    await lv.defineDomain(xml);
    const t0 = performance.now();
    await lv.startDomain(name);
    const tStarted = performance.now();
    // As StartContainer does: `fresh`, the one-process path (the tap is in the host netns).
    expect(await attachPodTap(state, { fresh: true })).toBe('moved');
    const tTap = performance.now();
    // `fresh` on a tap already in the pod netns: the one-process path fails, the checked one finds it wired.
    expect(await attachPodTap(state, { fresh: true })).toBe('attached');
    expect(await linkExists(undefined, state.tap)).toBe(false);
    const tapLink = await ipOut(['-n', ns, 'link', 'show', 'dev', state.tap]);
    expect(tapLink).not.toContain('master');
    expect(tapLink).toContain(`mtu ${state.mtu}`);
    expect((await execa('tc', ['-n', ns, 'filter', 'show', 'dev', 'eth0', 'ingress'])).stdout).toContain(`Redirect to device ${state.tap})`);
    // vmlet stopped half-way through the wiring (the tap's own redirect missing): the next
    // attach, as at vmlet's start, puts it back; the guest's DHCP below proves the whole path.
    await execa('tc', ['-n', ns, 'qdisc', 'del', 'dev', state.tap, 'ingress']);
    expect(await attachPodTap(state)).toBe('attached');
    expect((await execa('tc', ['-n', ns, 'filter', 'show', 'dev', state.tap, 'ingress'])).stdout).toContain('Redirect to device eth0)');

    const console_ = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
    let tReady = 0;
    await waitFor(`VMLET-DHCP eth0 ${podIp} on the console`, () => {
      const c = console_();
      if (!tReady && c.includes(READY_MARKER)) tReady = performance.now();
      return c.includes(`VMLET-DHCP eth0 ${podIp}`);
    }, { timeoutMs: 90_000, intervalMs: 20 });
    const tLease = performance.now();
    console.log(
      `guest on the pod network (${accel.accel}): startDomain ${Math.round(tStarted - t0)} ms, tap moved+plugged ${Math.round(tTap - tStarted)} ms later; ` +
        `domain start → ${READY_MARKER} ${tReady ? ((tReady - t0) / 1000).toFixed(2) : '?'} s, → DHCP lease in the guest ${((tLease - t0) / 1000).toFixed(2)} s`,
    );
    expect(readFileSync(state.dhcp.log, 'utf8')).toMatch(new RegExp(`DHCPACK\\(${state.tap}\\) ${podIp.replace(/\./g, '\\.')} ${state.mac} web-0`));

    // Host netns → pod IP: the CNI bridge on the host holds the gateway address.
    expect(await pingOnce(podIp)).toBe(true);

    // What the guest's DHCP client saw (the test guest prints it): router, DNS, search, hostname, MTU.
    expect(console_()).toContain(
      `VMLET-DHCP eth0 ${podIp} router=${GATEWAY} dns=10.96.0.10 search=default.svc.cluster.local,svc.cluster.local hostname=web-0 mtu=1500`,
    );

    // hostPort → portmap's DNAT → the guest's httpd on :80 (it answers "vmlet-guest <hostname>",
    // the hostname the guest took from the lease).
    await waitFor('VMLET-HTTPD 80 on the console', () => console_().includes('VMLET-HTTPD 80'), { timeoutMs: 60_000 });
    expect((await execa('iptables', ['-t', 'nat', '-S'])).stdout).toMatch(new RegExp(`--dport ${hostPort} -j DNAT --to-destination ${podIp.replace(/\./g, '\\.')}:80`));
    const body = await waitFor(`HTTP ${GATEWAY}:${hostPort} → guest :80`, async () => {
      const r = await httpGet(GATEWAY, hostPort);
      return r.includes('vmlet-guest') ? r : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    expect(body.trim()).toBe('vmlet-guest web-0');
    // The guest's own address answers too (no NAT).
    expect((await httpGet(podIp, 80)).trim()).toBe('vmlet-guest web-0');

    // vmlet restart while the VM runs: DHCP and tap are found in place.
    expect(await reattachPodNetwork(state, { log })).toEqual({ dhcp: 'running', tap: 'attached' });

    // A guest reset keeps the QEMU process, so its tap stays in the pod netns: DHCP works again.
    const tReset = performance.now();
    await execa('virsh', ['-c', 'qemu:///system', 'reset', name]);
    await waitFor('a second DHCP lease after reset', () => console_().split(`VMLET-DHCP eth0 ${podIp}`).length > 2, { timeoutMs: 90_000, intervalMs: 20 });
    console.log(`guest reset → DHCP lease again: ${((performance.now() - tReset) / 1000).toFixed(2)} s, no re-attach needed`);
    expect(await linkExists(ns, state.tap)).toBe(true);

    // Stop the VM (QEMU takes its tap along), then tear the network down; twice, then without netns.
    await lv.destroyDomain(name);
    expect(await linkExists(ns, state.tap)).toBe(false);
    expect(await linkExists(undefined, state.tap)).toBe(false);
    await teardownPodNetwork(state, { log });
    expect(dhcpRunning(state)).toBe(false);
    expect(await pingOnce(podIp)).toBe(false);
    expect((await execa('iptables', ['-t', 'nat', '-S'])).stdout).not.toContain(state.sandboxId);
    await teardownPodNetwork(state, { log });
    await deleteNetns(ns);
    await teardownPodNetwork(state, { log });
    await lv.undefineDomain(name);
  });
});
