// The pure-TypeScript libvirt RPC client against the real libvirtd: every call on a throwaway
// transient domain (TCG, 64 MiB, 1 of 2 vCPUs, no disk: it idles in firmware), plus a defined
// one that is never started for the bulk stats' filters, each effect read back independently
// with virsh.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIBVIRT_URI, virsh, virshKeyValues } from '../helpers/virsh.js';
import { parseCpuList } from '../../src/vm/cputune.js';
import { rpcRejection as rejection } from '../helpers/errors.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  AFFECT,
  DOMAIN_STATS,
  GET_ALL_DOMAINS_STATS,
  LibvirtRpc,
  MEM_MAXIMUM,
  VCPU_MAXIMUM,
  type RpcDomain,
} from '../../src/vm/rpc/index.js';


function virshVersion(): { out?: string; reason?: string } {
  try {
    return { out: virsh('version') };
  } catch (err) {
    return { reason: `virsh -c ${LIBVIRT_URI} version failed (${(err as Error).message.split('\n')[0]}): libvirtd not reachable` };
  }
}
const probe = virshVersion();
if (probe.reason) console.log(`skipping libvirt RPC integration tests: ${probe.reason}`);

/** `virsh domstats` output: the key=value lines of each domain, by domain name. */
function domstats(out: string): Map<string, Record<string, string>> {
  const byDomain = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of out.split('\n')) {
    const d = /^Domain: '(.*)'$/.exec(line.trim());
    if (d) byDomain.set(d[1]!, (cur = {}));
    const kv = /^\s+([^=]+)=(.*)$/.exec(line);
    if (kv && cur) cur[kv[1]!] = kv[2]!;
  }
  return byDomain;
}



describe.skipIf(probe.reason !== undefined)('LibvirtRpc against libvirtd', () => {
  const name = `vmlet-rpctest-${randomBytes(4).toString('hex')}`;
  const offName = `${name}-off`;
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-rpctest-'));
  const rpc = new LibvirtRpc({ uri: LIBVIRT_URI });
  let dom: RpcDomain;
  let hostCpus = 0;

  beforeAll(async () => {
    hostCpus = Number(/^CPU\(s\):\s+(\d+)/m.exec(virsh('nodeinfo'))?.[1]);
    const xml = join(dir, 'domain.xml');
    writeFileSync(
      xml,
      `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><memballoon model='virtio'/></devices>
</domain>`,
    );
    virsh('create', xml);
    dom = await rpc.lookupDomain(name);
    const offXml = join(dir, 'off.xml');
    writeFileSync(offXml, readFileSync(xml, 'utf8').replace(`<name>${name}</name>`, `<name>${offName}</name>`));
    virsh('define', offXml);
  });

  afterAll(async () => {
    await rpc.close();
    try {
      virsh('destroy', name);
    } catch {
      // already gone
    }
    try {
      virsh('undefine', offName);
    } catch {
      // never defined
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers libVersion with the daemon’s library version, after the auth handshake', async () => {
    const m = /Using library: libvirt (\d+)\.(\d+)\.(\d+)/.exec(probe.out ?? '');
    expect(m).not.toBeNull();
    const expected = Number(m![1]) * 1_000_000 + Number(m![2]) * 1_000 + Number(m![3]);
    expect(await rpc.libVersion()).toBe(expected);
    // auth none (0) or polkit (2): either way we got through to CONNECT_OPEN
    expect(rpc.authTypes.every((t) => t === 0 || t === 2)).toBe(true);
    console.log(`libvirt auth types offered on this host: [${rpc.authTypes.join(', ')}] (0 none, 1 sasl, 2 polkit)`);
  });

  it('looks a domain up by name: uuid and id as virsh reports them', () => {
    expect(dom.name).toBe(name);
    expect(dom.uuid).toBe(virsh('domuuid', name).trim());
    expect(dom.id).toBe(Number(virsh('domid', name).trim()));
    expect(dom.id).toBeGreaterThan(0);
  });

  it('reports a missing domain as not-found with libvirt’s code and message', async () => {
    const missing = `${name}-missing`;
    const err = await rejection(rpc.lookupDomain(missing));
    expect(err.kind).toBe('not-found');
    expect(err.code).toBe(42);
    expect(err.op).toBe('lookupDomain');
    expect(err.message).toContain(missing);
  });

  it('sets cpu_shares, global_period and global_quota, read back by both the client and virsh', async () => {
    await rpc.setSchedulerParameters(
      dom,
      [
        { field: 'cpu_shares', type: 'ullong', value: 512 },
        { field: 'global_period', type: 'ullong', value: 50_000 },
        { field: 'global_quota', type: 'llong', value: 25_000n },
      ],
      AFFECT.LIVE,
    );
    const mine = await rpc.getSchedulerParameters(dom, AFFECT.LIVE);
    expect(mine).toMatchObject({ cpu_shares: 512, global_period: 50_000, global_quota: 25_000 });
    const theirs = virshKeyValues(virsh('schedinfo', name, '--live'), /\s*:\s*/);
    expect(theirs['cpu_shares']).toBe('512');
    expect(theirs['global_period']).toBe('50000');
    expect(theirs['global_quota']).toBe('25000');
    // Every tunable virsh lists, with the same value.
    for (const [k, v] of Object.entries(theirs)) if (k !== 'Scheduler') expect(mine[k], k).toBe(Number(v));
    const typed = await rpc.getSchedulerParametersTyped(dom, AFFECT.LIVE);
    expect(typed.find((p) => p.field === 'global_quota')).toEqual({ field: 'global_quota', type: 'llong', value: 25_000 });
  });

  it('passes libvirt’s refusal of a wrongly typed tunable through as invalid', async () => {
    const err = await rejection(rpc.setSchedulerParameters(dom, [{ field: 'cpu_shares', type: 'int', value: 100 }], AFFECT.LIVE));
    expect(err.kind).toBe('invalid');
    expect(err.code).toBe(8);
    expect(err.message).toMatch(/invalid type 'int' for parameter 'cpu_shares'/);
    expect(virshKeyValues(virsh('schedinfo', name, '--live'), /\s*:\s*/)['cpu_shares']).toBe('512'); // unchanged
  });

  it('pins vCPU 0 to CPU 0, seen by virsh vcpupin and GetVcpuPinInfo', async () => {
    await rpc.pinVcpu(dom, 0, [0], AFFECT.LIVE);
    const rows = virsh('vcpupin', name, '--live')
      .split('\n')
      .map((l) => /^\s*(\d+)\s+(\S+)\s*$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null);
    const theirs = new Map(rows.map((m) => [Number(m[1]), parseCpuList(m[2]!, 'virsh vcpupin', 8192)]));
    expect(theirs.get(0)).toEqual([0]);
    const mine = await rpc.getVcpuPinInfo(dom, 2, hostCpus, AFFECT.LIVE);
    expect(mine).toHaveLength(2);
    expect(mine[0]).toEqual([0]);
    expect(mine[1]).toEqual(theirs.get(1)); // the other vCPU keeps its affinity
    expect(mine[1]).toEqual(Array.from({ length: hostCpus }, (_, i) => i));
  });

  it('pins the emulator threads to CPU 0, seen by virsh emulatorpin', async () => {
    await rpc.pinEmulator(dom, [0], AFFECT.LIVE);
    expect(virsh('emulatorpin', name, '--live')).toMatch(/\*:\s*0\s*$/m);
  });

  it('passes libvirt’s errors for impossible pinning through with its message', async () => {
    // A vCPU the domain does not have: refused by libvirt as an invalid argument.
    const badVcpu = await rejection(rpc.pinVcpu(dom, 7, [0], AFFECT.LIVE));
    expect(badVcpu).toMatchObject({ kind: 'invalid', code: 8, op: 'pinVcpu' });
    expect(badVcpu.message).toMatch(/vcpu 7 is out of range/);
    // A host CPU that does not exist: libvirt's own error (its code depends on the cgroup setup).
    const badCpu = await rejection(rpc.pinVcpu(dom, 0, [hostCpus + 64], AFFECT.LIVE));
    expect(badCpu.code).toBeGreaterThan(0);
    expect(badCpu.domain).toBeGreaterThan(0);
    expect(badCpu.message.length).toBeGreaterThan(0);
    expect((await rpc.getVcpuPinInfo(dom, 2, hostCpus, AFFECT.LIVE))[0]).toEqual([0]); // unchanged
  });

  it('hot-plugs the second vCPU with setVcpus LIVE, seen by virsh vcpucount', async () => {
    expect(await rpc.getVcpus(dom, AFFECT.LIVE)).toBe(1);
    expect(await rpc.getVcpus(dom, AFFECT.LIVE | VCPU_MAXIMUM)).toBe(2);
    await rpc.setVcpus(dom, 2, AFFECT.LIVE);
    expect(await rpc.getVcpus(dom, AFFECT.LIVE)).toBe(2);
    expect(virsh('vcpucount', name, '--live', '--active').trim()).toBe('2');
  });

  it('refuses setVcpus above the maximum as invalid, with libvirt’s message', async () => {
    const err = await rejection(rpc.setVcpus(dom, 3, AFFECT.LIVE));
    expect(err).toMatchObject({ kind: 'invalid', code: 8, op: 'setVcpus' });
    expect(err.message).toMatch(/greater than max allowable vcpus.*3 > 2/);
    expect(virsh('vcpucount', name, '--live', '--active').trim()).toBe('2');
  });

  it('sets the balloon target LIVE; libvirt checks the exact KiB against the maximum', async () => {
    // The firmware-only guest has no balloon driver, so the guest never reaches the target and
    // libvirt's currentMemory (updated from the guest's BALLOON_CHANGE) stays put. What the
    // daemon can check is the value it decoded: exactly the maximum passes, one KiB more fails.
    const maxKiB = Number(/<memory unit='KiB'>(\d+)<\/memory>/.exec(virsh('dumpxml', name))?.[1]);
    expect(maxKiB).toBe(65_536);
    await rpc.setMemory(dom, 48 * 1024, AFFECT.LIVE);
    await rpc.setMemory(dom, maxKiB, AFFECT.LIVE);
    const over = await rejection(rpc.setMemory(dom, maxKiB + 1, AFFECT.LIVE));
    expect(over).toMatchObject({ kind: 'invalid', code: 8, op: 'setMemory' });
    expect(over.message).toMatch(/cannot set memory higher than max memory/);
    // Changing the maximum of a running domain, or the config of a transient one, is refused too.
    expect((await rejection(rpc.setMemory(dom, maxKiB, AFFECT.LIVE | MEM_MAXIMUM))).kind).toBe('invalid');
    expect((await rejection(rpc.setMemory(dom, maxKiB, AFFECT.CONFIG))).code).toBe(55);
    const live = virsh('dumpxml', name);
    const current = Number(/<currentMemory unit='KiB'>(\d+)<\/currentMemory>/.exec(live)?.[1]);
    expect(current).toBeGreaterThan(0);
    expect(current).toBeLessThanOrEqual(maxKiB);
  });

  it('reads memory stats named as virsh dommemstat prints them', async () => {
    const mine = await rpc.memoryStats(dom);
    const theirs = virshKeyValues(virsh('dommemstat', name), /\s+/);
    expect(Object.keys(mine).sort()).toEqual(Object.keys(theirs).sort());
    expect(mine['actual']).toBe(Number(theirs['actual']));
    expect(mine['actual']).toBe(65_536);
    expect(mine['rss']).toBeGreaterThan(0);
  });

  it('reads getInfo as virsh dominfo prints it', async () => {
    const mine = await rpc.getInfo(dom);
    const theirs = virshKeyValues(virsh('dominfo', name), /:\s+/);
    expect(mine.state).toBe(1); // running
    expect(theirs['State']).toBe('running');
    expect(`${mine.maxMemKiB} KiB`).toBe(theirs['Max memory']);
    expect(`${mine.memoryKiB} KiB`).toBe(theirs['Used memory']);
    expect(String(mine.vcpus)).toBe(theirs['CPU(s)']);
    expect(mine.cpuTimeNs).toBeGreaterThan(0);
    expect(mine.cpuTimeNs / 1e9).toBeLessThanOrEqual(Number(theirs['CPU time']!.replace(/s$/, '')) + 0.05); // virsh asked later, rounds to 0.1 s
  });

  it('reads bulk stats as virsh domstats prints them: same fields, same values', async () => {
    const groups = DOMAIN_STATS.STATE | DOMAIN_STATS.CPU_TOTAL | DOMAIN_STATS.VCPU | DOMAIN_STATS.BALLOON;
    const all = await rpc.getAllDomainStats(groups, GET_ALL_DOMAINS_STATS.ACTIVE);
    const theirs = domstats(virsh('domstats', '--state', '--cpu-total', '--vcpu', '--balloon', '--list-active'));
    // Other domains may run on this host: the same set of running domains either way.
    expect(new Set(all.map((r) => r.dom.name))).toEqual(new Set(theirs.keys()));
    expect(all.map((r) => r.dom.name)).not.toContain(offName);
    const rec = all.find((r) => r.dom.name === name)!;
    expect(rec.dom).toEqual(dom);
    const t = theirs.get(name)!;
    expect(Object.keys(rec.params).sort()).toEqual(Object.keys(t).sort());
    // Values that do not move between the two calls are equal; counters only grow.
    for (const k of ['state.state', 'state.reason', 'balloon.current', 'balloon.maximum', 'vcpu.current', 'vcpu.maximum']) {
      expect(String(rec.params[k]), k).toBe(t[k]);
    }
    expect(rec.params['balloon.maximum']).toBe(65_536);
    for (const k of ['cpu.time', 'cpu.user', 'cpu.system', 'vcpu.0.time']) {
      expect(typeof rec.params[k], k).toBe('number');
      expect(BigInt(rec.params[k] as number), k).toBeLessThanOrEqual(BigInt(t[k]!));
    }
    // Every value keeps libvirt's type: numbers here (none of these is past 2^53).
    for (const [k, v] of Object.entries(rec.params)) expect(['number', 'string'], k).toContain(typeof v);

    const stateOnly = (await rpc.getAllDomainStats(DOMAIN_STATS.STATE, GET_ALL_DOMAINS_STATS.ACTIVE)).find((r) => r.dom.name === name)!;
    expect(stateOnly.params).toEqual({ 'state.state': 1, 'state.reason': 1 });
  });

  it('with a domain list: only those, a missing one skipped (even with ENFORCE_STATS), an inactive one kept unless ACTIVE', async () => {
    const off = await rpc.lookupDomain(offName);
    expect(off.id).toBe(-1);
    const ghost: RpcDomain = { name: 'no-such-domain', uuid: '8fed2cf1-1f9f-4766-8244-b8a8f1737e54', id: 77 };
    const names = async (flags: number) => (await rpc.getAllDomainStats(DOMAIN_STATS.STATE, flags, [off, ghost, dom])).map((r) => r.dom.name);
    expect(await names(0)).toEqual([offName, name]);
    expect(await names(GET_ALL_DOMAINS_STATS.ENFORCE_STATS)).toEqual([offName, name]);
    expect(await names(GET_ALL_DOMAINS_STATS.ACTIVE)).toEqual([name]);
    expect(await names(GET_ALL_DOMAINS_STATS.INACTIVE)).toEqual([offName]);
    const [offRec] = await rpc.getAllDomainStats(DOMAIN_STATS.STATE, 0, [off]);
    expect(offRec!.params['state.state']).toBe(5); // shut off
    expect(await rpc.getAllDomainStats(DOMAIN_STATS.STATE, 0, [ghost])).toEqual([]);
  });

  it('answers STATE and getInfo while the domain’s QEMU is stopped; CPU_TOTAL, VCPU and BALLOON each wait for its monitor', async () => {
    // What vmlet's choice of calls rests on: STATE and getInfo come from libvirtd's records, each
    // of the other groups needs a job on the domain and a reply from its QEMU.
    const pid = Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
    const short = new LibvirtRpc({ uri: LIBVIRT_URI, callTimeoutMs: 1000 });
    const { CPU_TOTAL, VCPU, BALLOON } = DOMAIN_STATS;
    try {
      for (const [group, bit] of Object.entries({ CPU_TOTAL, VCPU, BALLOON })) {
        process.kill(pid, 'SIGSTOP');
        try {
          let t = performance.now();
          expect((await rpc.getAllDomainStats(DOMAIN_STATS.STATE, GET_ALL_DOMAINS_STATS.ACTIVE, [dom]))[0]!.params['state.state']).toBe(1);
          expect((await rpc.getInfo(dom)).state).toBe(1);
          expect(performance.now() - t, group).toBeLessThan(1000);
          // NOWAIT does not help here: the job is free, so libvirtd takes it and waits for QEMU.
          const stuck = await rejection(short.getAllDomainStats(bit, GET_ALL_DOMAINS_STATS.ACTIVE | GET_ALL_DOMAINS_STATS.NOWAIT, [dom]));
          expect(stuck.message, group).toMatch(/timed out after 1000 ms/);
          // That call now holds the domain's job inside libvirtd: NOWAIT skips what needs it.
          t = performance.now();
          const [rec] = await rpc.getAllDomainStats(CPU_TOTAL | VCPU | BALLOON, GET_ALL_DOMAINS_STATS.ACTIVE | GET_ALL_DOMAINS_STATS.NOWAIT, [dom]);
          expect(performance.now() - t, group).toBeLessThan(1000);
          expect(rec!.params).toHaveProperty('cpu.time');
          expect(rec!.params).toHaveProperty('vcpu.current');
          expect(rec!.params).toHaveProperty('balloon.current', 65_536);
          expect(rec!.params).not.toHaveProperty('balloon.rss'); // asked of QEMU
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        // Once QEMU runs again the stuck call ends (releasing the job) and the group answers.
        expect((await rpc.getAllDomainStats(bit, GET_ALL_DOMAINS_STATS.ACTIVE, [dom])).map((r) => r.dom.name), group).toEqual([name]);
      }
    } finally {
      await short.close();
    }
    const [after] = await rpc.getAllDomainStats(BALLOON, GET_ALL_DOMAINS_STATS.ACTIVE, [dom]);
    expect(after!.params).toHaveProperty('balloon.rss');
  });

  it('answers 20 concurrent calls over one lazily opened connection', async () => {
    const fresh = new LibvirtRpc({ uri: LIBVIRT_URI });
    try {
      expect(fresh.connected).toBe(false);
      const all = await Promise.all(Array.from({ length: 20 }, () => fresh.libVersion()));
      expect(new Set(all).size).toBe(1);
      expect(all[0]).toBe(await rpc.libVersion());
      expect(fresh.connected).toBe(true);
    } finally {
      await fresh.close();
    }
    expect(fresh.connected).toBe(false);
    expect(await fresh.libVersion()).toBeGreaterThan(0); // reopens after close
    await fresh.close();
  });

  it('fails with kind connection when nothing listens at the socket path', async () => {
    const nowhere = new LibvirtRpc({ uri: LIBVIRT_URI, socketPath: join(dir, 'no-listener.sock') });
    const e1 = await rejection(nowhere.libVersion());
    expect(e1).toMatchObject({ kind: 'connection', op: 'libVersion' });
    const notSocket = join(dir, 'not-a-socket');
    writeFileSync(notSocket, '');
    const e2 = await rejection(new LibvirtRpc({ uri: `${LIBVIRT_URI}?socket=${notSocket}` }).lookupDomain(name));
    expect(e2).toMatchObject({ kind: 'connection', op: 'lookupDomain' });
  });
});
