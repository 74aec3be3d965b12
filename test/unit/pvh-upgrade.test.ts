// Kernel-boot images a vmlet from before PVH boot pulled: the store, once loaded, unpacks their
// bzImage in the background and records the ELF (or why there is none); records that already
// say either, and images removed meanwhile, are left alone.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { ImageStore } from '../../src/image/store.js';
import type { ImageRecord } from '../../src/image/image-index.js';
import { tempDir } from '../helpers/vmlet.js';
import { bzImage, elf, PVH_ELF } from '../helpers/bzimage.js';

function record(root: string, hex: string, kernel: Buffer, extra: object = {}): ImageRecord {
  const dir = join(root, 'kernels', hex);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'kernel'), kernel);
  return {
    id: `sha256:${hex}`,
    repoTags: [`old/${hex.slice(0, 4)}:1`],
    repoDigests: [],
    size: kernel.length,
    pinned: false,
    manifestDigest: `sha256:${'0'.repeat(64)}`,
    blobs: [],
    layers: [],
    user: '',
    labels: {},
    boot: { kind: 'kernel', kernel: { kernel: join(dir, 'kernel'), ...extra } },
    pulledAt: new Date(0).toISOString(),
  } as unknown as ImageRecord;
}

describe('kernel-boot images pulled before PVH boot', () => {
  it('get their ELF (or the reason there is none) once the store loads; newer records are not touched', async () => {
    const root = tempDir('vmlet-pvhup-');
    const first = new ImageStore(root, { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    await first.init();
    const [a, b, c] = ['a', 'b', 'c'].map((x) => x.repeat(64));
    const noNote = elf([['GNU', 3]]);
    first.index.put(record(root, a!, bzImage(gzipSync(PVH_ELF), PVH_ELF.length)));
    first.index.put(record(root, b!, bzImage(gzipSync(noNote), noNote.length)));
    first.index.put(record(root, c!, bzImage(gzipSync(PVH_ELF), PVH_ELF.length), { pvhNot: 'said by a newer vmlet' }));
    await first.index.save();
    expect(await first.pvhUpgrade).toBe(0); // the store was empty when it loaded

    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const second = new ImageStore(root, { insecure: [], mirrors: {} }, log);
    await second.init();
    expect(await second.pvhUpgrade).toBe(2);
    const kernelOf = (hex: string) => second.index.get(`sha256:${hex}`)!.boot.kernel!;
    expect(kernelOf(a!).pvh).toBe(join(root, 'kernels', a!, 'vmlinux'));
    expect(readFileSync(kernelOf(a!).pvh!).equals(PVH_ELF)).toBe(true);
    expect(kernelOf(b!)).toMatchObject({ pvhNot: expect.stringMatching(/no PVH entry note/) as unknown });
    expect(existsSync(join(root, 'kernels', b!, 'vmlinux'))).toBe(false);
    expect(kernelOf(c!)).toEqual({ kernel: join(root, 'kernels', c!, 'kernel'), pvhNot: 'said by a newer vmlet' });
    expect(existsSync(join(root, 'kernels', c!, 'vmlinux'))).toBe(false);
    expect(lines.filter((l) => String(l.msg).startsWith('kernel-boot image pulled before PVH boot')).map((l) => l.pvh)).toEqual([true, false]);
    // Saved: a third store finds nothing left to do.
    const third = new ImageStore(root, { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    await third.init();
    expect(await third.pvhUpgrade).toBe(0);
    expect(third.index.get(`sha256:${a!}`)!.boot.kernel!.pvh).toBe(kernelOf(a!).pvh);
  });
});
