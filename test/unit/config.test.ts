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

  it('parses the config file the installer ships', () => {
    const { config } = loadConfig({ env: {}, flags: { config: new URL('../../node-install/config.yaml', import.meta.url).pathname } });
    expect(config).toEqual(defaults);
  });
});
