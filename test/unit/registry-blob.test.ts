// Layer downloads in the blob download worker (src/image/blob-fetch*.ts) against a real HTTP
// registry front on loopback: the main thread answers a blob's 401 challenge and the worker
// stores the blob; an error status writes nothing; a worker that dies mid-download fails that
// download with INTERNAL, tells a scan following it, and leaves no temp file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync } from 'node:fs';
import { BlobStore } from '../../src/image/blob-store.js';
import { blobFetchWorker } from '../../src/image/blob-fetch.js';
import { LayerFeed, type FeedEvent } from '../../src/image/layer-feed.js';
import { RegistrySession } from '../../src/image/registry.js';
import { parseReference } from '../../src/image/reference.js';
import { tempDir } from '../helpers/vmlet.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const body = Buffer.alloc(700_000, 7);
const digest = sha(body);
/** More blobs of the same repository, by digest. */
const more = new Map([1, 2, 3].map((n) => Buffer.alloc(50_000 * n, n)).map((b) => [sha(b), b]));
const stalled = `sha256:${'5'.repeat(64)}`;

describe('blob downloads in the worker', () => {
  let server: Server;
  let host: string;
  const seen: Array<{ url: string; auth?: string }> = [];
  /** The token service's tokens are T<generation>; only the current generation's is accepted (older ones expired). */
  let generation = 1;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url!, ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) });
      if (req.url!.startsWith('/token')) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ token: `T${generation}` }));
        return;
      }
      if (req.headers.authorization !== `Bearer T${generation}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="reg",scope="repository:lib/app:pull"` });
        res.end();
        return;
      }
      if (req.url === `/v2/lib/app/blobs/${digest}`) {
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      } else if (more.has(req.url!.slice('/v2/lib/app/blobs/'.length))) {
        res.end(more.get(req.url!.slice('/v2/lib/app/blobs/'.length)));
      } else if (req.url === `/v2/lib/app/blobs/${stalled}`) {
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, 300_000)); // and nothing more
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const session = () => new RegistrySession(parseReference(`${host}/lib/app:v1`), { url: `http://${host}`, mirror: false }, {}, 5000);
  const store = async () => {
    const s = new BlobStore(tempDir('vmlet-blobs-'));
    await s.init();
    return s;
  };

  it('answers the blob\'s 401 challenge here and stores the blob there, reporting progress and feed events', async () => {
    const s = await store();
    const reg = session();
    const feed = new LayerFeed();
    const events: string[] = [];
    feed.watch((ev: FeedEvent) => events.push(ev.e));
    let progress = 0;
    seen.length = 0;
    const path = await s.fetch(digest, body.length, (t) => reg.storeBlob(digest, t, { feed, progress: (n) => (progress = n) }));
    expect((await s.read(digest)).equals(body)).toBe(true);
    expect(path).toBe(s.path(digest));
    expect(progress).toBe(body.length);
    expect(events).toEqual(['started', 'wrote', 'wrote', 'wrote', 'end']);
    expect(seen.map((r) => [r.url.replace(/\?.*/, ''), r.auth ?? null])).toEqual([
      [`/v2/lib/app/blobs/${digest}`, null],
      ['/token', null],
      [`/v2/lib/app/blobs/${digest}`, 'Bearer T1'],
    ]);
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });

  it('a token that expired mid-pull is fetched again, once for the downloads it failed together', async () => {
    const s = await store();
    const reg = session();
    await s.fetch(digest, body.length, (t) => reg.storeBlob(digest, t));
    generation++;
    seen.length = 0;
    await Promise.all([...more].map(([d, b]) => s.fetch(d, b.length, (t) => reg.storeBlob(d, t))));
    for (const [d, b] of more) expect((await s.read(d)).equals(b)).toBe(true);
    expect(seen.filter((r) => r.url.startsWith('/token'))).toHaveLength(1);
    expect(seen.filter((r) => r.auth === `Bearer T${generation}`)).toHaveLength(more.size);
  });

  it('an error status is the registry\'s failure, named, and nothing is written', async () => {
    const s = await store();
    const missing = `sha256:${'0'.repeat(64)}`;
    const reg = session();
    await expect(s.fetch(missing, 10, (t) => reg.storeBlob(missing, t))).rejects.toMatchObject({
      kind: 'not-found',
      message: `registry ${host}: blob ${missing}: HTTP 404 Not Found`,
    });
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });

  it('a worker that dies mid-download fails it with INTERNAL, tells the feed, leaves no temp file; the next download gets a new worker', async () => {
    const s = await store();
    const reg = session();
    const feed = new LayerFeed();
    const events: string[] = [];
    let startedOn!: () => void;
    const started = new Promise<void>((r) => (startedOn = r));
    feed.watch((ev: FeedEvent) => {
      events.push(ev.e);
      if (ev.e === 'started') startedOn();
    });
    const stuck = s.fetch(stalled, body.length, (t) => reg.storeBlob(stalled, t, { feed }));
    await started;
    expect(readdirSync(s.tmpDir)).toHaveLength(1);
    await blobFetchWorker()!.terminate();
    await expect(stuck).rejects.toMatchObject({ kind: 'internal', message: expect.stringMatching(/blob download worker: exited/) as unknown });
    expect(events.at(-1)).toBe('failed');
    expect(readdirSync(s.tmpDir)).toEqual([]);
    expect(await s.has(stalled)).toBe(false);
    await s.fetch(digest, body.length, (t) => reg.storeBlob(digest, t));
    expect(await s.has(digest, body.length)).toBe(true);
  });
});
