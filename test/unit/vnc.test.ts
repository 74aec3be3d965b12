// `vmlet vnc`'s parts that need no VM: the --listen rule (loopback unless --allow-remote), the
// socket path rule shared with CreateContainer, and finding a pod's display in real records on
// disk (a temp state dir written by PodStateStore), with each error a user can meet. The relay to
// a real QEMU is test/integration/vnc.test.ts.
import { describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { checkListen, findVncTarget, isLoopback, parseListen, startVncProxy, VncError } from '../../src/vnc.js';
import { existingVncSocket, vncSocketPath, VNC_SOCKET_FALLBACK_DIR } from '../../src/vm/vnc-socket.js';
import { createdContainer, nowNs, PodStateStore, type ContainerRecord, type SandboxRecord } from '../../src/pod/records.js';
import { parseVmSettings, type MachineSettings } from '../../src/vm/annotations.js';
import { newId } from '../../src/pod/ids.js';
import { tempDir } from '../helpers/vmlet.js';

const log = pino({ level: 'silent' });

async function vncError(p: Promise<unknown> | (() => unknown)): Promise<VncError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(VncError);
    return err as VncError;
  }
  throw new Error('expected a VncError');
}

describe('--listen', () => {
  it.each([
    ['127.0.0.1:5900', { host: '127.0.0.1', port: 5900 }],
    ['5901', { host: '127.0.0.1', port: 5901 }],
    ['localhost:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:5900', { host: '::1', port: 5900 }],
    ['0.0.0.0:5900', { host: '0.0.0.0', port: 5900 }],
    ['[::]:65535', { host: '::', port: 65535 }],
  ])('parses %s', (value, want) => {
    expect(parseListen(value)).toEqual(want);
  });

  it.each(['', ':5900', '127.0.0.1', '127.0.0.1:65536', '127.0.0.1:-1', 'example.com:5900', '::1:5900', '[127.0.0.1]:5900', '[::1]', '1.2.3:5900', '127.0.0.1:59 00'])(
    'refuses %j as a usage error naming the flag and the forms allowed',
    async (value) => {
      const err = await vncError(() => parseListen(value));
      expect(err.exitCode).toBe(2);
      expect(err.message).toBe(`--listen ${JSON.stringify(value)}: expected HOST:PORT (e.g. 127.0.0.1:5900), [IPv6]:PORT or PORT, HOST an IP address or localhost, PORT 0–65535`);
    },
  );

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.1', '::', '128.0.0.1', '::ffff:10.0.0.1', 'fe80::1']) expect(isLoopback(h)).toBe(false);
  });

  it('refuses a non-loopback address unless --allow-remote says so too', async () => {
    const err = await vncError(() => checkListen('0.0.0.0:5900', false));
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/^--listen 0\.0\.0\.0:5900: 0\.0\.0\.0 is not a loopback address, and the VNC display has no password or encryption.*add --allow-remote/);
    expect(checkListen('0.0.0.0:5900', true)).toEqual({ host: '0.0.0.0', port: 5900 });
    expect(checkListen('[::1]:0', false)).toEqual({ host: '::1', port: 0 });
  });
});

describe('the VNC socket path', () => {
  it('is in a qemu/ dir of the pod dir when it fits a unix socket path (107 bytes), else under /run/vmlet/vnc by pod id', () => {
    const id = 'a'.repeat(64);
    expect(vncSocketPath(`/var/lib/vmlet/pods/${id}`, id)).toEqual({ path: `/var/lib/vmlet/pods/${id}/qemu/vnc.sock`, dir: `/var/lib/vmlet/pods/${id}/qemu`, fallback: false });
    const dir93 = '/' + 'd'.repeat(92); // + '/qemu/vnc.sock' = 107 bytes
    expect(vncSocketPath(dir93, id)).toEqual({ path: `${dir93}/qemu/vnc.sock`, dir: `${dir93}/qemu`, fallback: false });
    expect(vncSocketPath(dir93 + 'x', id)).toEqual({ path: `${VNC_SOCKET_FALLBACK_DIR}/${id}/vnc.sock`, dir: `${VNC_SOCKET_FALLBACK_DIR}/${id}`, fallback: true });
  });
});

describe('the socket vmlet vnc dials', () => {
  it('is the qemu/ one, or the old pod-dir one of a VM started while QEMU ran as root', () => {
    const id = 'b'.repeat(64);
    const podDir = join(tempDir('vmlet-vncs-'), id);
    mkdirSync(podDir);
    expect(existingVncSocket(podDir, id)).toBe(join(podDir, 'qemu', 'vnc.sock')); // neither: the new one
    writeFileSync(join(podDir, 'vnc.sock'), '');
    expect(existingVncSocket(podDir, id)).toBe(join(podDir, 'vnc.sock'));
    mkdirSync(join(podDir, 'qemu'));
    writeFileSync(join(podDir, 'qemu', 'vnc.sock'), '');
    expect(existingVncSocket(podDir, id)).toBe(join(podDir, 'qemu', 'vnc.sock'));
  });
});

describe('finding a pod\'s display in the state dir', () => {
  const settings = (vnc: boolean): MachineSettings => {
    const { cloudInit: _, ...machine } = parseVmSettings({ sandboxAnnotations: vnc ? { 'vmlet.io/vnc': 'true' } : {}, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 512 } });
    return machine;
  };

  async function state() {
    const stateDir = tempDir('vmlet-vnc-unit-');
    const store = new PodStateStore(join(stateDir, 'pods'), log);
    const pod = async (name: string, o: Partial<SandboxRecord> = {}, namespace = 'default') => {
      const s: SandboxRecord = { id: newId(), config: { metadata: { name, namespace, uid: newId(), attempt: 0 } } as SandboxRecord['config'], runtimeHandler: 'vmlet', state: 'ready', createdAt: nowNs(), ...o };
      await store.saveSandbox(s);
      return s;
    };
    const vm = async (s: SandboxRecord, o: { vnc?: boolean; state?: ContainerRecord['state']; settings?: MachineSettings | undefined } = {}) => {
      const c = createdContainer({ id: newId(), sandboxId: s.id, config: { metadata: { name: 'vm', attempt: 0 } } as ContainerRecord['config'], image: 'i', imageId: 'sha256:i', domainName: `vmlet-${s.id.slice(0, 8)}`, logPath: '', consoleLog: '', files: [], settings: settings(o.vnc ?? true) });
      if ('settings' in o && o.settings === undefined) delete c.settings; // a record from before vmlet kept settings
      c.state = o.state ?? 'running';
      await store.saveContainer(c);
      return c;
    };
    return { stateDir, store, pod, vm };
  }

  it('by id, id prefix, name or namespace/name; the socket is the one CreateContainer chose', async () => {
    const { stateDir, pod, vm } = await state();
    const s = await pod('web');
    const c = await vm(s);
    const socket = vncSocketPath(join(stateDir, 'pods', s.id), s.id).path; // in the pod dir, or the fallback: this temp dir is deep
    for (const q of [s.id, s.id.slice(0, 6), s.id.toUpperCase(), 'web', 'default/web']) {
      expect(await findVncTarget(stateDir, q, log)).toMatchObject({ sandbox: { id: s.id }, container: { id: c.id }, socket });
    }
  });

  it('of several pods by one name, the ready one; else it asks for the id', async () => {
    const { stateDir, pod, vm } = await state();
    const old = await pod('db', { state: 'notready' });
    await vm(old, { state: 'exited' });
    const now = await pod('db');
    await vm(now);
    expect((await findVncTarget(stateDir, 'db', log)).sandbox.id).toBe(now.id);
    const other = await pod('db', {}, 'other');
    await vm(other);
    const err = await vncError(findVncTarget(stateDir, 'db', log));
    expect(err.message).toMatch(/^"db" names 2 pods: (default|other)\/db \([0-9a-f]{13}\), (default|other)\/db \([0-9a-f]{13}\); give its id$/);
    expect(err.message).not.toContain(old.id.slice(0, 13)); // the replaced pod is not a candidate
    expect((await findVncTarget(stateDir, 'other/db', log)).sandbox.id).toBe(other.id);
  });

  it('says what is missing: the pod, its VM, the annotation, a running VM', async () => {
    const { stateDir, pod, vm } = await state();
    await pod('empty');
    expect((await vncError(findVncTarget(stateDir, 'nope', log))).message).toBe(`no pod "nope" in ${stateDir}/pods (by id, id prefix, name or namespace/name)`);
    expect((await vncError(findVncTarget(stateDir, 'empty', log))).message).toMatch(/^pod default\/empty \([0-9a-f]{13}\) has no VM yet/);
    await vm(await pod('headless'), { vnc: false });
    expect((await vncError(findVncTarget(stateDir, 'headless', log))).message).toMatch(/^pod default\/headless .* has no VNC display: its VM \(container [0-9a-f]{13}\) was created without the annotation vmlet\.io\/vnc: "true"/);
    await vm(await pod('older'), { settings: undefined });
    expect((await vncError(findVncTarget(stateDir, 'older', log))).message).toMatch(/has no VNC display/);
    await vm(await pod('stopped'), { state: 'exited' });
    expect((await vncError(findVncTarget(stateDir, 'stopped', log))).message).toMatch(/^pod default\/stopped .*: its VM is not running \(container [0-9a-f]{13} is exited\)/);
    await pod('sb', { kind: 'sandboxed' });
    expect((await vncError(findVncTarget(stateDir, 'sb', log))).message).toMatch(/is a sandboxed pod .*vmlet\.io\/vnc is for VM-image pods/);
    for (const q of ['nope', 'empty', 'headless', 'stopped', 'sb']) expect((await vncError(findVncTarget(stateDir, q, log))).exitCode).toBe(1);
  });

  it('a state dir without pods is an error, not made', async () => {
    const stateDir = join(tempDir('vmlet-vnc-unit-'), 'typo');
    expect((await vncError(findVncTarget(stateDir, 'web', log))).message).toBe(`no pods: ${stateDir}/pods does not exist (is --state-dir, or the config's stateDir, right?)`);
  });
});

describe('the relay', () => {
  it('refuses to open a port when nothing listens on the socket (VM stopped), and says so', async () => {
    const dir = tempDir('vmlet-vnc-unit-');
    const err = await vncError(startVncProxy(join(dir, 'vnc.sock'), { host: '127.0.0.1', port: 0 }, log));
    expect(err.message).toBe(`VNC socket ${join(dir, 'vnc.sock')}: nothing listens there: the VM has stopped (or is not started yet)`);
  });

  it('names a port in use', async () => {
    const dir = tempDir('vmlet-vnc-unit-');
    const socket = join(dir, 'display.sock');
    const display = createServer((c) => c.end()).listen(socket); // a stand-in for QEMU's socket: only the probe connects
    const taken = createServer().listen(0, '127.0.0.1');
    await Promise.all([new Promise((r) => display.once('listening', r)), new Promise((r) => taken.once('listening', r))]);
    const port = (taken.address() as { port: number }).port;
    try {
      const err = await vncError(startVncProxy(socket, { host: '127.0.0.1', port }, log));
      expect(err.message).toBe(`127.0.0.1:${port} is in use (another vmlet vnc?): choose another port with --listen`);
    } finally {
      display.close();
      taken.close();
    }
  });
});
