// The domain's logs go with the domain: its QEMU log and the logs of its shares' virtiofsd.
import { describe, expect, it } from 'vitest';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lastStopReason, removeQemuLog } from '../../src/vm/stop-reason.js';
import { tempDir } from '../helpers/vmlet.js';

describe('removeQemuLog', () => {
  it("removes the domain's QEMU log and its virtiofsd logs, nothing of another domain", async () => {
    const dir = tempDir('vmlet-qemu-logs-');
    const name = 'vmlet-ns-pod-ab12cd34';
    const mine = [`${name}.log`, `${name}-fs0-virtiofsd.log`, `${name}-fs1-virtiofsd.log`, `${name}-fs12-virtiofsd.log`];
    // A longer name that starts with this one, and look-alikes that are not virtiofsd's logs.
    const others = ['vmlet-ns-pod-ab12cd34-5e6f7a8b.log', 'vmlet-ns-pod-ab12cd34-5e6f7a8b-fs0-virtiofsd.log', `${name}-fsx-virtiofsd.log`, `${name}-fs0-virtiofsd.log.1`, 'other.log'];
    for (const f of [...mine, ...others]) writeFileSync(join(dir, f), 'x');
    await removeQemuLog(name, dir);
    expect(readdirSync(dir).sort()).toEqual([...others].sort());
  });

  it('is quiet when the files or the dir are not there', async () => {
    await expect(removeQemuLog('vmlet-ns-pod-ab12cd34', join(tempDir('vmlet-qemu-logs-'), 'absent'))).resolves.toBeUndefined();
    expect(await lastStopReason('vmlet-ns-pod-ab12cd34', join(tempDir('vmlet-qemu-logs-'), 'absent'))).toBeUndefined();
  });
});
