// The test helper that writes screenshots (docs/vnc-console.png): a PNG read back chunk by chunk
// with node:zlib gives the same size and pixels, and its CRCs are zlib's.
import { describe, expect, it } from 'vitest';
import * as zlib from 'node:zlib';
import { crc32, encodePng } from '../helpers/png.js';

function chunks(png: Buffer): Array<{ type: string; data: Buffer; crc: number }> {
  const out = [];
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    out.push({ type, data: png.subarray(at + 8, at + 8 + len), crc: png.readUInt32BE(at + 8 + len) });
    at += 12 + len;
  }
  return out;
}

describe('encodePng', () => {
  it('writes the signature, IHDR (8-bit RGB), the rows deflated with filter None, and IEND', () => {
    const [w, h] = [3, 2];
    const rgb = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const png = encodePng(w, h, rgb);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const cs = chunks(png);
    expect(cs.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const ihdr = cs[0]!.data;
    expect([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ...ihdr.subarray(8)]).toEqual([3, 2, 8, 2, 0, 0, 0]);
    const raw = zlib.inflateSync(cs[1]!.data);
    expect(raw).toEqual(Buffer.concat([Buffer.from([0]), rgb.subarray(0, 9), Buffer.from([0]), rgb.subarray(9)]));
    for (const c of cs) expect(c.crc).toBe(crc32(Buffer.concat([Buffer.from(c.type, 'latin1'), c.data])));
  });

  it("computes zlib's CRC-32", () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926); // the standard check value
    const z = (zlib as { crc32?: (b: Buffer) => number }).crc32; // Node >= 20.15
    if (z) for (const b of [Buffer.alloc(0), Buffer.from('IEND', 'latin1'), Buffer.alloc(1000, 0xa5)]) expect(crc32(b)).toBe(z(b));
  });

  it('refuses pixels that do not match the size', () => {
    expect(() => encodePng(2, 2, Buffer.alloc(11))).toThrow(/11 bytes of pixels for 2x2 RGB \(12 expected\)/);
    expect(() => encodePng(0, 2, Buffer.alloc(0))).toThrow(/bad size 0x2/);
  });
});
