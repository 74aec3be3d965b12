// LayerFeed: a layer's bytes reach the scan while they download only when the scan asked first;
// the download is never stalled by a scan that stopped reading; a failed download fails the scan.
import { describe, expect, it } from 'vitest';
import { LayerFeed } from '../../src/image/layer-feed.js';

const read = async (s: AsyncIterable<Buffer>) => {
  const out: Buffer[] = [];
  for await (const c of s) out.push(c);
  return Buffer.concat(out).toString();
};

describe('LayerFeed', () => {
  it('feeds a scan that asked before the download began', async () => {
    const f = new LayerFeed();
    const live = f.take()!;
    expect(f.take()).toBe(live); // asked twice (the store, then the scan): one stream
    const sink = f.start()!;
    expect(await f.decided).toBe(true);
    const got = read(live);
    await sink.write(Buffer.from('abc'));
    await sink.write(Buffer.from('def'));
    sink.end();
    f.finish();
    expect(await got).toBe('abcdef');
    expect(f.live).toBe(true);
  });

  it('does not feed a download that began first, nor a scan whose layer was never downloaded', async () => {
    const first = new LayerFeed();
    expect(first.start()).toBeUndefined();
    expect(first.take()).toBeUndefined();
    expect(await first.decided).toBe(false);

    const stored = new LayerFeed();
    expect(stored.take()).toBeDefined();
    stored.finish(); // the blob was in the store already: no download
    expect(await stored.decided).toBe(false);
    expect(stored.live).toBe(false);
  });

  it('a scan that stops reading never stalls the download', async () => {
    const f = new LayerFeed();
    f.take();
    const sink = f.start()!;
    const big = Buffer.alloc(4 * 1024 * 1024);
    const pending = sink.write(big); // past the buffer: waits for the reader
    let done = false;
    void pending.then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    f.release();
    await pending;
    await sink.write(big); // and later writes go nowhere, at once
    sink.end();
  });

  it('a failed download fails the scan reading it', async () => {
    const f = new LayerFeed();
    const live = f.take()!;
    const sink = f.start()!;
    const got = read(live);
    await sink.write(Buffer.from('partial'));
    sink.fail(new Error('connection reset'));
    await expect(got).rejects.toThrow('connection reset');
  });
});
