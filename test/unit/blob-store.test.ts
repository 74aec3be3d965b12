// The blob store's download side: a body that breaks off is the registry's or the network's
// failure (UNAVAILABLE, retried by the kubelet), and nothing of it is kept.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { BlobStore } from '../../src/image/blob-store.js';
import { tempDir } from '../helpers/vmlet.js';

describe('BlobStore', () => {
  const body = Buffer.from('x'.repeat(100_000));
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;

  it('a body cut short by the connection is UNAVAILABLE, naming the blob and how far it got; no temp file stays', async () => {
    const store = new BlobStore(tempDir('vmlet-blobs-'));
    await store.init();
    const cut = () =>
      Promise.resolve(
        Readable.from(
          (async function* () {
            yield body.subarray(0, 40_000);
            throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
          })(),
        ),
      );
    await expect(store.ensure(digest, body.length, cut)).rejects.toMatchObject({
      kind: 'unavailable',
      message: `blob ${digest}: the download broke off after 40000 of 100000 bytes: aborted`,
    });
    expect(readdirSync(store.tmpDir)).toEqual([]);
    expect(await store.has(digest)).toBe(false);
  });

  it('stores a whole body that matches its digest', async () => {
    const store = new BlobStore(tempDir('vmlet-blobs-'));
    await store.init();
    const path = await store.ensure(digest, body.length, () => Promise.resolve(Readable.from([body.subarray(0, 300), body.subarray(300)])));
    expect((await store.read(digest)).equals(body)).toBe(true);
    expect(path).toBe(store.path(digest));
  });
});
