// What the pod wiring decides from eth0 as CNI left it (wiringFrom) and how it reads `ip -j
// -batch` output (batchJson). The lines below are what iproute2 6.1 printed for a veth with
// 10.9.0.5/24 and a route via 10.9.0.1 (test/integration/net-pod.test.ts runs the real thing).
import { describe, expect, it } from 'vitest';
import { batchJson, wiringFrom, type IpLink, type IpRoute } from '../../src/net/pod-network.js';
import { parseCniResult } from '../../src/net/cni.js';

const BATCH_OUT = [
  '[{"ifindex":2,"link_index":5,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"mtu":1450,"address":"76:55:d7:fb:3e:c6","addr_info":[{"family":"inet","local":"10.9.0.5","prefixlen":24,"scope":"global"},{"family":"inet6","local":"fe80::7455:d7ff:fefb:3ec6","prefixlen":64,"scope":"link"}]}]',
  '[{"dst":"10.9.0.0/24","protocol":"kernel","scope":"link","prefsrc":"10.9.0.5"},{"dst":"10.10.0.0/16","gateway":"10.9.0.1"},{"dst":"default","gateway":"10.9.0.1"}]',
  '',
].join('\n');

const cni = (ips: Array<{ address: string; gateway?: string }>) =>
  parseCniResult({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', mac: '76:55:d7:fb:3e:c6', sandbox: '/run/netns/x' }], ips: ips.map((i) => ({ interface: 0, ...i })) });

const [[link], routes4] = batchJson(BATCH_OUT) as [IpLink[], IpRoute[]];

describe('pod wiring', () => {
  it('reads one JSON array per printing command from `ip -j -batch`, skipping blank lines', () => {
    const out = batchJson(BATCH_OUT);
    expect(out).toHaveLength(2);
    expect((out[0] as IpLink[])[0]!.ifname).toBe('eth0');
    expect(batchJson('[]\n')).toEqual([[]]);
    expect(() => batchJson('[{"a":1}\n')).toThrow();
  });

  it('takes the IPs from the CNI result, the routes via eth0 (not the prefix route), MTU and MAC from eth0', () => {
    const w = wiringFrom({ netnsName: 'ns', ifName: 'eth0', cni: cni([{ address: '10.9.0.5/24', gateway: '10.9.0.1' }]), link: link!, routes: { 4: routes4, 6: [] } });
    expect(w).toEqual({
      ips: [{ family: 4, address: '10.9.0.5', prefix: 24, gateway: '10.9.0.1' }],
      routes: [
        { family: 4, dst: '10.10.0.0/16', gw: '10.9.0.1' },
        { family: 4, dst: '0.0.0.0/0', gw: '10.9.0.1' },
      ],
      mtu: 1450,
      ifMac: '76:55:d7:fb:3e:c6',
    });
  });

  it("falls back to eth0's own global addresses when the result lists none, and finds the gateway in the default route", () => {
    const w = wiringFrom({ netnsName: 'ns', ifName: 'eth0', cni: cni([]), link: link!, routes: { 4: routes4, 6: [] } });
    expect(w.ips).toEqual([{ family: 4, address: '10.9.0.5', prefix: 24, gateway: '10.9.0.1' }]);
  });

  it('gives the guest the address alone when the plugin left the subnet off-link (no prefix route)', () => {
    const offLink = routes4.filter((r) => r.protocol !== 'kernel');
    const w = wiringFrom({ netnsName: 'ns', ifName: 'eth0', cni: cni([{ address: '10.9.0.5/24', gateway: '10.9.0.1' }]), link: link!, routes: { 4: offLink, 6: [] } });
    expect(w.ips).toEqual([{ family: 4, address: '10.9.0.5', prefix: 32, cniPrefix: 24, gateway: '10.9.0.1' }]);
  });

  it('keeps IPv6 routes but not the link-local or multicast ones', () => {
    const routes6: IpRoute[] = [
      { dst: 'fd00:9::/64', protocol: 'kernel' },
      { dst: 'fe80::/64', protocol: 'kernel' },
      { dst: 'fe80::/10', gateway: 'fe80::1' },
      { dst: 'ff00::/8', type: 'multicast' },
      { dst: 'default', gateway: 'fd00:9::1' },
    ];
    const w = wiringFrom({ netnsName: 'ns', ifName: 'eth0', cni: cni([{ address: '10.9.0.5/24' }, { address: 'fd00:9::5/64' }]), link: link!, routes: { 4: routes4, 6: routes6 } });
    expect(w.routes.filter((r) => r.family === 6)).toEqual([{ family: 6, dst: '::/0', gw: 'fd00:9::1' }]);
    expect(w.ips.find((i) => i.family === 6)).toEqual({ family: 6, address: 'fd00:9::5', prefix: 64, gateway: 'fd00:9::1' });
  });

  it('refuses an interface without an Ethernet MAC, and a pod without any IP, naming the netns', () => {
    expect(() => wiringFrom({ netnsName: 'vmlet-x', ifName: 'eth0', cni: cni([]), link: { ...link!, address: '' }, routes: { 4: [], 6: [] } })).toThrow(/eth0 in netns vmlet-x has no Ethernet MAC/);
    expect(() => wiringFrom({ netnsName: 'vmlet-x', ifName: 'eth0', cni: cni([]), link: { ...link!, addr_info: [] }, routes: { 4: [], 6: [] } })).toThrow(/CNI gave eth0 in netns vmlet-x no IP address/);
  });
});
