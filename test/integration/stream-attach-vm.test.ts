// Attach through the streaming server to a real VM's serial console: libvirt's pty from the live
// domain XML, a WebSocket client speaking v5.channel.k8s.io, the test guest's shell on ttyS0.
// Detaching leaves the VM running and virtlogd keeps writing the console log.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { DomainState, Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { StreamServer } from '../../src/stream/server.js';
import { vmStreamBackend } from '../../src/stream/vm-backend.js';
import { ConsoleAttacher } from '../../src/stream/console-attach.js';
import { serialPtyPath } from '../../src/vm/domain-xml.js';
import { kernelGuest, kernelGuestXml, READY_MARKER } from '../helpers/guest.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });
const lv = new Libvirt('qemu:///system', log);
const name = `vmlet-test-attach-${randomBytes(4).toString('hex')}`;
let server: StreamServer | undefined;

afterAll(async () => {
  await server?.close();
  await lv.destroyDomain(name).catch(() => undefined);
  await lv.undefineDomain(name).catch(() => undefined);
  await lv.close();
});

function stdoutOf(frames: Buffer[]): string {
  return Buffer.concat(frames.filter((f) => f[0] === 1).map((f) => f.subarray(1))).toString();
}

describe('attach to a VM serial console', () => {
  it('runs a command on the console shell; detach keeps the VM and its console log going', async () => {
    const accel = decideAccel('auto', probeHost());
    const consoleLog = join(tempDir('vmlet-attach-'), 'console.log');
    await lv.defineDomain(kernelGuestXml({ name, guest: kernelGuest(), domainType: accel.domainType, consoleLog }));
    await lv.startDomain(name);
    await waitFor(`${READY_MARKER} in console`, () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(READY_MARKER), {
      timeoutMs: 90_000,
      intervalMs: 50,
    });

    const pty = serialPtyPath(await lv.domainXML(name));
    expect(pty).toMatch(/^\/dev\/pts\/\d+$/);
    const attacher = new ConsoleAttacher();
    server = await StreamServer.start({
      log,
      backend: vmStreamBackend({ consolePty: async () => pty!, podAddress: async () => '127.0.0.1' }, attacher),
    });

    const url = server.registerAttach({ containerId: name, tty: true, stdin: true, stdout: true, stderr: false });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    const frames: Buffer[] = [];
    ws.on('message', (d: Buffer) => frames.push(d));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const send = (s: string) => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(s)]));

    // The shell may still be starting: repeat until its answer shows up.
    await waitFor('the guest shell answers', () => {
      send('echo vmlet-$((6*7))\r');
      return stdoutOf(frames).includes('vmlet-42');
    }, { timeoutMs: 60_000, intervalMs: 1000 });

    ws.close();
    await waitFor('console released', () => attacher.openCount === 0);
    expect((await lv.domainInfo(name)).state).toBe(DomainState.RUNNING);
    expect(readFileSync(consoleLog, 'utf8')).toContain('vmlet-42');

    // virtlogd still writes the console while nobody is attached: attach, type, detach, read the log.
    const ws2 = new WebSocket(server.registerAttach({ containerId: name, tty: true, stdin: true, stdout: true, stderr: false }), ['v5.channel.k8s.io']);
    await new Promise((r, j) => ws2.once('open', r).once('error', j));
    ws2.send(Buffer.concat([Buffer.from([0]), Buffer.from('sleep 1; echo later-$((7*7))\r')]));
    ws2.close();
    await waitFor('output written while detached', () => readFileSync(consoleLog, 'utf8').includes('later-49'), { timeoutMs: 30_000 });
    expect((await lv.domainInfo(name)).state).toBe(DomainState.RUNNING);
  });
});
