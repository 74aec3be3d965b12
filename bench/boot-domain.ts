// A domain booted through libvirt to its guest's marker, timed, and gone after (guest-boot.ts,
// kernel-boot.ts, domain-start.ts).
import { existsSync, readFileSync } from 'node:fs';
import type { Libvirt } from '../src/vm/libvirt.js';
import { READY_MARKER } from '../test/helpers/guest.js';
import { waitFor } from '../test/helpers/wait.js';

/** ms from the define call: to the start call, to its return, to the marker in the console log. */
export interface BootTimes {
  defineMs: number;
  startedMs: number;
  markerMs: number;
}

/**
 * Defines `xml` (domain `name`), starts it, waits for `marker` in `consoleLog`, runs `running`
 * on the booted domain, then destroys and undefines it whatever happened.
 */
export async function bootToMarker(
  lv: Libvirt,
  o: { name: string; xml: string; consoleLog: string; marker?: string; running?: (name: string) => Promise<void> | void },
): Promise<BootTimes> {
  const marker = o.marker ?? READY_MARKER;
  try {
    const t0 = performance.now();
    await lv.defineDomain(o.xml);
    const defineMs = performance.now() - t0;
    await lv.startDomain(o.name);
    const startedMs = performance.now() - t0;
    await waitFor(`${marker} in ${o.consoleLog}`, () => existsSync(o.consoleLog) && readFileSync(o.consoleLog, 'utf8').includes(marker), { timeoutMs: 120_000, intervalMs: 10 });
    const markerMs = performance.now() - t0;
    await o.running?.(o.name);
    return { defineMs, startedMs, markerMs };
  } finally {
    await lv.destroyDomain(o.name).catch(() => undefined);
    await lv.undefineDomain(o.name).catch(() => undefined);
  }
}
