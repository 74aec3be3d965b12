// Mount points read from mountinfo text, and the mount a path lives on.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountPoints } from '../../src/util/mountinfo.js';
import { mountPointOf } from '../../src/util/fs-usage.js';
import { tempDir } from '../helpers/vmlet.js';

const INFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '95 22 254:0 /srv/vol /var/lib/vmlet/pods/p1/shared/c1/0 rw,relatime shared:1 - ext4 /dev/vda rw',
  '96 22 0:52 / /mnt/with\\040space\\011tab rw - tmpfs tmpfs rw',
  '97 22 0:53 / /var/lib/vmlet rw - ext4 /dev/vdb rw',
  '',
].join('\n');

describe('mountinfo', () => {
  it('lists the mount points, undoing the octal escapes of spaces, tabs and backslashes', () => {
    expect(mountPoints(INFO)).toEqual(['/', '/var/lib/vmlet/pods/p1/shared/c1/0', '/mnt/with space\ttab', '/var/lib/vmlet']);
  });

  it('names the longest mount holding a path', () => {
    const file = join(tempDir('vmlet-mountinfo-'), 'mountinfo');
    writeFileSync(file, INFO);
    expect(mountPointOf('/var/lib/vmlet/images', file)).toBe('/var/lib/vmlet');
    expect(mountPointOf('/var/lib/vmletx', file)).toBe('/');
    expect(mountPointOf('/mnt/with space\ttab/x', file)).toBe('/mnt/with space\ttab');
  });
});
