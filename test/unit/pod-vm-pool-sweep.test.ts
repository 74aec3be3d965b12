// The warm pool's sweep at vmlet's start (src/pod/podvm-pool.ts), with the in-memory VM driver
// (no libvirt needed to decide what to keep): idle VMs of an earlier run go, with their dirs; a
// claimed one stays, named by its pod's record or, when that record was set aside, by the
// claimed-by file of its dir while the pod's dir exists.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryDriver } from '../helpers/memory-driver.js';
import { makeSandbox, startMemoryManager } from '../helpers/memory-manager.js';
import { tempDir } from '../helpers/vmlet.js';
import { PodVmPool } from '../../src/pod/podvm-pool.js';
import { CLAIMED_BY } from '../../src/pod/pool-vm.js';
import type { VmSpec } from '../../src/vm/spec.js';
import type { PodManager } from '../../src/pod/manager.js';

let m: PodManager | undefined;
afterEach(async () => {
  await m?.stop();
  m = undefined;
});

describe('pod VM pool sweep', () => {
  it('removes idle VMs of an earlier run and keeps claimed ones', async () => {
    const vm = new MemoryDriver();
    m = await startMemoryManager({ stateDir: tempDir('vmlet-pool-sweep-'), vm });
    const pool = new PodVmPool(m, { size: 0, maxMemoryMiB: 2048 });
    const define = async (id: string) => {
      const name = `${pool.prefix}${id}`;
      await vm.define({ name } as VmSpec);
      await vm.start(name);
      mkdirSync(join(pool.root, id), { recursive: true });
      return name;
    };
    const idle = await define('pidle000001');
    const byRecord = await define('precord0001');
    const byFile = await define('pfile000001');
    const staleFile = await define('pstale00001');
    const other = 'vmletpool-00000000-pother00001'; // another vmlet's pool on the same libvirtd
    await vm.define({ name: other } as VmSpec);

    const s = await makeSandbox(m);
    s.podVm = { domainName: byRecord, agentSocket: '/x', scratch: '/x', consoleLog: '/x', kit: 'k', lastStream: 0, dir: join(pool.root, 'precord0001') };
    // A pod whose record was set aside: only its dir and the claim file say the VM is its.
    mkdirSync(m.store.sandboxDir('f'.repeat(64)), { recursive: true });
    writeFileSync(join(pool.root, 'pfile000001', CLAIMED_BY), 'f'.repeat(64));
    // A claim whose pod is gone entirely.
    writeFileSync(join(pool.root, 'pstale00001', CLAIMED_BY), 'e'.repeat(64));

    await pool.start();
    const names = await vm.allNames();
    expect(names).toContain(byRecord);
    expect(names).toContain(byFile);
    expect(names).toContain(other);
    expect(names).not.toContain(idle);
    expect(names).not.toContain(staleFile);
    expect(existsSync(join(pool.root, 'pidle000001'))).toBe(false);
    expect(existsSync(join(pool.root, 'pstale00001'))).toBe(false);
    expect(existsSync(join(pool.root, 'precord0001'))).toBe(true);
    expect(existsSync(join(pool.root, 'pfile000001'))).toBe(true);
    await pool.stop();
  });
});
