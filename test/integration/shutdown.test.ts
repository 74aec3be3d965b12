// Graceful shutdown lets an in-flight call finish. The CRI server runs in-process here with a
// stand-in libvirt whose health check blocks until the test releases it: a real libvirtd cannot be made
// to hold one call open on cue, and only that makes "in flight at shutdown" deterministic.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { startCriServer } from '../../src/cri/server.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { ImageStore } from '../../src/image/store.js';
import { StreamServer } from '../../src/stream/server.js';
import { vmStreamBackend } from '../../src/stream/vm-backend.js';
import { validate, defaults } from '../../src/config.js';
import type { Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { call, clients, tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';
import type { StatusResponse__Output } from '../../src/gen/runtime/v1/StatusResponse.js';

describe('CRI server shutdown', () => {
  it('finishes an in-flight call, then removes the socket', async () => {
    const dir = tempDir();
    const config = validate({ ...defaults, socket: join(dir, 'vmlet.sock'), stateDir: join(dir, 'state') });
    let release!: () => void;
    let pinged = false;
    const blockingLibvirt = {
      connect: async () => undefined,
      close: async () => undefined,
      // Status asks libvirt whether it answers (Libvirt.healthy: a ping unless one answered lately).
      healthy: () => {
        pinged = true;
        return new Promise<void>((resolve) => (release = resolve));
      },
    } as unknown as Libvirt;
    const log = pino({ level: 'silent' });
    const runtime = new Runtime(config, log, blockingLibvirt, decideAccel('auto', probeHost()));
    await runtime.start();
    const images = new ImageStore(join(dir, 'images'), config.registries, log);
    await images.init();
    const streams = await StreamServer.start({ log, backend: vmStreamBackend({ consolePty: async () => '', podAddress: async () => '' }) });
    const server = await startCriServer(config.socket, { runtime, images, pods: undefined as never, streams, containerDir: join(dir, 'pods') }, log);
    const { runtime: client } = clients(config.socket);

    const pending = call<object, StatusResponse__Output>(client, 'Status', {});
    await waitFor('Status to reach libvirt', () => pinged);
    let shutDown = false;
    const closing = server.shutdown(30_000).then(() => (shutDown = true));
    // Still waiting on the call: shutdown must not have completed.
    await new Promise((r) => setImmediate(r));
    expect(shutDown).toBe(false);
    release();
    const res = await pending;
    expect(res.status!.conditions.find((c) => c.type === 'RuntimeReady')?.status).toBe(true);
    await closing;
    await streams.close();
    expect(existsSync(config.socket)).toBe(false);
  });
});
