// CNI invocation: result parsing (0.2.0 / 0.4.0 / 1.0.0), CNI_ARGS, runtimeConfig injection by
// capability, prevResult chaining, DEL order, plugin error JSON and the per-plugin deadline.
// The plugins here are small shell scripts that record what they were given.
import { describe, expect, it } from 'vitest';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cniAdd,
  cniArgs,
  cniCheck,
  cniDel,
  checkPortMappings,
  cniPortMappings,
  CniPluginError,
  parseCniResult,
  parseConfList,
  pluginConfig,
  sandboxIps,
  type CniAttachment,
  type CniConfList,
} from '../../src/net/cni.js';
import { macFromId, isMac } from '../../src/net/mac.js';
import { classlessRoutes, dnsmasqConf, type DhcpLease } from '../../src/net/dhcp.js';
import { linkLocalFromMac, servedIpv6Prefixes, tapCommands, tapName } from '../../src/net/tap.js';
import { ipv6Network, prefixToNetmask } from '../../src/net/ip-math.js';
import { networkCidr } from '../../src/net/pod-network.js';
import { tempDir } from '../helpers/vmlet.js';

const RESULT_100 = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'cni0', mac: '1a:95:bc:35:80:63' },
    { name: 'veth1', mac: '96:36:f2:19:59:10' },
    { name: 'eth0', mac: 'a2:0d:23:33:c1:36', sandbox: '/run/netns/x', mtu: 1450 },
  ],
  ips: [
    { interface: 2, address: '10.250.9.2/24', gateway: '10.250.9.1' },
    { interface: 2, address: 'fd00:250::2/64', gateway: 'fd00:250::1' },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.250.9.1' }, { dst: '10.96.0.0/12' }],
  dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] },
};

const RESULT_040 = {
  cniVersion: '0.4.0',
  interfaces: [{ name: 'eth0', mac: 'a2:0d:23:33:c1:36', sandbox: '/run/netns/x' }],
  ips: [{ version: '4', interface: 0, address: '10.250.9.3/24', gateway: '10.250.9.1' }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

describe('CNI result parsing', () => {
  it('parses a 1.0.0 result: interfaces, ips with interface index, routes, dns', () => {
    const r = parseCniResult(RESULT_100);
    expect(r.cniVersion).toBe('1.0.0');
    expect(r.interfaces[2]).toEqual({ name: 'eth0', mac: 'a2:0d:23:33:c1:36', sandbox: '/run/netns/x', mtu: 1450 });
    expect(r.ips).toEqual([
      { family: 4, address: '10.250.9.2', prefix: 24, gateway: '10.250.9.1', interface: 2 },
      { family: 6, address: 'fd00:250::2', prefix: 64, gateway: 'fd00:250::1', interface: 2 },
    ]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.250.9.1' }, { dst: '10.96.0.0/12' }]);
    expect(r.dns).toEqual({ nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] });
    expect(sandboxIps(r, 'eth0')).toHaveLength(2);
    expect(sandboxIps(r, 'net1')).toHaveLength(0);
  });

  it('parses a 0.4.0 result (ips carry "version") and a 0.2.0 one (ip4/ip6)', () => {
    const r = parseCniResult(RESULT_040);
    expect(r.ips).toEqual([{ family: 4, address: '10.250.9.3', prefix: 24, gateway: '10.250.9.1', interface: 0 }]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(r.dns).toEqual({ nameservers: [], search: [], options: [] });
    const old = parseCniResult({ cniVersion: '0.2.0', ip4: { ip: '10.1.2.3/16', gateway: '10.1.0.1', routes: [{ dst: '0.0.0.0/0' }] }, dns: { nameservers: ['1.1.1.1'] } });
    expect(old.ips).toEqual([{ family: 4, address: '10.1.2.3', prefix: 16, gateway: '10.1.0.1' }]);
    expect(old.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(old.dns.nameservers).toEqual(['1.1.1.1']);
  });

  it('rejects malformed results with the field named', () => {
    expect(() => parseCniResult('x')).toThrow(/not a JSON object/);
    expect(() => parseCniResult({ cniVersion: '1.0.0', ips: [{ address: 'nope/24' }] })).toThrow(/ips\[0\]\.address/);
    expect(() => parseCniResult({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/33' }] })).toThrow(/prefix/);
    expect(() => parseCniResult({ cniVersion: '1.0.0', interfaces: [], ips: [{ address: '10.0.0.2/24', interface: 3 }] })).toThrow(/interface: index 3/);
    expect(() => parseCniResult({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: 'fd00::1' }] })).toThrow(/not an IPv4/);
    expect(() => parseCniResult({ cniVersion: '1.0.0', routes: [{ dst: 'x' }] })).toThrow(/routes\[0\]\.dst/);
  });
});

describe('CNI plugin config', () => {
  it('builds CNI_ARGS like the kubelet runtimes', () => {
    expect(cniArgs({ namespace: 'default', name: 'web-0', sandboxId: 'abc123', uid: 'u-1' })).toBe(
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1',
    );
  });

  it('maps CRI port mappings, skipping those without a host port', () => {
    expect(
      cniPortMappings([
        { protocol: 'TCP', container_port: 80, host_port: 8080, host_ip: '' },
        { protocol: 'UDP', container_port: 53, host_port: 5353, host_ip: '127.0.0.1' },
        { protocol: 'SCTP', container_port: 9, host_port: 0 },
        { protocol: 2, container_port: 7, host_port: 7007 },
      ]),
    ).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
      { hostPort: 7007, containerPort: 7, protocol: 'sctp' },
    ]);
  });

  it('refuses port mappings the portmap plugin cannot program, naming the field (found by the CRI fuzz)', () => {
    expect(() => checkPortMappings([{ protocol: 'TCP', container_port: 80, host_port: 8080 }, { container_port: -5, host_port: 0 }])).not.toThrow();
    expect(() => checkPortMappings([{ container_port: -2147483648, host_port: 80 }])).toThrow(/config\.port_mappings\[0\]\.container_port is -2147483648: it must be 1-65535/);
    expect(() => checkPortMappings([{ container_port: 80, host_port: 70000 }])).toThrow(/port_mappings\[0\]\.host_port is 70000/);
    expect(() => checkPortMappings([{ container_port: 80, host_port: -1 }])).toThrow(/host_port is -1/);
    expect(() => checkPortMappings([{ protocol: 77, container_port: 80, host_port: 80 }])).toThrow(/protocol is 77: it must be TCP, UDP or SCTP/);
    expect(() => checkPortMappings([{ container_port: 80, host_port: 80, host_ip: 'xx' }])).toThrow(/host_ip "xx" is not an IP address/);
  });

  it('injects name, cniVersion, prevResult, and runtimeConfig only for declared capabilities', () => {
    const list = { name: 'net', cniVersion: '1.0.0' };
    const rc = { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' as const }], dns: { servers: ['10.96.0.10'] }, bandwidth: undefined };
    const portmap = pluginConfig(list, { type: 'portmap', capabilities: { portMappings: true, bandwidth: true } }, rc, { cniVersion: '1.0.0' });
    expect(portmap).toEqual({
      type: 'portmap',
      capabilities: { portMappings: true, bandwidth: true },
      name: 'net',
      cniVersion: '1.0.0',
      runtimeConfig: { portMappings: rc.portMappings },
      prevResult: { cniVersion: '1.0.0' },
    });
    const bridge = pluginConfig(list, { type: 'bridge', name: 'ignored', cniVersion: '0.3.1' }, rc);
    expect(bridge).toEqual({ type: 'bridge', name: 'net', cniVersion: '1.0.0' });
    const empty = pluginConfig(list, { type: 'portmap', capabilities: { portMappings: true } }, { portMappings: [] });
    expect(empty).not.toHaveProperty('runtimeConfig');
    const dns = pluginConfig(list, { type: 'x', capabilities: { dns: true } }, rc);
    expect(dns.runtimeConfig).toEqual({ dns: { servers: ['10.96.0.10'] } });
  });

  it('wraps a single-plugin .conf into a list', () => {
    const l = parseConfList('a.conf', '{"cniVersion":"0.4.0","name":"n","type":"bridge","bridge":"b0"}');
    expect(l).toEqual({ file: 'a.conf', name: 'n', cniVersion: '0.4.0', plugins: [{ cniVersion: '0.4.0', name: 'n', type: 'bridge', bridge: 'b0' }] });
  });
});

// --- fake plugins ------------------------------------------------------------------------

/** A plugin that records env + stdin into $LOGDIR/<seq>-<name>-<command>.json and prints a result. */
function recorder(dir: string, name: string, logDir: string, result: object | null): void {
  const out = result === null ? '' : JSON.stringify(result).replace(/'/g, "'\\''");
  writeFileSync(
    join(dir, name),
    `#!/bin/sh
n=$(ls '${logDir}' | wc -l)
f='${logDir}'/$(printf %02d $n)-${name}-$CNI_COMMAND
cat > "$f.stdin"
env | grep ^CNI_ | sort > "$f.env"
if [ "$CNI_COMMAND" = ADD ]; then printf '%s' '${out}'; fi
exit 0
`,
  );
  chmodSync(join(dir, name), 0o755);
}

function script(dir: string, name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(dir, name), 0o755);
}

const att = (over: Partial<CniAttachment> = {}): CniAttachment => ({
  containerId: 'sb1',
  netns: '/run/netns/vmlet-sb1',
  ifName: 'eth0',
  args: cniArgs({ namespace: 'ns1', name: 'pod1', sandboxId: 'sb1', uid: 'uid-1' }),
  runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
  ...over,
});

describe('CNI plugin chain', () => {
  it('ADD runs plugins in order with env and prevResult; DEL runs in reverse with the ADD result', async () => {
    const bin = tempDir('vmlet-cnibin-');
    const logDir = tempDir('vmlet-cnilog-');
    recorder(bin, 'first', logDir, RESULT_040);
    recorder(bin, 'second', logDir, { ...RESULT_040, dns: { nameservers: ['10.96.0.10'] } });
    const list: CniConfList = {
      file: 'x.conflist',
      name: 'chain',
      cniVersion: '0.4.0',
      plugins: [{ type: 'first', foo: 1 }, { type: 'second', capabilities: { portMappings: true } }],
    };
    const added = await cniAdd(list, att(), { binDirs: ['/nonexistent', bin] });
    expect(added.result.dns.nameservers).toEqual(['10.96.0.10']); // the last plugin's result wins
    await cniDel(list, att(), added.raw, { binDirs: [bin] });
    await cniCheck(list, att(), added.raw, { binDirs: [bin] });

    const files = readdirSync(logDir).filter((f) => f.endsWith('.stdin')).sort();
    expect(files).toEqual([
      '00-first-ADD.stdin', '02-second-ADD.stdin', '04-second-DEL.stdin', '06-first-DEL.stdin', '08-first-CHECK.stdin', '10-second-CHECK.stdin',
    ]);
    const stdin = (f: string) => JSON.parse(readFileSync(join(logDir, f), 'utf8')) as Record<string, unknown>;
    const env = (f: string) => readFileSync(join(logDir, f.replace('.stdin', '.env')), 'utf8');
    expect(stdin('00-first-ADD.stdin')).toEqual({ type: 'first', foo: 1, name: 'chain', cniVersion: '0.4.0' });
    expect(stdin('02-second-ADD.stdin')).toEqual({
      type: 'second', capabilities: { portMappings: true }, name: 'chain', cniVersion: '0.4.0',
      runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
      prevResult: RESULT_040,
    });
    expect(stdin('04-second-DEL.stdin').prevResult).toEqual(added.raw);
    expect(stdin('06-first-DEL.stdin').prevResult).toEqual(added.raw);
    expect(stdin('08-first-CHECK.stdin').prevResult).toEqual(added.raw);
    expect(env('00-first-ADD.stdin')).toBe(
      [
        'CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1',
        'CNI_COMMAND=ADD',
        'CNI_CONTAINERID=sb1',
        'CNI_IFNAME=eth0',
        'CNI_NETNS=/run/netns/vmlet-sb1',
        `CNI_PATH=/nonexistent:${bin}`,
        '',
      ].join('\n'),
    );
  });

  it('DEL before 0.4.0 has no prevResult; DEL with the netns gone passes an empty CNI_NETNS', async () => {
    const bin = tempDir('vmlet-cnibin-');
    const logDir = tempDir('vmlet-cnilog-');
    recorder(bin, 'p', logDir, null);
    const list: CniConfList = { file: 'x', name: 'old', cniVersion: '0.3.1', plugins: [{ type: 'p' }] };
    await cniDel(list, att({ netns: '' }), RESULT_040, { binDirs: [bin] });
    const f = readdirSync(logDir).find((x) => x.endsWith('.stdin'))!;
    expect(JSON.parse(readFileSync(join(logDir, f), 'utf8'))).not.toHaveProperty('prevResult');
    expect(readFileSync(join(logDir, f.replace('.stdin', '.env')), 'utf8')).toMatch(/^CNI_NETNS=$/m);
    await expect(cniCheck(list, att(), RESULT_040, { binDirs: [bin] })).rejects.toThrow(/CHECK needs 0\.4\.0/);
  });

  it("turns a plugin's error JSON into a message naming the plugin and network", async () => {
    const bin = tempDir('vmlet-cnibin-');
    script(bin, 'bad', `cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate for range 0","details":"no IP addresses available in range set: 10.250.9.2-10.250.9.2"}'; exit 1`);
    const list: CniConfList = { file: 'x', name: 'errnet', cniVersion: '1.0.0', plugins: [{ type: 'bad' }] };
    const err = await cniAdd(list, att(), { binDirs: [bin] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniPluginError);
    const e = err as CniPluginError;
    expect(e.plugin).toBe('bad');
    expect(e.code).toBe(11);
    expect(e.message).toBe(
      'CNI plugin "bad" (network "errnet") ADD failed: failed to allocate for range 0 (no IP addresses available in range set: 10.250.9.2-10.250.9.2) [CNI error code 11] (exit code 1)',
    );
    // Plain text on stderr, no JSON: still a clear message.
    script(bin, 'crash', 'cat >/dev/null; echo "panic: boom" >&2; exit 2');
    await expect(cniAdd({ ...list, plugins: [{ type: 'crash' }] }, att(), { binDirs: [bin] })).rejects.toThrow(
      'CNI plugin "crash" (network "errnet") ADD failed: panic: boom (exit code 2)',
    );
    await expect(cniAdd({ ...list, plugins: [{ type: 'missing' }] }, att(), { binDirs: [bin] })).rejects.toThrow(/plugin "missing" of network "errnet" \(x\) not found/);
  });

  it('DEL runs every plugin even when one fails, then reports the first failure', async () => {
    const bin = tempDir('vmlet-cnibin-');
    const logDir = tempDir('vmlet-cnilog-');
    recorder(bin, 'ok', logDir, null);
    script(bin, 'bad', `cat >/dev/null; echo '{"code":100,"msg":"nope"}'; exit 1`);
    const list: CniConfList = { file: 'x', name: 'n', cniVersion: '1.0.0', plugins: [{ type: 'ok' }, { type: 'bad' }] };
    await expect(cniDel(list, att(), RESULT_100, { binDirs: [bin] })).rejects.toThrow(/"bad".*DEL failed: nope/);
    expect(readdirSync(logDir).some((f) => f.includes('-ok-DEL'))).toBe(true);
  });

  it('kills a plugin that overruns its deadline', async () => {
    const bin = tempDir('vmlet-cnibin-');
    script(bin, 'slow', 'exec sleep 3600'); // outlives the test: only the deadline ends the call
    const list: CniConfList = { file: 'x', name: 'n', cniVersion: '1.0.0', plugins: [{ type: 'slow' }] };
    await expect(cniAdd(list, att(), { binDirs: [bin], timeoutMs: 300 })).rejects.toThrow('CNI plugin "slow" (network "n") ADD timed out after 300 ms');
  });
});

describe('VM NIC and DHCP config', () => {
  it('derives a stable, locally administered unicast MAC and a tap name that fits IFNAMSIZ', () => {
    const mac = macFromId('4f9a1c2e0b7d4c1e9a8b7c6d5e4f3a2b');
    expect(isMac(mac)).toBe(true);
    expect(mac.startsWith('02:')).toBe(true);
    expect(macFromId('4f9a1c2e0b7d4c1e9a8b7c6d5e4f3a2b')).toBe(mac);
    expect(macFromId('other')).not.toBe(mac);
    expect(tapName('4f9a1c2e0b7d4c1e9a8b')).toBe('vmt-4f9a1c2e0b7');
    expect(tapName('4f9a1c2e0b7d4c1e9a8b').length).toBeLessThanOrEqual(15);
  });

  const lease: DhcpLease = {
    iface: 'vmt-4f9a1c2e0b7', mac: '02:aa:bb:cc:dd:ee', ip: '10.250.9.2', prefix: 24, gateway: '10.250.9.1', routes: [{ dst: '0.0.0.0/0', gw: '10.250.9.1' }],
    hostname: 'web-0', dnsServers: ['10.96.0.10', 'fd00::10'], searches: ['default.svc.cluster.local', 'svc.cluster.local', 'bad_domain!'], mtu: 1450,
    serverAddress: '169.254.75.10',
  };
  const files = { conf: '/s/dnsmasq.conf', pid: '/s/dnsmasq.pid', log: '/s/dnsmasq.log' };

  it('writes a dnsmasq config with a static lease for the VM only', () => {
    const conf = dnsmasqConf(lease, files).split('\n');
    for (const l of [
      'port=0', 'interface=vmt-4f9a1c2e0b7', 'bind-dynamic', 'dhcp-authoritative', 'leasefile-ro', 'no-ping',
      'shared-network=169.254.75.10,10.250.9.2', 'dhcp-range=10.250.9.2,static,255.255.255.0',
      'dhcp-host=02:aa:bb:cc:dd:ee,10.250.9.2,web-0,infinite', 'dhcp-ignore=tag:!known',
      'dhcp-option=option:router,10.250.9.1', 'dhcp-option=option:dns-server,10.96.0.10',
      'dhcp-option-force=option:domain-search,default.svc.cluster.local,svc.cluster.local',
      'dhcp-option-force=option:mtu,1450', 'pid-file=/s/dnsmasq.pid', 'log-facility=/s/dnsmasq.log',
    ]) expect(conf).toContain(l);
    expect(conf.some((l) => l.includes('classless'))).toBe(false);
    // IPv4 only: no RA, no DHCPv6.
    expect(conf.some((l) => l.includes('enable-ra') || l.includes('option6'))).toBe(false);
    expect(prefixToNetmask(32)).toBe('255.255.255.255');
    expect(prefixToNetmask(0)).toBe('0.0.0.0');
    expect(prefixToNetmask(20)).toBe('255.255.240.0');
  });

  it('adds classless static routes when there are extra routes or the gateway is off-link', () => {
    expect(classlessRoutes({ ...lease, routes: [...lease.routes, { dst: '10.96.0.0/12' }] })).toEqual([
      { dst: '10.96.0.0/12' }, { dst: '0.0.0.0/0', gw: '10.250.9.1' },
    ]);
    // Calico-style: /32 pod IP, gateway 169.254.1.1 reached on-link.
    const calico = { ...lease, ip: '10.1.2.3', prefix: 32, gateway: '169.254.1.1', routes: [{ dst: '169.254.1.1/32' }, { dst: '0.0.0.0/0', gw: '169.254.1.1' }] };
    expect(classlessRoutes(calico)).toEqual([{ dst: '169.254.1.1/32' }, { dst: '0.0.0.0/0', gw: '169.254.1.1' }]);
    expect(dnsmasqConf(calico, files)).toContain('dhcp-option-force=option:classless-static-route,169.254.1.1/32,0.0.0.0,0.0.0.0/0,169.254.1.1\n');
  });

  it('serves IPv6 by DHCPv6 with RAs that announce the prefix but no default router', () => {
    const conf = dnsmasqConf({ ...lease, ipv6: { address: 'fd00:10:89::5', prefix: 64 } }, files).split('\n');
    for (const l of [
      'dhcp-host=02:aa:bb:cc:dd:ee,10.250.9.2,[fd00:10:89::5],web-0,infinite',
      'dhcp-range=fd00:10:89::5,static,64,infinite',
      'enable-ra',
      'ra-param=vmt-4f9a1c2e0b7,mtu:1450,60,0',
      'dhcp-option=option6:dns-server,[fd00::10]',
      'dhcp-option=option6:domain-search,default.svc.cluster.local,svc.cluster.local',
    ]) expect(conf).toContain(l);
    // IPv6 only: no IPv4 lines at all.
    const v6only = dnsmasqConf({ ...lease, ip: undefined, gateway: undefined, ipv6: { address: 'fd00:10:89::5', prefix: 64 } }, files).split('\n');
    expect(v6only).toContain('dhcp-host=02:aa:bb:cc:dd:ee,[fd00:10:89::5],web-0,infinite');
    expect(v6only.some((l) => l.startsWith('shared-network') || l.startsWith('dhcp-option=option:'))).toBe(false);
    expect(() => dnsmasqConf({ ...lease, ip: undefined }, files)).toThrow(/no IP address/);
  });
});

describe('tap wiring (tc redirects)', () => {
  const base = { netnsName: 'vmlet-x', ifName: 'eth0', tap: 'vmt-abc', tapMac: '02:11:22:33:44:55' };

  it('redirects eth0 to the tap and the tap to eth0, except frames for the pod itself (DHCP, its MAC)', () => {
    const c = tapCommands({ ...base, ips: [{ family: 4, address: '10.89.0.2', prefix: 16, gateway: '10.89.0.1' }] });
    expect(c.ip).toEqual([
      'link set vmt-abc down',
      'link set vmt-abc address 02:11:22:33:44:55 addrgenmode none',
      'addr replace 169.254.75.10/32 dev vmt-abc',
      'link set vmt-abc up',
    ]);
    expect(c.tc[0]).toBe('qdisc replace dev eth0 ingress');
    expect(c.tc[1]).toMatch(/^filter replace dev eth0 parent ffff: prio 1 handle 800::800 protocol all u32 match u32 0 0 action mirred egress redirect dev vmt-abc$/);
    const tapRules = c.tc.filter((l) => l.startsWith('filter add dev vmt-abc'));
    expect(tapRules.map((l) => /prio (\d+)/.exec(l)![1])).toEqual(['1', '2', '9']);
    expect(tapRules[0]).toContain('match ether dst 02:11:22:33:44:55 flowid ffff:1');
    expect(tapRules[1]).toContain('protocol ip u32 match ip protocol 17 0xff match ip dport 67 0xffff flowid ffff:1');
    expect(tapRules[2]).toMatch(/match u32 0 0 action mirred egress redirect dev eth0$/);
  });

  it('adds a link-local, the prefix and the RS/DHCPv6 exceptions when the pod has IPv6', () => {
    const c = tapCommands({ ...base, ips: [{ family: 4, address: '10.89.0.2', prefix: 16 }, { family: 6, address: 'fd00:10:89::5', prefix: 64 }] });
    expect(c.ip).toContain('addr replace fe80::11:22ff:fe33:4455/64 dev vmt-abc nodad');
    expect(c.ip).toContain('addr replace fd00:10:89::/64 dev vmt-abc nodad noprefixroute');
    expect(c.tc.some((l) => l.includes('match ip6 protocol 58 0xff match u8 133 0xff at 40'))).toBe(true);
    expect(c.tc.some((l) => l.includes('match ip6 protocol 17 0xff match ip6 dport 547 0xffff'))).toBe(true);
    // A /128 (Calico-style) address has no prefix to announce.
    expect(servedIpv6Prefixes([{ family: 6, address: 'fd00::7', prefix: 128 }])).toEqual([]);
  });

  it('computes link-locals and IPv6 networks', () => {
    expect(linkLocalFromMac('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456');
    expect(ipv6Network('fd00:10:89::5', 64)).toBe('fd00:10:89::');
    expect(ipv6Network('2001:db8:1:2:3:4:5:6', 48)).toBe('2001:db8:1::');
    expect(ipv6Network('2001:db8:1:2:3:4:5:6', 128)).toBe('2001:db8:1:2:3:4:5:6');
    expect(ipv6Network('fd00::1:0:0:7', 96)).toBe('fd00::1:0:0:0');
    expect(networkCidr({ family: 4, address: '10.252.7.2', prefix: 24 })).toBe('10.252.7.0/24');
    expect(networkCidr({ family: 4, address: '10.89.200.9', prefix: 16 })).toBe('10.89.0.0/16');
    expect(networkCidr({ family: 6, address: 'fd00:252:7::2', prefix: 64 })).toBe('fd00:252:7::/64');
  });
});
