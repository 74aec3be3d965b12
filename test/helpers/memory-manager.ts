// A PodManager over a state dir and the in-memory VM driver, started (recovery included), its
// JSON log lines collected: what the pod-layer unit tests run the verbs against.
import { Writable } from 'node:stream';
import { defaults, type Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { ImageStore } from '../../src/image/store.js';
import type { AccelDecision } from '../../src/vm/accel.js';
import { PodManager } from '../../src/pod/manager.js';
import { newId } from '../../src/pod/ids.js';
import { nowNs, type SandboxRecord } from '../../src/pod/records.js';
import type { MemoryDriver } from './memory-driver.js';

export async function startMemoryManager(o: { stateDir: string; vm: MemoryDriver; lines?: Array<Record<string, unknown>>; images?: ImageStore }): Promise<PodManager> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (o.lines) for (const l of chunk.toString().split('\n').filter(Boolean)) o.lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const config: Config = { ...defaults, stateDir: o.stateDir };
  const accel = { accel: 'tcg', domainType: 'qemu', facts: {} } as unknown as AccelDecision;
  const m = new PodManager({ config, log: createLogger('info', sink), vm: o.vm, images: o.images ?? ({} as ImageStore), accel });
  // No safety poll during a test: exits come from the driver's events.
  await m.start(3_600_000);
  return m;
}

/** A ready VM-image pod as RunPodSandbox records it (no netns, no network), saved and indexed. */
export async function makeSandbox(m: PodManager): Promise<SandboxRecord> {
  const id = newId();
  const s: SandboxRecord = { id, config: { metadata: { name: 'p', namespace: 'ns', uid: `uid-${id.slice(0, 8)}`, attempt: 0 } } as SandboxRecord['config'], runtimeHandler: 'vmlet', state: 'ready', createdAt: nowNs() };
  await m.store.saveSandbox(s);
  m.sandboxes.set(id, s);
  return s;
}
