// bzImages made in tests: the boot protocol header, a payload with the kernel build's appended
// size, and small x86-64 ELFs with or without Xen's PHYS32_ENTRY note (src/image/kernel-pvh.ts).

/** An x86-64 ELF with one PT_NOTE segment holding `notes` ([name, type] each), padded to `size`. */
export function elf(notes: Array<[string, number]>, size = 8192): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // little endian
  b.writeUInt16LE(62, 18); // EM_X86_64
  b.writeBigUInt64LE(64n, 32); // e_phoff
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(2, 56);
  // A PT_LOAD first (ignored), then the PT_NOTE at 4096.
  b.writeUInt32LE(1, 64);
  const ph = 64 + 56;
  b.writeUInt32LE(4, ph);
  let at = 4096;
  for (const [name, type] of notes) {
    const n = Buffer.from(`${name}\0`);
    b.writeUInt32LE(n.length, at);
    b.writeUInt32LE(4, at + 4);
    b.writeUInt32LE(type, at + 8);
    n.copy(b, at + 12);
    at += 12 + ((n.length + 3) & ~3) + 4;
  }
  b.writeBigUInt64LE(4096n, ph + 8);
  b.writeBigUInt64LE(BigInt(at - 4096), ph + 32);
  return b;
}

export const PVH_ELF = elf([['GNU', 3], ['Xen', 18]]);

/** A bzImage: 4 setup sectors + the boot sector, the payload after them, its size appended. */
export function bzImage(payload: Buffer, uncompressed: number, o: { version?: number; payloadLength?: number } = {}): Buffer {
  const setup = Buffer.alloc(5 * 512);
  setup.writeUInt8(4, 0x1f1);
  setup.writeUInt16LE(0xaa55, 0x1fe);
  setup.write('HdrS', 0x202, 'latin1');
  setup.writeUInt16LE(o.version ?? 0x020f, 0x206);
  setup.writeUInt32LE(0x200, 0x248); // payload_offset, from the end of the setup
  const size = Buffer.alloc(4);
  size.writeUInt32LE(uncompressed);
  setup.writeUInt32LE(o.payloadLength ?? payload.length + 4, 0x24c);
  return Buffer.concat([setup, Buffer.alloc(0x200), payload, size, Buffer.alloc(1000)]);
}

