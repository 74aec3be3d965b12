// The VNC display end to end: a kernel-boot VM pod with vmlet.io/vnc through the real vmlet,
// libvirtd and QEMU (TCG here), `vmlet vnc` (dist/main.js) relaying its unix socket to a loopback
// port, and an RFB client (test/helpers/rfb.ts: Debian's vncsnapshot cannot be installed on this
// node; when it is on PATH it takes a screenshot too) that reads the guest's screen until it is
// not blank. Then `vmlet vnc`'s refusals, and a bzImage kernel booted from vmlet's XML showing its
// kernel console on the screen (console=tty0) while /dev/console stays the serial port.
// VMLET_VNC_SCREENSHOT=path.png saves the screen read through `vmlet vnc` (docs/vnc-console.png).
// Its own bridge, subnet (10.241.0.0/24) and IPAM dir, removed at the end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { pino } from 'pino';
import { call, MAIN, ROOT, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { runVmPod, stopVmSuite, vmletConfig, waitForAgent, waitForConsoleLine } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { frameStats, RfbClient, type Frame } from '../helpers/rfb.js';
import { encodePng } from '../helpers/png.js';
import { kernelGuest, READY_MARKER } from '../helpers/guest.js';
import { vncSocketPath } from '../../src/vm/vnc-socket.js';
import { resolveQemuUser, socketDirFor, type QemuIdentity } from '../../src/vm/qemu-user.js';
import { Libvirt } from '../../src/vm/libvirt.js';
import { decideAccel, probeHost } from '../../src/vm/accel.js';
import { parseVmSettings } from '../../src/vm/annotations.js';
import { buildVmSpec, DEBIAN_OVMF } from '../../src/vm/spec.js';
import { renderDomainXml, stripNvram } from '../../src/vm/domain-xml.js';
import type { ContainerStatusResponse__Output } from '../../src/gen/runtime/v1/ContainerStatusResponse.js';

const BRIDGE = `vmvnc${randomBytes(3).toString('hex')}`;
const NETWORK = `vmlet-vnc-${BRIDGE}`;
const NAMESPACE = 'vmlet-vnc';
let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let image = '';
const logDir = tempDir('vmlet-vnc-logs-');
const children = new Set<ChildProcess>();
const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const domains = new Set<string>();

beforeAll(async () => {
  const confDir = tempDir('vmlet-vnc-cni-');
  writeFileSync(
    join(confDir, '10-vnc.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: NETWORK,
      plugins: [{ type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', dataDir: join(confDir, 'ipam'), ranges: [[{ subnet: '10.241.0.0/24' }]] } }],
    }),
  );
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:vnc')).reference;
  // vmlet.io/vnc is gated (it adds an emulated VGA adapter): this node's operator allows it.
  v = await startVmlet({ config: vmletConfig(reg), cniConfDir: confDir, allowAnnotations: ['vmlet.io/vnc'] });
  await call(v.image, 'PullImage', { image: { image } });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await stopVmSuite(v, reg);
  for (const name of domains) {
    await lv.destroyDomain(name).catch(() => undefined);
    await lv.undefineDomain(name).catch(() => undefined);
  }
  await lv.close();
  await execa('ip', ['link', 'del', BRIDGE], { reject: false });
});

const rt = <T>(method: string, req: object) => call<object, T>(v!.runtime, method, req);

/** `vmlet vnc …` against the test vmlet's state dir, as a child process whose output is collected. */
function vmletVnc(args: string[]): { proc: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [MAIN, 'vnc', ...args, '--config', join(v!.dir, 'none.yaml'), '--state-dir', v!.stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, err: () => err, exited };
}

/** A `vmlet vnc` that must refuse: its exit code and what it said. */
async function refused(args: string[]): Promise<{ code: number | null; err: string }> {
  const r = vmletVnc(args);
  const code = await r.exited;
  return { code, err: r.err() };
}

/** Captures until the screen shows something: more than one colour, pixels off the background. */
async function drawnScreen(c: RfbClient, what: string, drawn: (f: Frame) => boolean = (f) => frameStats(f).colours > 1 && frameStats(f).foreground > 0): Promise<Frame> {
  let last: Frame | undefined;
  try {
    return await waitFor(what, async () => {
      last = await c.capture();
      return drawn(last) ? last : undefined;
    }, { timeoutMs: 90_000, intervalMs: 250 });
  } catch (err) {
    if (last) console.log(`last screen: ${JSON.stringify(frameStats(last))}`);
    throw err;
  }
}

describe('vmlet vnc', () => {
  it("relays a kernel-boot VM pod's display to a loopback port; an RFB client reads the guest's screen", async () => {
    const name = `vnc-${randomBytes(3).toString('hex')}`;
    const pod = await runVmPod(v!, { name, namespace: NAMESPACE, image, logDir, annotations: { 'vmlet.io/vnc': 'true' } });
    // The serial console, where the CRI log comes from, is as without a display; the guest agent's
    // virtio-serial controller (QEMU arguments, slot chosen by QEMU) still finds its PCI slot beside the VGA.
    await waitForConsoleLine(pod.log, READY_MARKER);
    expect(await waitForAgent(v!, pod.cid)).toBe(true);

    const st = await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: pod.cid, verbose: true });
    const { domain, domainXml } = JSON.parse(st.info.info!) as { domain: string; domainXml: string };
    const podDir = join(v!.stateDir, 'pods', pod.id);
    const socket = vncSocketPath(podDir, pod.id).path;
    expect(domainXml).toContain(`<graphics type='vnc' socket='${socket}'>`);
    expect(domainXml).toMatch(/<video>\s*<model type='vga'/);
    expect(domainXml).toMatch(/<cmdline>console=tty0 console=ttyS0 /);
    // The socket (QEMU's, connectable by whoever can reach it) sits in a directory only root can enter.
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(dirname(socket)).mode & 0o077).toBe(0);

    const proxy = vmletVnc([`${NAMESPACE}/${name}`, '--listen', '127.0.0.1:0']);
    const line = await waitFor('vmlet vnc to listen', () => /VNC display on 127\.0\.0\.1:(\d+) /.exec(proxy.out()) ?? (proxy.proc.exitCode !== null ? Promise.reject(new Error(`vmlet vnc exited ${proxy.proc.exitCode}: ${proxy.err()}`)) : undefined), { timeoutMs: 20_000 });
    const port = Number(line[1]);
    expect(proxy.out()).toContain(`pod ${NAMESPACE}/${name} (${pod.id.slice(0, 13)}), domain ${domain}: VNC display on 127.0.0.1:${port} (e.g. vncviewer 127.0.0.1::${port})`);

    const c = await RfbClient.connect({ host: '127.0.0.1', port });
    expect(c.name).toBe(`QEMU (${domain})`); // QEMU names the display after the domain: this pod's VM
    const frame = await drawnScreen(c, "the guest's screen to show something");
    const stats = frameStats(frame);
    console.log(`screen ${frame.width}x${frame.height}: ${JSON.stringify(stats)}`);
    expect(frame.width).toBeGreaterThan(0);
    expect(stats.colours).toBeGreaterThan(1);

    // A second viewer at the same time: its own connection to the display (a shared session).
    const c2 = await RfbClient.connect({ host: '127.0.0.1', port });
    const frame2 = await drawnScreen(c2, 'the second viewer to see the screen');
    expect([frame2.width, frame2.height]).toEqual([frame.width, frame.height]);
    c2.close();

    const shot = process.env.VMLET_VNC_SCREENSHOT;
    if (shot) {
      const path = resolve(ROOT, shot);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, encodePng(frame.width, frame.height, frame.rgb));
      console.log(`screenshot: ${path}`);
    }

    if (spawnSync('sh', ['-c', 'command -v vncsnapshot']).status === 0) {
      const jpeg = join(tempDir('vmlet-vnc-shot-'), 'screen.jpg');
      const r = await execa('vncsnapshot', ['-quiet', `127.0.0.1::${port}`, jpeg], { reject: false, timeout: 60_000 });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(jpeg).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8])); // a JPEG
    } else {
      console.log('vncsnapshot is not installed (Debian package vncsnapshot): the RFB test client alone read the screen');
    }
    c.close();

    // Ctrl-C: the relay ends cleanly and its port closes.
    proxy.proc.kill('SIGINT');
    expect(await proxy.exited).toBe(0);
    await expect(RfbClient.connect({ host: '127.0.0.1', port })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refuses, with what is wrong: a remote listen, an unknown pod, a pod without the display, a VM not running', async () => {
    const remote = await refused(['anything', '--listen', '0.0.0.0:0']);
    expect(remote.code).toBe(2);
    expect(remote.err).toMatch(/^vmlet vnc: --listen 0\.0\.0\.0:0: 0\.0\.0\.0 is not a loopback address.*--allow-remote/);

    const unknown = await refused(['no-such-pod', '--listen', '127.0.0.1:0']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toBe(`vmlet vnc: no pod "no-such-pod" in ${v!.stateDir}/pods (by id, id prefix, name or namespace/name)\n`);

    // Created, not started: no VM boots for these two.
    const headless = await runVmPod(v!, { name: `headless-${randomBytes(3).toString('hex')}`, namespace: NAMESPACE, image, logDir, start: false });
    const h = await refused([headless.id, '--listen', '127.0.0.1:0']);
    expect(h.code).toBe(1);
    expect(h.err).toMatch(/has no VNC display: its VM \(container [0-9a-f]{13}\) was created without the annotation vmlet\.io\/vnc: "true"/);
    expect(existsSync(vncSocketPath(join(v!.stateDir, 'pods', headless.id), headless.id).path)).toBe(false);

    const created = await runVmPod(v!, { name: `created-${randomBytes(3).toString('hex')}`, namespace: NAMESPACE, image, logDir, annotations: { 'vmlet.io/vnc': 'true' }, start: false });
    const c = await refused([created.id.slice(0, 12), '--listen', '127.0.0.1:0']);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/its VM is not running \(container [0-9a-f]{13} is created\)/);
  });

  it('the annotation with a bad value is refused at RunPodSandbox, naming it and the values allowed', async () => {
    const err = await runVmPod(v!, { name: 'bad-vnc', namespace: NAMESPACE, image, logDir, annotations: { 'vmlet.io/vnc': 'yes' } }).then(
      () => undefined,
      (e: { code: number; details: string }) => e,
    );
    expect(err).toMatchObject({ code: 3, details: 'annotation vmlet.io/vnc="yes" is invalid: allowed true | false' }); // INVALID_ARGUMENT
  });
});

describe('libvirt and QEMU take the display on every machine it is allowed on', () => {
  // q35 with hotplug root ports: vmlet's explicit slots start at 2, libvirt gives the VGA slot 1.
  const variants: Array<[string, Record<string, string>, { hotplugSlots?: number; uefi?: boolean }]> = [
    ['q35 with hotplug slots', {}, { hotplugSlots: 4 }],
    ['pc', { 'vmlet.io/machine': 'pc' }, {}],
    ['q35 with UEFI', { 'vmlet.io/firmware': 'uefi' }, { uefi: true }],
  ];
  it.for(variants)('%s: defined, started, the socket answers with RFB', async ([, annotations, o], ctx) => {
    if (o.uefi && !existsSync(DEBIAN_OVMF.code)) ctx.skip(`${DEBIAN_OVMF.code} missing (Debian's ovmf package)`);
    const accel = decideAccel('auto', probeHost());
    const dir = tempDir('vmlet-vnc-');
    const name = `vmlet-test-vnc-${randomBytes(3).toString('hex')}`;
    const settings = parseVmSettings({ sandboxAnnotations: { 'vmlet.io/vnc': 'true', ...annotations }, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 128 } });
    const qcow2 = join(dir, 'root.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '16M']);
    const sock = await qemuSocket(dir);
    const spec = buildVmSpec({
      name, domainType: accel.domainType, settings, boot: { kind: 'disk' }, disks: [{ path: qcow2, format: 'qcow2' }],
      consoleLog: join(dir, 'console.log'), nvramPath: join(dir, 'nvram.fd'), vncSocket: sock.path, qemuUser: sock.qemu,
      ...(o.hotplugSlots ? { hotplugSlots: o.hotplugSlots } : {}), metadata: { v: 1, sandboxId: 'vnc', containerId: 'vnc' },
    });
    domains.add(name);
    await lv.defineDomain(renderDomainXml(spec));
    await lv.startDomain(name);
    const c = await RfbClient.connect({ path: sock.path });
    expect(c.name).toBe(`QEMU (${name})`);
    expect(c.width).toBeGreaterThan(0);
    c.close();
    expect(await lv.domainXML(name)).toMatch(/<model type='vga'[^>]*primary='yes'/);
    await lv.destroyDomain(name);
    await lv.undefineDomain(name).catch(async () => {
      await lv.defineDomain(stripNvram(await lv.domainXML(name))); // libvirt undefines a UEFI domain only without its NVRAM
      await lv.undefineDomain(name);
    });
    domains.delete(name);
  });
});

/** A VNC socket in a dir of QEMU's own, and the user it runs as, as CreateContainer makes them (vm/qemu-user.ts). */
async function qemuSocket(dir: string): Promise<{ path: string; qemu: QemuIdentity }> {
  const qemu = await resolveQemuUser('libvirt-qemu');
  await socketDirFor(join(dir, 'qemu'), qemu);
  return { path: join(dir, 'qemu', 'vnc.sock'), qemu };
}

describe('the kernel console on the screen', () => {
  it('a bzImage kernel with the display writes its console there (console=tty0) while /dev/console stays the serial port', async () => {
    // vmlet's XML for a kernel that boots through the real-mode setup, which finds the VGA text
    // mode (the kernelboot image's ELF vmlinux boots through PVH, which does not: docs/vnc.md).
    const accel = decideAccel('auto', probeHost());
    const g = kernelGuest();
    const dir = tempDir('vmlet-vnc-');
    const sock = await qemuSocket(dir);
    const name = `vmlet-test-vnc-${randomBytes(3).toString('hex')}`;
    const settings = parseVmSettings({ sandboxAnnotations: { 'vmlet.io/vnc': 'true', 'vmlet.io/kernel-args': 'loglevel=7' }, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 256 } });
    const spec = buildVmSpec({
      name,
      domainType: accel.domainType,
      settings,
      boot: { kind: 'kernel', kernel: join(dirname(g.kernel), 'vmlinuz'), initrd: g.initrd, cmdline: g.cmdline },
      disks: [],
      consoleLog: join(dir, 'console.log'),
      vncSocket: sock.path,
      qemuUser: sock.qemu,
      metadata: { v: 1, sandboxId: 'vnc', containerId: 'vnc' },
    });
    expect(spec.boot).toMatchObject({ cmdline: `console=tty0 ${g.cmdline} loglevel=7` });
    domains.add(name);
    await lv.defineDomain(renderDomainXml(spec));
    await lv.startDomain(name);
    const log = join(dir, 'console.log');
    const serial = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
    await waitFor('the VNC socket', () => existsSync(sock.path), { timeoutMs: 30_000 });
    const c = await RfbClient.connect({ path: sock.path });
    // Text in the lower half: the kernel's messages, below the few lines SeaBIOS writes at the top.
    const lowerHalf = (f: Frame) => {
      const half = f.rgb.subarray(f.width * 3 * Math.floor(f.height / 2));
      return half.some((b) => b !== 0);
    };
    const frame = await drawnScreen(c, "the kernel's console on the screen", lowerHalf);
    c.close();
    console.log(`kernel console on screen ${frame.width}x${frame.height}: ${JSON.stringify(frameStats(frame))}`);
    // init writes to /dev/console: still the serial port, the last console= on the command line.
    await waitFor(`${READY_MARKER} in the serial log`, () => serial().includes(READY_MARKER), { timeoutMs: 90_000, intervalMs: 100 });
    expect(serial()).toContain('Console: colour VGA+'); // vgacon: the real-mode setup found the VGA text mode
    await lv.destroyDomain(name);
    await lv.undefineDomain(name);
    domains.delete(name);
  });
});
