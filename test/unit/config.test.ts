import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, defaults, loadConfig } from '../../src/config.js';
import { tempDir } from '../helpers/vmlet.js';

function file(text: string): string {
  const p = join(tempDir('vmlet-config-'), 'config.yaml');
  writeFileSync(p, text);
  return p;
}

describe('config', () => {
  it('uses the defaults when the default file is absent', () => {
    const { config, file: used } = loadConfig({ env: { VMLET_CONFIG: undefined }, flags: {} });
    if (used === undefined) expect(config).toEqual(defaults);
  });

  it('layers flags over env over file over defaults', () => {
    const path = file('socket: /file.sock\nstateDir: /file-state\nlogLevel: warn\ncni:\n  confDir: /file-cni\n');
    const { config, file: used } = loadConfig({
      env: { VMLET_CONFIG: path, VMLET_STATE_DIR: '/env-state', VMLET_LOG_LEVEL: 'error' },
      flags: { logLevel: 'debug' },
    });
    expect(used).toBe(path);
    expect(config.socket).toBe('/file.sock');
    expect(config.stateDir).toBe('/env-state');
    expect(config.logLevel).toBe('debug');
    expect(config.cni).toEqual({ confDir: '/file-cni', binDirs: defaults.cni.binDirs });
    expect(config.libvirtUri).toBe(defaults.libvirtUri);
  });

  it('a flag may set one cni field without dropping the other', () => {
    const { config } = loadConfig({ env: {}, flags: { config: file(''), cni: { binDirs: ['/x'], confDir: undefined } } });
    expect(config.cni).toEqual({ confDir: defaults.cni.confDir, binDirs: ['/x'] });
  });

  it('names the key and the allowed values for a bad value', () => {
    expect(() => loadConfig({ env: {}, flags: { config: file('hypervisor: xen\n') } })).toThrow(
      new ConfigError('config "hypervisor" is "xen"; allowed: auto, kvm, tcg'),
    );
    expect(() => loadConfig({ env: {}, flags: { config: file('cgroupDriver: 3\n') } })).toThrow(/cgroupDriver.*allowed: auto, systemd, cgroupfs/);
    expect(() => loadConfig({ env: {}, flags: { config: file('handlers: []\n') } })).toThrow(/handlers/);
  });

  it('rejects an unknown key, a missing explicit file and broken YAML', () => {
    expect(() => loadConfig({ env: {}, flags: { config: file('sokcet: /x\n') } })).toThrow(/unknown key "sokcet"/);
    expect(() => loadConfig({ env: {}, flags: { config: '/nonexistent/vmlet.yaml' } })).toThrow(/cannot read config file/);
    expect(() => loadConfig({ env: {}, flags: { config: file('a: [\n') } })).toThrow(/not valid YAML/);
  });

  it('imageRootfs: erofs by default, tree from the file or VMLET_IMAGE_ROOTFS, nothing else', () => {
    expect(defaults.imageRootfs).toBe('erofs');
    expect(loadConfig({ env: { VMLET_CONFIG: file('imageRootfs: tree\n') } }).config.imageRootfs).toBe('tree');
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_IMAGE_ROOTFS: 'tree' } }).config.imageRootfs).toBe('tree');
    expect(() => loadConfig({ env: {}, flags: { config: file('imageRootfs: squashfs\n') } })).toThrow(new ConfigError('config "imageRootfs" is "squashfs"; allowed: erofs, tree'));
  });

  it('imageRootfsAtPull: true by default, false from the file or VMLET_IMAGE_ROOTFS_AT_PULL, nothing but a boolean', () => {
    expect(defaults.imageRootfsAtPull).toBe(true);
    expect(loadConfig({ env: { VMLET_CONFIG: file('imageRootfsAtPull: false\n') } }).config.imageRootfsAtPull).toBe(false);
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_IMAGE_ROOTFS_AT_PULL: 'false' } }).config.imageRootfsAtPull).toBe(false);
    expect(() => loadConfig({ env: {}, flags: { config: file('imageRootfsAtPull: sometimes\n') } })).toThrow(new ConfigError('config "imageRootfsAtPull" must be true or false'));
  });

  it('podVmAtPull: true by default, false from the file or VMLET_POD_VM_AT_PULL, nothing but a boolean', () => {
    expect(defaults.podVmAtPull).toBe(true);
    expect(loadConfig({ env: { VMLET_CONFIG: file('podVmAtPull: false\n') } }).config.podVmAtPull).toBe(false);
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_POD_VM_AT_PULL: 'false' } }).config.podVmAtPull).toBe(false);
    expect(() => loadConfig({ env: {}, flags: { config: file('podVmAtPull: 1\n') } })).toThrow(new ConfigError('config "podVmAtPull" must be true or false'));
  });

  it('podVmBios: qboot by default, seabios from the file or VMLET_POD_VM_BIOS, nothing else', () => {
    expect(defaults.podVmBios).toBe('qboot');
    expect(loadConfig({ env: { VMLET_CONFIG: file('podVmBios: seabios\n') } }).config.podVmBios).toBe('seabios');
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_POD_VM_BIOS: 'seabios' } }).config.podVmBios).toBe('seabios');
    expect(() => loadConfig({ env: {}, flags: { config: file('podVmBios: ovmf\n') } })).toThrow(new ConfigError('config "podVmBios" is "ovmf"; allowed: qboot, seabios'));
  });

  it('reads handlers from VMLET_HANDLERS', () => {
    const { config } = loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_HANDLERS: 'vmlet, vm-fast' } });
    expect(config.handlers).toEqual(['vmlet', 'vm-fast']);
  });

  it('reads guestKitDir from the file, VMLET_GUEST_KIT_DIR and flags, and wants an absolute path', () => {
    expect(defaults.guestKitDir).toBe('/usr/local/lib/vmlet/guest');
    const path = file('guestKitDir: /file/kit\n');
    expect(loadConfig({ env: { VMLET_CONFIG: path } }).config.guestKitDir).toBe('/file/kit');
    expect(loadConfig({ env: { VMLET_CONFIG: path, VMLET_GUEST_KIT_DIR: '/env/kit' } }).config.guestKitDir).toBe('/env/kit');
    expect(loadConfig({ env: { VMLET_CONFIG: path, VMLET_GUEST_KIT_DIR: '/env/kit' }, flags: { guestKitDir: '/flag/kit' } }).config.guestKitDir).toBe('/flag/kit');
    expect(() => loadConfig({ env: {}, flags: { config: file('guestKitDir: kit\n') } })).toThrow(
      new ConfigError('config "guestKitDir" is "kit"; it must be an absolute path'),
    );
    expect(() => loadConfig({ env: {}, flags: { config: file('guestKitDir: ""\n') } })).toThrow(/"guestKitDir" must be a non-empty string/);
  });

  it('reads socketGroup as a group name or a gid (digits are a gid), default 0 (root)', () => {
    expect(defaults.socketGroup).toBe(0);
    expect(loadConfig({ env: {}, flags: { config: file('socketGroup: kubelet\n') } }).config.socketGroup).toBe('kubelet');
    expect(loadConfig({ env: {}, flags: { config: file('socketGroup: 991\n') } }).config.socketGroup).toBe(991);
    expect(loadConfig({ env: { VMLET_CONFIG: file('socketGroup: kubelet\n'), VMLET_SOCKET_GROUP: '65534' } }).config.socketGroup).toBe(65534);
    for (const bad of ['-1', 'kube let', '"a:b"', '4294967295', 'true']) {
      expect(() => loadConfig({ env: {}, flags: { config: file(`socketGroup: ${bad}\n`) } }), bad).toThrow(/config "socketGroup" is .*; it must be a group name \(e\.g\. kubelet\) or a gid/);
    }
  });

  it('streaming: loopback and an ephemeral port by default, no TLS', () => {
    expect(defaults.streaming).toEqual({ address: '127.0.0.1:0', advertiseAddress: '' });
    expect(loadConfig({ env: {}, flags: { config: file('') } }).config.streaming).toEqual({ address: '127.0.0.1:0', advertiseAddress: '' });
  });

  it('streaming: address, advertiseAddress and tls from the file, each overridable by VMLET_STREAMING_*', () => {
    const path = file('streaming:\n  address: 0.0.0.0:10010\n  advertiseAddress: node-1.example\n  tls:\n    certFile: /file/node.crt\n    keyFile: /file/node.key\n');
    expect(loadConfig({ env: { VMLET_CONFIG: path } }).config.streaming).toEqual({
      address: '0.0.0.0:10010', advertiseAddress: 'node-1.example', tls: { certFile: '/file/node.crt', keyFile: '/file/node.key' },
    });
    // The env sets one field; the file's others stay (tls merged field by field too).
    expect(loadConfig({ env: { VMLET_CONFIG: path, VMLET_STREAMING_TLS_CERT_FILE: '/env/node.crt' } }).config.streaming).toEqual({
      address: '0.0.0.0:10010', advertiseAddress: 'node-1.example', tls: { certFile: '/env/node.crt', keyFile: '/file/node.key' },
    });
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_STREAMING_ADDRESS: '[::1]:0', VMLET_STREAMING_ADVERTISE_ADDRESS: '::1' } }).config.streaming).toEqual({
      address: '[::1]:0', advertiseAddress: '::1',
    });
    expect(loadConfig({ env: { VMLET_CONFIG: file(''), VMLET_STREAMING_TLS_CERT_FILE: '/k.crt', VMLET_STREAMING_TLS_KEY_FILE: '/k.key' } }).config.streaming).toEqual({
      address: '127.0.0.1:0', advertiseAddress: '', tls: { certFile: '/k.crt', keyFile: '/k.key' },
    });
    expect(loadConfig({ env: {}, flags: { config: file('streaming:\n  address: :0\n') } }).config.streaming.address).toBe(':0');
  });

  it('streaming: a bad address, advertiseAddress, half a tls, a relative path or an unknown key is refused, naming the key', () => {
    const load = (yaml: string) => () => loadConfig({ env: {}, flags: { config: file(yaml) } });
    expect(load('streaming:\n  address: 127.0.0.1\n')).toThrow(/config "streaming\.address" is "127\.0\.0\.1"; it must be host:port/);
    expect(load('streaming:\n  address: 127.0.0.1:70000\n')).toThrow(/"streaming\.address"/);
    expect(load('streaming:\n  address: 10010\n')).toThrow(/"streaming\.address"/);
    expect(load('streaming:\n  advertiseAddress: node:10010\n')).toThrow(/config "streaming\.advertiseAddress" is "node:10010"; it must be a host name or an IP address \(no port\)/);
    expect(load('streaming:\n  tls:\n    certFile: /a.crt\n')).toThrow(/config "streaming\.tls" needs both certFile and keyFile \(keyFile is missing\)/);
    expect(load('streaming:\n  tls:\n    certFile: a.crt\n    keyFile: /a.key\n')).toThrow(/config "streaming\.tls\.certFile" is "a\.crt"; it must be an absolute path/);
    expect(load('streaming:\n  tsl: {}\n')).toThrow(/config "streaming" has an unknown key "tsl"/);
    expect(load('streaming: 127.0.0.1:0\n')).toThrow(/config "streaming" must be a mapping/);
  });

  it('parses the config file the installer ships', () => {
    const { config } = loadConfig({ env: {}, flags: { config: new URL('../../node-install/config.yaml', import.meta.url).pathname } });
    expect(config).toEqual(defaults);
  });
});
