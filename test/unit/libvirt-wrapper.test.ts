import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { classify, loadedLibvirtVersion } from '../../src/vm/libvirt.js';
import { tempDir } from '../helpers/vmlet.js';

describe('libvirt wrapper helpers', () => {
  it('classifies libvirt messages', () => {
    expect(classify("Domain not found: no domain with matching name 'x'")).toBe('not-found');
    expect(classify("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory")).toBe('connection');
    expect(classify('internal error: client socket is closed')).toBe('connection');
    expect(classify('Requested operation is not valid: domain is not running')).toBe('other');
  });

  it('reads the libvirt version from the loaded soname', () => {
    const maps = join(tempDir(), 'maps');
    writeFileSync(maps, '7f00-7f10 r-xp 00000000 fe:01 123 /usr/lib/x86_64-linux-gnu/libvirt.so.0.9000.0\n');
    expect(loadedLibvirtVersion(maps)).toBe('9.0.0');
    writeFileSync(maps, '7f00-7f10 r-xp 00000000 fe:01 123 /usr/lib/libvirt.so.0.10010.2\n');
    expect(loadedLibvirtVersion(maps)).toBe('10.10.2');
    writeFileSync(maps, 'nothing here\n');
    expect(loadedLibvirtVersion(maps)).toBeUndefined();
  });
});
