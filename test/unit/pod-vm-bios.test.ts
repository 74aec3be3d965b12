// Which firmware a sandboxed pod's VM starts (config podVmBios), against the node's files.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { podVmBiosRom } from '../../src/guest/pod-vm-bios.js';
import { tempDir } from '../helpers/vmlet.js';

describe('podVmBiosRom', () => {
  it('qboot: its ROM where the node has it, else none and the missing path (SeaBIOS starts)', () => {
    const rom = join(tempDir('vmlet-bios-'), 'qboot.rom');
    expect(podVmBiosRom('qboot', rom)).toEqual({ missing: rom });
    writeFileSync(rom, 'rom');
    expect(podVmBiosRom('qboot', rom)).toEqual({ rom });
  });

  it('seabios: no ROM, whatever the node has', () => {
    const rom = join(tempDir('vmlet-bios-'), 'qboot.rom');
    writeFileSync(rom, 'rom');
    expect(podVmBiosRom('seabios', rom)).toEqual({});
  });
});
