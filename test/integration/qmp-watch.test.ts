// vmlet's own QMP monitor (src/vm/qmp-watch.ts) on a real QEMU that libvirt runs from vmlet's
// domain XML (the kernel-boot test guest, TCG here): it hears a VM's end as QEMU's socket closes,
// and tells the ends apart as libvirt does: a QEMU killed with -9 'crashed', a guest that powers
// itself off 'shutdown', a host-side stop (libvirt's destroy) left to libvirt. Prints how much
// earlier than libvirt's lifecycle event the watch heard the kill.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { parseVmSettings } from '../../src/vm/annotations.js';
import { buildVmSpec } from '../../src/vm/spec.js';
import { renderDomainXml } from '../../src/vm/domain-xml.js';
import { resolveQemuUser, socketDirFor } from '../../src/vm/qemu-user.js';
import { QmpWatch, type QmpEnd } from '../../src/vm/qmp-watch.js';
import { kernelGuest, READY_MARKER } from '../helpers/guest.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const log = pino({ level: 'silent' });
const domains = new Set<string>();

afterAll(async () => {
  for (const n of domains) {
    await lv.destroyDomain(n).catch(() => undefined);
    await lv.undefineDomain(n).catch(() => undefined);
  }
  await lv.close();
});

/** The test guest from vmlet's own XML with the monitor socket, started paused and watched before it runs. */
async function watchedGuest(kernelArgs = '') {
  const accel = decideAccel('auto', probeHost());
  const g = kernelGuest();
  const dir = tempDir('vmlet-qmp-');
  const qemu = await resolveQemuUser('libvirt-qemu');
  await socketDirFor(join(dir, 'qemu'), qemu); // as CreateContainer makes it
  const socket = join(dir, 'qemu', 'qmp.sock');
  const name = `vmlet-test-qmp-${randomBytes(3).toString('hex')}`;
  const settings = parseVmSettings({ sandboxAnnotations: kernelArgs ? { 'vmlet.io/kernel-args': kernelArgs } : {}, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 128 } });
  const spec = buildVmSpec({
    name, domainType: accel.domainType, settings,
    boot: { kind: 'kernel', kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline },
    disks: [], consoleLog: join(dir, 'console.log'), monitorSocket: socket, qemuUser: qemu,
    metadata: { v: 1, sandboxId: 'qmp', containerId: 'qmp' },
  });
  expect(spec.monitor).toEqual({ socket });
  domains.add(name);
  await lv.defineDomain(renderDomainXml(spec));
  await lv.startDomain(name, true);
  const ends: Array<{ end: QmpEnd; at: number }> = [];
  const w = new QmpWatch(socket, { log, onEnd: (end) => ends.push({ end, at: performance.now() }) });
  expect(await w.connect()).toBe(true);
  await lv.resumeDomain(name);
  const consoleLog = join(dir, 'console.log');
  const printed = (s: string) => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(s);
  return { name, socket, w, ends, printed };
}

const qemuPid = (domain: string) => Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());

describe("vmlet's QMP monitor", () => {
  it("hears a QEMU killed with -9 as 'crashed' (and prints how long libvirt's lifecycle event took)", async () => {
    const g = await watchedGuest();
    await waitFor(READY_MARKER, () => g.printed(READY_MARKER), { timeoutMs: 90_000, intervalMs: 50 });
    let stoppedAt = 0;
    const off = lv.onLifecycle((e) => {
      if (e.name === g.name && e.event === 'stopped') stoppedAt ||= performance.now();
    });
    await lv.eventsReady();
    const killedAt = performance.now();
    process.kill(qemuPid(g.name), 'SIGKILL');
    await waitFor('the watch to hear the end', () => g.ends.length > 0, { timeoutMs: 10_000, intervalMs: 2 });
    expect(g.ends.map((e) => e.end)).toEqual(['crashed']);
    await waitFor("libvirt's STOPPED event", () => stoppedAt > 0, { timeoutMs: 20_000, intervalMs: 5 });
    off();
    expect(g.ends).toHaveLength(1); // once
    console.log(`qmp-watch: kill -9 heard after ${(g.ends[0]!.at - killedAt).toFixed(0)} ms; libvirt's STOPPED event after ${(stoppedAt - killedAt).toFixed(0)} ms`);
  });

  it("hears a guest that powers itself off as 'shutdown'", async () => {
    const g = await watchedGuest('vmlet.test=poweroff');
    await waitFor('the guest to power off', () => g.ends.length > 0, { timeoutMs: 90_000, intervalMs: 20 });
    expect(g.printed('VMLET-POWEROFF')).toBe(true);
    expect(g.ends.map((e) => e.end)).toEqual(['shutdown']);
  });

  it("leaves a host-side stop (libvirt's destroy) to libvirt's own reason", async () => {
    const g = await watchedGuest();
    await waitFor(READY_MARKER, () => g.printed(READY_MARKER), { timeoutMs: 90_000, intervalMs: 50 });
    await lv.destroyDomain(g.name);
    await waitFor('the watch to hear the end', () => g.ends.length > 0, { timeoutMs: 10_000, intervalMs: 5 });
    expect(g.ends.map((e) => e.end)).toEqual([undefined]);
  });

  it('says nothing after close(); a watch after it (vmlet started again) is served; nothing to watch without a socket', async () => {
    const g = await watchedGuest();
    g.w.close();
    // QEMU serves one client at a time and listens again once it left: the next vmlet's watch.
    const again: QmpEnd[] = [];
    const w2 = new QmpWatch(g.socket, { log, onEnd: (end) => again.push(end) });
    expect(await w2.connect()).toBe(true);
    process.kill(qemuPid(g.name), 'SIGKILL');
    await waitFor('the second watch to hear the end', () => again.length > 0, { timeoutMs: 10_000, intervalMs: 5 });
    expect(again).toEqual(['crashed']);
    const none = new QmpWatch(join(tempDir('vmlet-qmp-none-'), 'qmp.sock'), { log, onEnd: () => g.ends.push({ end: 'crashed', at: 0 }) });
    expect(await none.connect()).toBe(false);
    expect(g.ends).toEqual([]);
  });
});
