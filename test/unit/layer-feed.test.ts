// LayerFeed: the scan follows a layer's temp file as the download writes it (joining at any
// point), reads the stored blob when this pull downloads nothing, and fails with the download.
import { describe, expect, it } from 'vitest';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { LayerFeed } from '../../src/image/layer-feed.js';
import { tempDir } from '../helpers/vmlet.js';

const read = async (s: Readable) => {
  const out: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) out.push(c);
  return Buffer.concat(out).toString();
};
const tick = () => new Promise((r) => setImmediate(r));

describe('LayerFeed', () => {
  it('gives the scan what the download wrote so far, then each batch as it lands, then the end', async () => {
    const tmp = join(tempDir('vmlet-feed-'), 'blob');
    const f = new LayerFeed();
    const source = f.source(); // asked before the download began: waits for it
    writeFileSync(tmp, 'abc');
    f.started(tmp, `${tmp}.final`);
    f.wrote(3);
    const got = read((await source)!);
    await tick();
    // Bytes in the file but not yet reported are not read: only what a finished write holds.
    appendFileSync(tmp, 'defXYZ');
    f.wrote(6);
    await tick();
    f.end();
    f.finish();
    expect(await got).toBe('abcdef');
    expect(f.live).toBe(true);
  });

  it('a scan that joins late reads from the start of the file', async () => {
    const tmp = join(tempDir('vmlet-feed-'), 'blob');
    const f = new LayerFeed();
    writeFileSync(tmp, 'whole layer');
    f.started(tmp, `${tmp}.final`);
    f.wrote(11);
    f.end();
    expect(await read((await f.source())!)).toBe('whole layer');
  });

  it('a scan that joins after the blob was checked and renamed reads it where it now is', async () => {
    const dir = tempDir('vmlet-feed-');
    const f = new LayerFeed();
    f.started(join(dir, 'tmp'), join(dir, 'final'));
    writeFileSync(join(dir, 'final'), 'stored');
    f.wrote(6);
    f.end();
    expect(await read((await f.source())!)).toBe('stored');
  });

  it('no source when this pull downloads nothing (the blob was stored, or another pull has it)', async () => {
    const f = new LayerFeed();
    const source = f.source();
    f.finish();
    expect(await source).toBeUndefined();
    expect(f.live).toBe(false);
  });

  it('a failed download fails the scan reading it', async () => {
    const tmp = join(tempDir('vmlet-feed-'), 'blob');
    writeFileSync(tmp, 'partial');
    const f = new LayerFeed();
    f.started(tmp, `${tmp}.final`);
    f.wrote(7);
    const got = read((await f.source())!);
    await tick();
    f.failed(new Error('connection reset'));
    await expect(got).rejects.toThrow('connection reset');
  });
});
