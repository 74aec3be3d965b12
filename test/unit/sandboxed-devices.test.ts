// A block volume used by two containers of one sandboxed pod is one disk of the pod VM, read-only
// or writable for both: a second container asking otherwise is refused (the VM could not enforce
// it), with the device and the other container named. The in-memory VM driver stands in for
// libvirt (the hotplug itself is tested with QEMU in volumes-sandboxed.test.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryDriver } from '../helpers/memory-driver.js';
import { makeSandbox, startMemoryManager } from '../helpers/memory-manager.js';
import { tempDir } from '../helpers/vmlet.js';
import { attachBlockVolumes } from '../../src/pod/sandboxed-devices.js';
import { deviceSerial } from '../../src/vm/volumes.js';
import type { PodManager } from '../../src/pod/manager.js';
import type { ContainerRecord } from '../../src/pod/records.js';
import type { BlockVolume } from '../../src/pod/volumes.js';

let m: PodManager | undefined;
afterEach(async () => {
  await m?.stop();
  m = undefined;
});

const DEV = '/dev/fake-pvc';
const block = (readonly: boolean): BlockVolume => ({ containerPath: '/dev/xvda', hostPath: DEV, serial: deviceSerial(DEV), readonly, mode: 0o660, uid: 0, gid: 6 });

async function podWithUser(permissions: string) {
  const vm = new MemoryDriver();
  m = await startMemoryManager({ stateDir: tempDir('vmlet-devices-'), vm });
  const s = await makeSandbox(m);
  s.kind = 'sandboxed';
  s.podVm = { domainName: 'pod-vm', agentSocket: '/x', scratch: '/x', consoleLog: '/x', kit: 'k', lastStream: 0 };
  const first = { id: 'c1', sandboxId: s.id, kind: 'sandboxed', state: 'running', config: { metadata: { name: 'writer', attempt: 0 }, devices: [{ container_path: '/dev/xvda', host_path: DEV, permissions }] } } as unknown as ContainerRecord;
  m.containers.set(first.id, first);
  return { s, vm };
}

describe('sandboxed pod block volumes shared by containers', () => {
  it('a second container with the same permissions shares the disk (no second attach)', async () => {
    const { s, vm } = await podWithUser('rw');
    expect(await attachBlockVolumes(m!, s, 'c2', [block(false)])).toEqual([]);
    expect(vm.calls.filter((c) => c.startsWith('attachDisk'))).toEqual([]);
  });
  it('refuses write access to a disk attached read-only, and read-only access to a writable one', async () => {
    const ro = await podWithUser('r');
    await expect(attachBlockVolumes(m!, ro.s, 'c2', [block(false)])).rejects.toThrow(/device "\/dev\/xvda": block volume \/dev\/fake-pvc is attached to the pod VM read-only for container writer/);
    await m!.stop();
    const rw = await podWithUser('rwm');
    await expect(attachBlockVolumes(m!, rw.s, 'c2', [block(true)])).rejects.toThrow(/attached to the pod VM writable for container writer; read-only access .* cannot be enforced/);
  });
});
