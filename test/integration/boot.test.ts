// Proves the harness boots a real guest: vmlet's libvirt client (src/vm/libvirt.ts) defines,
// starts and destroys a domain running the project's kernel-boot test guest under this node's
// accelerator (TCG here), and the guest's ready marker appears in its serial console log.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { DomainState, Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { kernelGuest, kernelGuestXml, READY_MARKER } from '../helpers/guest.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const name = `vmlet-test-boot-${randomBytes(4).toString('hex')}`;
const pausedName = `vmlet-test-paused-${randomBytes(4).toString('hex')}`;

afterAll(async () => {
  // Leave nothing behind even when an assertion failed half way.
  for (const n of [name, pausedName]) {
    await lv.destroyDomain(n).catch(() => undefined);
    await lv.undefineDomain(n).catch(() => undefined);
  }
  await lv.close();
});

describe('test guest boot through libvirt', () => {
  it('defines, starts and destroys a domain; the guest prints its ready marker', async () => {
    const accel = decideAccel('auto', probeHost());
    const consoleLog = join(tempDir('vmlet-boot-'), 'console.log');
    const xml = kernelGuestXml({ name, guest: kernelGuest(), domainType: accel.domainType, consoleLog });

    const t0 = performance.now();
    const uuid = await lv.defineDomain(xml);
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect((await lv.domainInfo(name)).state).toBe(DomainState.SHUTOFF);
    await lv.startDomain(name);
    expect((await lv.domainInfo(name)).state).toBe(DomainState.RUNNING);
    await waitFor(`${READY_MARKER} in ${consoleLog}`, () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(READY_MARKER), {
      timeoutMs: 90_000,
      intervalMs: 20,
    });
    const bootMs = performance.now() - t0;
    console.log(`guest boot (define → ${READY_MARKER}) under ${accel.accel}: ${(bootMs / 1000).toFixed(2)} s`);

    const listed = await lv.listDomains();
    expect(listed.find((d) => d.name === name)).toMatchObject({ uuid, state: DomainState.RUNNING });

    await lv.destroyDomain(name);
    expect((await lv.domainInfo(name)).state).toBe(DomainState.SHUTOFF);
    await lv.undefineDomain(name);
    await expect(lv.domainInfo(name)).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('starts a domain paused (its QEMU up, no guest code run) and runs the guest once resumed, as StartContainer does around the tap', async () => {
    const accel = decideAccel('auto', probeHost());
    const consoleLog = join(tempDir('vmlet-boot-'), 'console.log');
    await lv.defineDomain(kernelGuestXml({ name: pausedName, guest: kernelGuest(), domainType: accel.domainType, consoleLog }));
    await lv.startDomain(pausedName, true);
    expect((await lv.domainInfo(pausedName)).state).toBe(DomainState.PAUSED);
    // Not one byte from the guest's kernel yet.
    expect(existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '').toBe('');
    await lv.resumeDomain(pausedName);
    expect((await lv.domainInfo(pausedName)).state).toBe(DomainState.RUNNING);
    await waitFor(`${READY_MARKER} in ${consoleLog}`, () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(READY_MARKER), { timeoutMs: 90_000, intervalMs: 20 });
  });
});
