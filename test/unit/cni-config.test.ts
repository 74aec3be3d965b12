import { describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkCni, parseCniConfig } from '../../src/net/cni-config.js';
import { tempDir } from '../helpers/vmlet.js';

function plugins(...names: string[]): string {
  const dir = tempDir('vmlet-cnibin-');
  for (const n of names) {
    writeFileSync(join(dir, n), '#!/bin/sh\n');
    chmodSync(join(dir, n), 0o755);
  }
  return dir;
}

describe('CNI config', () => {
  it('parses a conflist and a single-plugin conf', () => {
    expect(parseCniConfig('a.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}')).toEqual({
      file: 'a.conflist', name: 'n', cniVersion: '1.0.0', plugins: ['bridge', 'portmap'],
    });
    expect(parseCniConfig('b.conf', '{"cniVersion":"0.4.0","name":"m","type":"ptp"}').plugins).toEqual(['ptp']);
  });

  it('rejects configs without a name or plugins, and broken JSON', () => {
    expect(() => parseCniConfig('x', '{"plugins":[{"type":"bridge"}]}')).toThrow(/missing "name"/);
    expect(() => parseCniConfig('x', '{"name":"n","plugins":[]}')).toThrow(/empty/);
    expect(() => parseCniConfig('x', '{"name":"n","plugins":[{}]}')).toThrow(/plugins\[0\] has no "type"/);
    expect(() => parseCniConfig('x', '{')).toThrow(/not valid JSON/);
  });

  it('picks the lexically first config, like libcni, and finds its plugins', () => {
    const conf = tempDir('vmlet-cni-');
    writeFileSync(join(conf, '20-b.conflist'), '{"name":"second","plugins":[{"type":"missing"}]}');
    writeFileSync(join(conf, '10-a.conflist'), '{"name":"first","plugins":[{"type":"bridge"},{"type":"portmap"}]}');
    writeFileSync(join(conf, '00-readme.txt'), 'not a config');
    const bin1 = plugins('bridge');
    const bin2 = plugins('portmap', 'bridge');
    const r = checkCni(conf, [bin1, bin2]);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.network.name).toBe('first');
      expect(r.pluginPaths).toEqual({ bridge: join(bin1, 'bridge'), portmap: join(bin2, 'portmap') });
    }
  });

  it('reports no config, an invalid one and a missing plugin', () => {
    expect(checkCni(tempDir(), ['/nonexistent'])).toMatchObject({ ok: false, reason: 'NoCNIConfig' });
    expect(checkCni('/nonexistent/dir', [])).toMatchObject({ ok: false, reason: 'NoCNIConfig' });
    const bad = tempDir();
    writeFileSync(join(bad, '10.conf'), '{"name":');
    expect(checkCni(bad, [])).toMatchObject({ ok: false, reason: 'InvalidCNIConfig' });
    const conf = tempDir();
    mkdirSync(conf, { recursive: true });
    writeFileSync(join(conf, '10.conflist'), '{"name":"n","plugins":[{"type":"bridge"},{"type":"flannel"}]}');
    const r = checkCni(conf, [plugins('bridge')]);
    expect(r).toMatchObject({ ok: false, reason: 'CNIPluginMissing' });
    if (!r.ok) expect(r.message).toContain('flannel');
  });
});
