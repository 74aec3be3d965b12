// IP address arithmetic the pod network needs (Node has none): netmasks, subnet tests and
// network addresses, IPv4 and IPv6.
import { isIP } from 'node:net';
import { VmletError } from '../errors.js';

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);
}

const intToIpv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

const ipv4Mask = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

export function prefixToNetmask(prefix: number): string {
  return intToIpv4(ipv4Mask(prefix));
}

export function inSubnet(ip: string, net: string, prefix: number): boolean {
  if (isIP(ip) !== 4 || isIP(net) !== 4) return false;
  const m = ipv4Mask(prefix);
  return ((ipv4ToInt(ip) & m) >>> 0) === ((ipv4ToInt(net) & m) >>> 0);
}

/** The network address of an IPv4 prefix (10.1.2.0 for 10.1.2.3/24). */
export function ipv4Network(address: string, prefix: number): string {
  return intToIpv4((ipv4ToInt(address) & ipv4Mask(prefix)) >>> 0);
}

/** The network address of an IPv6 prefix (its subnet-router anycast address, which no host uses). */
export function ipv6Network(address: string, prefix: number): string {
  const full = expandIpv6(address);
  const bits = full.map((g) => g.toString(2).padStart(16, '0')).join('');
  const masked = bits.slice(0, prefix).padEnd(128, '0');
  const groups: string[] = [];
  for (let i = 0; i < 128; i += 16) groups.push(Number.parseInt(masked.slice(i, i + 16), 2).toString(16));
  return compressIpv6(groups);
}

function expandIpv6(a: string): number[] {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  const all = [...h, ...fill, ...t].map((g) => Number.parseInt(g, 16));
  if (all.length !== 8 || all.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) throw new VmletError('internal', `not an IPv6 address: ${a}`);
  return all;
}

function compressIpv6(groups: string[]): string {
  // The longest run of zero groups (two or more) becomes '::'.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
