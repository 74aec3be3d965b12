// The in-memory ISO 9660 writer's own rules (test/integration/seed-iso.test.ts reads its images
// back with isoinfo and cloud-init; the guests mount them).
import { describe, expect, it } from 'vitest';
import { buildIso9660, isoNames } from '../../src/vm/iso9660.js';

const SECTOR = 2048;

describe('iso9660', () => {
  it('gives 8.3 names as genisoimage does, unique when two would collide', () => {
    expect(isoNames(['meta-data', 'user-data', 'network-config', 'a.b.tar.gz'])).toEqual(['META_DAT.;1', 'USER_DAT.;1', 'NETWORK_.;1', 'A_B_TAR.GZ;1']);
    expect(isoNames(['network-config', 'network-config2', 'network-configs'])).toEqual(['NETWORK_.;1', 'NETWO000.;1', 'NETWO001.;1']);
  });

  it('lays out descriptors, trees and files on sector boundaries, with the volume size it declares', () => {
    const big = Buffer.alloc(5000, 0x61);
    const img = buildIso9660('cidata', [{ name: 'user-data', data: big }, { name: 'meta-data', data: Buffer.from('x') }], 0);
    expect(img.length % SECTOR).toBe(0);
    expect(img.subarray(16 * SECTOR, 16 * SECTOR + 6).toString('latin1')).toBe('\x01CD001');
    expect(img.subarray(17 * SECTOR, 17 * SECTOR + 6).toString('latin1')).toBe('\x02CD001');
    expect(img[18 * SECTOR]).toBe(255);
    expect(img.readUInt32LE(16 * SECTOR + 80) * SECTOR).toBe(img.length);
    expect(img.readUInt32BE(16 * SECTOR + 84) * SECTOR).toBe(img.length);
    expect(img.subarray(16 * SECTOR + 40, 16 * SECTOR + 46).toString('latin1')).toBe('cidata');
    // The files' extents, from the primary root: meta-data first (sorted), user-data after it.
    const root = img.readUInt32LE(16 * SECTOR + 156 + 2) * SECTOR;
    const records: Array<{ name: string; lba: number; size: number }> = [];
    for (let p = root; img[p]! > 0; p += img[p]!) records.push({ name: img.toString('latin1', p + 33, p + 33 + img[p + 32]!), lba: img.readUInt32LE(p + 2), size: img.readUInt32LE(p + 10) });
    expect(records.slice(2).map((r) => [r.name, r.size])).toEqual([['META_DAT.;1', 1], ['USER_DAT.;1', 5000]]);
    expect(img.subarray(records[3]!.lba * SECTOR, records[3]!.lba * SECTOR + 5000).equals(big)).toBe(true);
    expect(records[3]!.lba).toBe(records[2]!.lba + 1);
  });

  it('is the same bytes for the same files, and dates every record at the epoch given', () => {
    const files = [{ name: 'meta-data', data: Buffer.from('instance-id: x\n') }];
    expect(buildIso9660('cidata', files, 0).equals(buildIso9660('cidata', files, 0))).toBe(true);
    const img = buildIso9660('cidata', files, 0);
    expect(img.toString('latin1', 16 * SECTOR + 813, 16 * SECTOR + 829)).toBe('1970010100000000');
    const root = img.readUInt32LE(16 * SECTOR + 156 + 2) * SECTOR;
    expect([...img.subarray(root + 18, root + 25)]).toEqual([70, 1, 1, 0, 0, 0, 0]);
  });
});
