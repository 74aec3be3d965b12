// A bzImage's ELF for PVH boot (src/image/kernel-pvh.ts), on bzImages made here: the boot
// protocol header, a compressed payload with the kernel build's appended size, and a small
// x86-64 ELF with or without Xen's PHYS32_ENTRY note. xz and zstd run the node's programs (the
// installer installs both). The real Debian kernel: test/integration/kernel-pvh.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { bzImagePayload, payloadCompression, pvhEntry, unpackPvhKernel } from '../../src/image/kernel-pvh.js';
import { bufferReader } from '../../src/util/elf-pvh.js';
import { bzImage, elf, PVH_ELF } from '../helpers/bzimage.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'vmlet-pvh-'));
  dirs.push(d);
  return d;
};

const xz = (b: Buffer) => execFileSync('xz', ['-c', '--check=crc32'], { input: b });
const zstd = (b: Buffer) => execFileSync('zstd', ['-c', '-q'], { input: b });

async function unpack(kernel: Buffer) {
  const d = tmp();
  writeFileSync(join(d, 'kernel'), kernel);
  const r = await unpackPvhKernel(join(d, 'kernel'), join(d, 'vmlinux'));
  return { r, d, out: join(d, 'vmlinux') };
}

describe('PVH kernels from bzImages', () => {
  it.each([
    ['gzip', gzipSync],
    ['xz', xz],
    ['zstd', zstd],
  ] as const)('unpacks a %s payload to the ELF inside, byte for byte, and leaves nothing else', async (name, compress) => {
    const { r, d, out } = await unpack(bzImage(compress(PVH_ELF), PVH_ELF.length));
    expect(r).toEqual({ path: out, compression: name, bytes: PVH_ELF.length });
    expect(readFileSync(out).equals(PVH_ELF)).toBe(true);
    expect(readdirSync(d).sort()).toEqual(['kernel', 'vmlinux']);
  });

  it('boots as it is: an ELF without the PVH note, a short or long payload, a corrupt one, one it cannot read', async () => {
    const noNote = elf([['GNU', 3], ['Xen', 17], ['Linux', 18]]);
    const junk = Buffer.from('not an ELF at all, and longer than the 64 bytes of an ELF header, surely');
    const cases: Array<[Buffer, RegExp]> = [
      [bzImage(gzipSync(noNote), noNote.length), /no PVH entry note/],
      [bzImage(gzipSync(PVH_ELF), PVH_ELF.length + 1), /unpacks to 8192 bytes, not the 8193 it says/],
      [bzImage(gzipSync(PVH_ELF), PVH_ELF.length - 1), /unpacks to more than the 8191 bytes it says/],
      [bzImage(Buffer.concat([gzipSync(PVH_ELF).subarray(0, 40), Buffer.alloc(40)]), PVH_ELF.length), /does not unpack/],
      [bzImage(xz(PVH_ELF).fill(7, 30, 60), PVH_ELF.length), /xz refused the kernel's payload/],
      [bzImage(Buffer.from([0x02, 0x21, 0x4c, 0x18, 1, 2, 3]), 100), /lz4-compressed, which vmlet does not unpack/],
      [bzImage(gzipSync(junk), junk.length), /not an ELF file/],
      [bzImage(gzipSync(PVH_ELF), 1024 * 1024 * 1024), /unpacks to 1073741824 bytes \(at most 536870912\)/],
      [bzImage(gzipSync(PVH_ELF), PVH_ELF.length, { version: 0x0206 }), /boot protocol 2\.6/],
      [bzImage(gzipSync(PVH_ELF), PVH_ELF.length, { payloadLength: 1 << 30 }), /lies outside the .*-byte file/],
      [PVH_ELF, /an ELF kernel already/],
      [Buffer.from('MZ'), /not a bzImage|shorter/],
    ];
    for (const [kernel, why] of cases) {
      const { r, d } = await unpack(kernel);
      expect('not' in r && r.not, String(why)).toMatch(why);
      expect(readdirSync(d)).toEqual(['kernel']);
    }
  });

  it('boots an xz or zstd bzImage as it is on a node without that program, saying so; gzip needs none', async () => {
    const none = () => undefined; // a node without xz-utils or zstd (vmlet's installer adds both)
    for (const [name, compress] of [['xz', xz], ['zstd', zstd]] as const) {
      const d = tmp();
      writeFileSync(join(d, 'kernel'), bzImage(compress(PVH_ELF), PVH_ELF.length));
      const r = await unpackPvhKernel(join(d, 'kernel'), join(d, 'vmlinux'), { findProgram: none });
      expect(r).toEqual({ not: `its payload is ${name}-compressed and this node has no ${name} program` });
      expect(readdirSync(d)).toEqual(['kernel']);
    }
    const d = tmp();
    writeFileSync(join(d, 'kernel'), bzImage(gzipSync(PVH_ELF), PVH_ELF.length));
    expect(await unpackPvhKernel(join(d, 'kernel'), join(d, 'vmlinux'), { findProgram: none })).toMatchObject({ compression: 'gzip', bytes: PVH_ELF.length });
  });

  it('reads the header and the note as QEMU does', async () => {
    const k = bzImage(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0]), 10);
    expect(bzImagePayload(k, k.length)).toEqual({ offset: 5 * 512 + 0x200, length: 5, compression: 'unknown' });
    expect(payloadCompression(k.subarray(5 * 512 + 0x200))).toBe('zstd');
    expect(payloadCompression(Buffer.from('BZh91AY'))).toBe('bzip2');
    expect(await pvhEntry(bufferReader(PVH_ELF))).toBe(true);
    // The note's segment outside the file, and an ELF for another machine.
    expect(await pvhEntry(bufferReader(PVH_ELF.subarray(0, 4100)))).toEqual({ not: 'a note segment lies outside the file' });
    const arm = Buffer.from(PVH_ELF);
    arm.writeUInt16LE(183, 18);
    expect(await pvhEntry(bufferReader(arm))).toEqual({ not: 'the payload is not a little-endian x86-64 ELF' });
  });
});
