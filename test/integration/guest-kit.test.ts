// The guest kit (node-install/build-guest-kit.sh, built by test/prepare.sh into .cache/guest-kit)
// booted with plain QEMU under TCG, with the devices a sandboxed pod's VM has: the agent's
// virtio-serial port, the image share over 9p, the scratch disk, a virtio NIC. vmlet.selftest=1
// makes /init try an overlay of an image dir (9p) and the scratch disk before the agent.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const KIT = process.env.VMLET_GUEST_KIT_DIR ?? join(ROOT, '.cache/guest-kit');
const BUILD = join(ROOT, 'node-install/build-guest-kit.sh');
const READY = 'VMLET-AGENT-READY';

interface Boot {
  qemu: ChildProcess;
  log: string;
  console: () => string;
  exited: Promise<number | null>;
}

const running: ChildProcess[] = [];
afterEach(() => {
  for (const p of running.splice(0)) if (p.exitCode === null && p.signalCode === null && p.pid) process.kill(p.pid, 'SIGKILL');
});

/** A mkfs'd scratch disk as the host makes it (src/guest/scratch.ts). */
function scratchDisk(dir: string): string {
  const img = join(dir, 'scratch.img');
  writeFileSync(img, '');
  spawnSync('truncate', ['-s', '256M', img]);
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', '-L', 'vmlet-scratch', img], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return img;
}

/** An images share holding one tiny rootfs dir with a token file the self-test reads. */
function imagesShare(dir: string): { path: string; token: string } {
  const path = join(dir, 'images');
  const token = randomBytes(8).toString('hex');
  mkdirSync(join(path, 'img-0', 'etc'), { recursive: true });
  mkdirSync(join(path, 'img-0', 'bin'));
  writeFileSync(join(path, 'img-0', 'etc', 'os-release'), 'ID=tiny\n');
  writeFileSync(join(path, 'img-0', 'vmlet-selftest'), `${token}\n`);
  return { path, token };
}

function boot(o: { dir: string; append: string; images?: string; shared?: string; scratch?: string; initrd?: string }): Boot {
  const log = join(o.dir, `console-${randomBytes(3).toString('hex')}.log`);
  const fd = openSync(log, 'w');
  const args = [
    '-machine', 'q35,accel=tcg', '-m', '256', '-display', 'none', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', join(KIT, 'vmlinux'), '-initrd', o.initrd ?? join(KIT, 'initrd.img'),
    '-append', `${readFileSync(join(KIT, 'cmdline'), 'utf8').trim()} ${o.append}`,
    '-device', 'virtio-serial',
    '-chardev', `socket,path=${join(o.dir, 'agent.sock')},server=on,wait=off,id=ag`,
    '-device', 'virtserialport,chardev=ag,name=vmlet.agent.0',
    // romfile=: no iPXE option ROM for SeaBIOS to run (the kernel is booted directly).
    '-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=',
    ...(o.images
      ? ['-fsdev', `local,id=img,path=${o.images},security_model=none,readonly=on`, '-device', 'virtio-9p-pci,fsdev=img,mount_tag=vmlet-images']
      : []),
    ...(o.shared
      ? ['-fsdev', `local,id=shr,path=${o.shared},security_model=none`, '-device', 'virtio-9p-pci,fsdev=shr,mount_tag=vmlet-shared']
      : []),
    ...(o.scratch
      ? ['-drive', `file=${o.scratch},format=raw,if=none,id=s0`, '-device', 'virtio-blk-pci,drive=s0,serial=vmlet-scratch']
      : []),
  ];
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  running.push(qemu);
  const exited = new Promise<number | null>((resolve) => qemu.once('exit', (code) => resolve(code)));
  const console = () => readFileSync(log, 'utf8').replace(/\r/g, '');
  return { qemu, log, console, exited };
}

async function waitConsole(b: Boot, marker: string, timeoutMs = 90_000): Promise<string> {
  return waitFor(`${marker} on the console (${b.log})`, () => {
    const text = b.console();
    if (b.qemu.exitCode !== null && !text.includes(marker)) throw new Error(`QEMU exited ${b.qemu.exitCode}:\n${text.slice(-2000)}`);
    return text.includes(marker) ? text : undefined;
  }, { timeoutMs, intervalMs: 50 });
}

const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));

/** A gzip'd newc archive with one executable file: appended to the kit's initrd, the kernel
 *  unpacks it last, so it replaces that file. */
function overlayArchive(path: string, content: string): Buffer {
  const parts: Buffer[] = [];
  const entry = (name: string, mode: number, data: Buffer, ino: number) => {
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
    const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const head = Buffer.from(`070701${fields.map(hex).join('')}${name}\0`, 'latin1');
    parts.push(head, Buffer.alloc((4 - (head.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4));
  };
  entry(path, 0o100755, Buffer.from(content), 2_000_001);
  entry('TRAILER!!!', 0, Buffer.alloc(0), 0);
  return gzipSync(Buffer.concat(parts));
}

describe('guest kit', () => {
  beforeAll(() => {
    for (const f of ['vmlinux', 'initrd.img', 'cmdline', 'VERSION']) {
      if (!existsSync(join(KIT, f))) throw new Error(`guest kit missing in ${KIT}: run test/prepare.sh (or node-install/build-guest-kit.sh ${KIT})`);
    }
  });

  it('boots to the agent with the 9p share, the scratch disk, overlay on 9p and the network', async () => {
    const dir = tempDir('vmlet-kit-');
    const images = imagesShare(dir);
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    const b = boot({
      dir,
      images: images.path,
      shared,
      scratch: scratchDisk(dir),
      append: 'vmlet.ip=10.0.2.15/24 vmlet.ip=fd00:1::15/64 vmlet.gw=10.0.2.2 vmlet.gw=fd00:1::2 vmlet.route=10.96.0.0/12@10.0.2.3 vmlet.route=192.168.7.0/24@ vmlet.mtu=1400 vmlet.selftest=1',
    });
    const text = await waitConsole(b, READY);
    expect(text).toMatch(/^VMLET-INIT \d+\.\d+$/m);
    expect(text).not.toContain('vmlet-init:'); // no warnings
    expect(line(text, 'VMLET-SELFTEST-LOWER')).toBe(`VMLET-SELFTEST-LOWER ${images.token}`);
    expect(line(text, 'VMLET-SELFTEST ')).toBe('VMLET-SELFTEST ok lower=img-0 entries=3 scratch=ext4');
    const net = line(text, 'VMLET-SELFTEST-NET ')!;
    expect(net).toMatch(/^VMLET-SELFTEST-NET eth0 mtu=1400 addrs=10\.0\.2\.15\/24,fd00:1::15\/64,/);
    expect(net).toContain('default via 10.0.2.2 dev eth0 onlink');
    expect(net).toContain('10.96.0.0/12 via 10.0.2.3 dev eth0 onlink');
    expect(net).toContain('192.168.7.0/24 dev eth0 scope link');
    expect(net).toMatch(/routes6=.*default via fd00:1::2 dev eth0/);
    expect(text).toMatch(/^VMLET-TIMES mounts=[\d.]+ modules=[\d.]+ net=[\d.]+ disks=[\d.]+ agent=[\d.]+$/m);
    const mem = /^VMLET-MEM total=(\d+)kB available=(\d+)kB$/m.exec(text);
    expect(Number(mem?.[2])).toBeGreaterThan(100_000);
    expect(existsSync(join(dir, 'agent.sock'))).toBe(true);
  });

  it('without a scratch disk: tmpfs and a warning; IPv4 /32 gets an on-link route to its gateway', async () => {
    const dir = tempDir('vmlet-kit-');
    const images = imagesShare(dir);
    mkdirSync(join(dir, 'shared'));
    const b = boot({ dir, images: images.path, shared: join(dir, 'shared'), append: 'vmlet.ip=10.0.2.15/32 vmlet.gw=10.0.2.2 vmlet.selftest=1' });
    const text = await waitConsole(b, READY);
    expect(text).toContain('vmlet-init: no scratch disk (virtio-blk serial vmlet-scratch): tmpfs at /run/vmlet/scratch');
    expect(line(text, 'VMLET-SELFTEST ')).toBe('VMLET-SELFTEST ok lower=img-0 entries=3 scratch=tmpfs');
    const net = line(text, 'VMLET-SELFTEST-NET ')!;
    expect(net).toContain('addrs=10.0.2.15/32,');
    expect(net).toContain('10.0.2.2 dev eth0 scope link');
    expect(net).toContain('default via 10.0.2.2 dev eth0 onlink');
  });

  it('powers off when the agent exits, and says with which code (and warns about a missing share)', async () => {
    const dir = tempDir('vmlet-kit-');
    const initrd = join(dir, 'initrd.img');
    writeFileSync(initrd, Buffer.concat([readFileSync(join(KIT, 'initrd.img')), overlayArchive('sbin/vmlet-agent', '#!/bin/sh\necho VMLET-AGENT-READY fake\nexit 3\n')]));
    const b = boot({ dir, initrd, scratch: scratchDisk(dir), append: '' });
    const code = await waitFor('QEMU to exit after the agent', () => (b.qemu.exitCode !== null ? b.qemu.exitCode : undefined), { timeoutMs: 90_000 });
    expect(b.console()).toContain('VMLET-AGENT-READY fake');
    expect(b.console()).toContain('VMLET-AGENT-EXITED 3');
    expect(b.console()).toContain('vmlet-init: no image share (virtiofs or 9p tag vmlet-images)'); // this VM had none
    expect(code).toBe(0);
  });

  it("carries its modules unsigned, as the kernel does not enforce signatures (checking them under TCG doubled the modules' load)", () => {
    const dir = tempDir('vmlet-kit-modules-');
    const r = spawnSync('sh', ['-c', `gzip -dc "$1" | cpio -idm --quiet 'lib/modules/*'`, 'sh', join(KIT, 'initrd.img')], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const [krel] = readdirSync(join(dir, 'lib/modules'));
    const modules = readdirSync(join(dir, 'lib/modules', krel!)).filter((f) => f.endsWith('.ko'));
    expect(modules).toEqual(expect.arrayContaining(['ext4.ko', 'virtio_net.ko', 'virtiofs.ko', '9p.ko', 'overlay.ko']));
    const marker = Buffer.from('~Module signature appended~\n');
    for (const m of modules) {
      const data = readFileSync(join(dir, 'lib/modules', krel!, m));
      expect(data.subarray(0, 4).toString('latin1'), `${m} is an ELF file`).toBe('\x7fELF');
      expect(data.subarray(-marker.length).equals(marker), `${m} has no signature appended`).toBe(false);
    }
  });

  it('is reproducible, and a rerun with unchanged inputs does nothing', () => {
    const dir = tempDir('vmlet-kit-build-');
    const build = (out: string) => {
      const r = spawnSync('bash', [BUILD, out], { encoding: 'utf8', timeout: 600_000 });
      expect(r.status, r.stderr + r.stdout).toBe(0);
      return r.stdout;
    };
    const a = join(dir, 'a');
    expect(build(a)).toMatch(/==> done: /);
    // "Does nothing": not a file of the kit is rewritten (its mtimes stay as they were).
    const mtimes = () => readdirSync(a).map((f) => `${f} ${statSync(join(a, f)).mtimeMs}`);
    const before = mtimes();
    expect(build(a)).toMatch(/==> up to date: /);
    expect(mtimes()).toEqual(before);
    const stampKey = (d: string) => /^key=(.*)$/m.exec(readFileSync(join(d, 'stamp'), 'utf8'))?.[1];
    // The test kit was built from the same inputs unless the sources changed since: else build twice.
    let b = KIT;
    if (stampKey(KIT) !== stampKey(a)) build((b = join(dir, 'b')));
    for (const f of ['vmlinux', 'initrd.img', 'cmdline', 'VERSION']) {
      expect(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), f).toBe(true);
    }
    expect(readFileSync(join(a, 'VERSION'), 'utf8')).toMatch(/^[0-9a-f]{12}-\d[\w.+~-]*\n$/);
  });
});
