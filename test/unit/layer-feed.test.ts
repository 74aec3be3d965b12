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

  it('a copy told by watch (the scan worker\'s) replays what happened before it joined, then each event', async () => {
    const tmp = join(tempDir('vmlet-feed-'), 'blob');
    writeFileSync(tmp, 'abc');
    const f = new LayerFeed();
    f.started(tmp, `${tmp}.final`);
    f.wrote(3);
    const copy = new LayerFeed();
    const seen: string[] = [];
    const stop = f.watch((ev) => {
      seen.push(ev.e);
      copy.apply(ev);
    });
    const got = read((await copy.source())!);
    await tick();
    appendFileSync(tmp, 'def');
    f.wrote(6);
    f.end();
    f.finish();
    expect(await got).toBe('abcdef');
    expect(seen).toEqual(['started', 'wrote', 'wrote', 'end', 'finish']);
    stop();
    f.wrote(9);
    expect(seen).toHaveLength(5);
  });

  it('a copy joining after a failure fails its scan with the same message', async () => {
    const tmp = join(tempDir('vmlet-feed-'), 'blob');
    writeFileSync(tmp, 'partial');
    const f = new LayerFeed();
    f.started(tmp, `${tmp}.final`);
    f.wrote(7);
    f.failed(new Error('connection reset'));
    const copy = new LayerFeed();
    f.watch((ev) => copy.apply(ev));
    await expect(read((await copy.source())!)).rejects.toThrow('connection reset');
  });
});
