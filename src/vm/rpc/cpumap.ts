// libvirt's CPU maps: one bit per host CPU, CPU n in byte n/8 at bit n%8 (VIR_USE_CPU), so the
// map for CPUs 0 and 9 is [0x01, 0x02]. GetVcpuPinInfo returns several maps back to back.
import { Limits } from './protocol.js';
import { XdrError } from './xdr.js';

/** Bytes one map for `hostCpus` CPUs takes (VIR_CPU_MAPLEN). */
export const cpumapLength = (hostCpus: number) => Math.ceil(hostCpus / 8);

/** The smallest map holding `cpus`; bits past the host's CPUs are libvirt's to refuse. */
export function cpumapFromList(cpus: readonly number[]): Buffer {
  if (cpus.length === 0) throw new XdrError('empty CPU list: a map with no CPU pins to nothing');
  for (const c of cpus) {
    if (!Number.isInteger(c) || c < 0) throw new XdrError(`not a CPU index: ${c}`);
  }
  const max = Math.max(...cpus);
  const len = Math.floor(max / 8) + 1;
  if (len > Limits.CPUMAP_MAX) throw new XdrError(`CPU ${max} is beyond the protocol's ${Limits.CPUMAP_MAX * 8}-CPU map`);
  const map = Buffer.alloc(len);
  for (const c of cpus) map[c >> 3]! |= 1 << (c & 7);
  return map;
}

/** The CPUs set in `map`, ascending; `limit` drops bits at or past it (CPUs the host lacks). */
export function cpuListFromMap(map: Uint8Array, limit = map.length * 8): number[] {
  const out: number[] = [];
  for (let c = 0; c < Math.min(limit, map.length * 8); c++) {
    if ((map[c >> 3]! >> (c & 7)) & 1) out.push(c);
  }
  return out;
}

/** Splits `count` maps of `maplen` bytes each (GetVcpuPinInfo's cpumaps) into CPU lists. */
export function cpuListsFromMaps(maps: Uint8Array, count: number, maplen: number, limit = maplen * 8): number[][] {
  if (count * maplen > maps.length) throw new XdrError(`${count} maps of ${maplen} bytes need ${count * maplen} bytes, got ${maps.length}`);
  const out: number[][] = [];
  for (let i = 0; i < count; i++) out.push(cpuListFromMap(maps.subarray(i * maplen, (i + 1) * maplen), limit));
  return out;
}
