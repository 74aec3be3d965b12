// ExitWatches (src/pod/exit-watch.ts) against a stand-in QEMU: a unix socket that speaks QMP's
// greeting and negotiation, then closes as a dying QEMU's does (the real QEMU:
// test/integration/qmp-watch.test.ts). A kill is reported at once, and settled() holds callers
// until the VM driver (a MemoryDriver) no longer has the domain active, as libvirtd tears it down.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ExitWatches } from '../../src/pod/exit-watch.js';
import { MAX_LINE_BYTES, monitorSocketBeside, type QmpEnd } from '../../src/vm/qmp-watch.js';
import { agentSocketPath } from '../../src/vm/guest-agent.js';
import type { VmState } from '../../src/vm/driver.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A QMP server at `path`: greeting, {"return": {}} per command; `conn` is the client's socket once it came. */
async function fakeQemu(path: string): Promise<{ conn: () => Socket | undefined }> {
  let conn: Socket | undefined;
  const srv = createServer((s) => {
    conn = s;
    s.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
    s.on('data', (d) => {
      for (const line of d.toString().split('\n')) if (line.trim()) s.write('{"return": {}}\r\n');
    });
  });
  servers.push(srv);
  mkdirSync(join(path, '..'), { recursive: true });
  await new Promise<void>((r) => srv.listen(path, r));
  return { conn: () => conn };
}

function setup(states: VmState[]) {
  const dir = tempDir('vmlet-exitwatch-');
  const c = { key: 'c1', domain: 'vmlet-d1', socket: monitorSocketBeside(agentSocketPath(dir, 'c1').path), ids: { containerId: 'c1' } };
  const ends: Array<[string, QmpEnd]> = [];
  const asked: VmState[] = [];
  const vm = {
    state: async () => {
      const s = states.shift() ?? 'shutoff';
      asked.push(s);
      return s;
    },
  };
  const w = new ExitWatches({ vm: vm as never, log: pino({ level: 'silent' }), onEnd: (domain, end) => ends.push([domain, end]) });
  return { c, w, ends, asked, socket: c.socket };
}

describe('ExitWatches', () => {
  it("reports a QEMU that went away without a SHUTDOWN as 'crashed', and settled() waits for libvirt's teardown", async () => {
    const t = setup(['running', 'running', 'shutoff']);
    const q = await fakeQemu(t.socket);
    await t.w.watch(t.c);
    await t.w.settled([t.c.domain]); // nothing ending yet: libvirt not even asked
    expect(t.asked).toEqual([]);
    q.conn()!.destroy(); // QEMU died
    await waitFor('the end', () => t.ends.length > 0, { timeoutMs: 5_000, intervalMs: 2 });
    expect(t.ends).toEqual([['vmlet-d1', 'crashed']]);
    await t.w.settled([t.c.domain, 'vmlet-other']);
    expect(t.asked).toEqual(['running', 'running', 'shutoff']); // held until libvirt let go of the domain
  });

  it('forgets a watch that QEMU made it drop (a line over its limit): no end, and the VM is no longer listed as watched', async () => {
    const t = setup([]);
    const q = await fakeQemu(t.socket);
    await t.w.watch(t.c);
    expect(t.w.watching(t.c.key)).toBe(true);
    q.conn()!.write('{"event": "X", "data": "' + 'x'.repeat(MAX_LINE_BYTES + 1));
    await waitFor('the watch to be forgotten', () => !t.w.watching(t.c.key), { timeoutMs: 5_000, intervalMs: 2 });
    expect(t.ends).toEqual([]);
  });

  it('says nothing for a VM it stopped watching, and watches nothing where there is no socket', async () => {
    const t = setup([]);
    const q = await fakeQemu(t.socket);
    await t.w.watch(t.c);
    t.w.unwatch(t.c.key);
    q.conn()!.destroy();
    const other = { ...t.c, key: 'c2', socket: `${t.c.socket}.none` }; // no socket for it
    await t.w.watch(other);
    await t.w.settled([t.c.domain]);
    expect(t.ends).toEqual([]);
    expect(t.asked).toEqual([]);
  });
});
