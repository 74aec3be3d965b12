// Pulls through an HTTP proxy (src/image/registry-proxy.ts), as containerd honours HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY: the NO_PROXY rules (Go's), and real exchanges through a forward proxy
// on loopback. The registry is named `registry.vmlet-test`, a name only the proxy resolves: a
// manifest or blob that did not go through the proxy could not arrive at all. The layer goes
// through the blob download worker, so the worker is shown to use the proxy too.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { execa } from 'execa';
import { BlobStore } from '../../src/image/blob-store.js';
import { exempt, proxyEnv, proxyFor } from '../../src/image/registry-proxy.js';
import { RegistrySession } from '../../src/image/registry.js';
import { parseReference } from '../../src/image/reference.js';
import { tempDir } from '../helpers/vmlet.js';

describe('NO_PROXY and the proxy settings', () => {
  const u = (s: string) => new URL(s);
  it.each([
    ['https://127.0.0.1:5000/v2/', '', true],
    ['https://127.9.9.9/v2/', '', true],
    ['https://[::1]:5000/v2/', '', true],
    ['https://localhost:5000/v2/', '', true],
    ['https://registry-1.docker.io/v2/', '', false],
    ['https://registry-1.docker.io/v2/', '*', true],
    ['https://registry-1.docker.io/v2/', 'docker.io', true],
    ['https://docker.io/v2/', 'docker.io', true],
    ['https://docker.io/v2/', '.docker.io', false],
    ['https://registry-1.docker.io/v2/', '.docker.io', true],
    ['https://registry-1.docker.io/v2/', '*.docker.io', true],
    ['https://notdocker.io/v2/', 'docker.io', false],
    ['https://quay.io/v2/', ' example.com , quay.io ', true],
    ['https://reg.corp:5000/v2/', 'reg.corp:5000', true],
    ['https://reg.corp:5000/v2/', 'reg.corp:443', false],
    ['https://reg.corp/v2/', 'reg.corp:443', true],
    ['http://10.1.2.3:5000/v2/', '10.0.0.0/8', true],
    ['http://11.1.2.3:5000/v2/', '10.0.0.0/8', false],
    ['http://10.1.2.3:5000/v2/', '10.1.2.3', true],
    ['http://[fd00::5]:5000/v2/', 'fd00::/8', true],
    ['http://[fd00::5]:5000/v2/', '[fd00::5]:5000', true],
    ['http://[fd00::5]:5000/v2/', 'fd00::5', true],
    ['http://[fd00::6]:5000/v2/', 'fd00::5', false],
  ])('%s with NO_PROXY=%j: exempt %s', (url, no, want) => {
    expect(exempt(u(url), no)).toBe(want);
  });

  it('reads HTTPS_PROXY for https, HTTP_PROXY for http, the upper-case name first; only http:// proxies', () => {
    const p = proxyEnv({ HTTPS_PROXY: 'proxy.corp:3128', https_proxy: 'http://other:1', http_proxy: 'http://plain:8080', no_proxy: 'corp' });
    expect(p).toEqual({ https: 'proxy.corp:3128', http: 'http://plain:8080', no: 'corp' });
    expect(proxyFor(u('https://quay.io/v2/'), p)?.href).toBe('http://proxy.corp:3128/');
    expect(proxyFor(u('http://quay.io/v2/'), p)?.href).toBe('http://plain:8080/');
    expect(proxyFor(u('https://reg.corp/v2/'), p)).toBeUndefined();
    expect(() => proxyFor(u('https://quay.io/v2/'), { https: 'socks5://s:1080' })).toThrow(/HTTPS_PROXY=socks5:\/\/s:1080: only http:\/\/ proxies are supported/);
  });
});

describe('exchanges through a forward proxy', () => {
  const body = Buffer.alloc(400_000, 3);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] }));
  let registry: Server;
  let proxy: Server;
  let tls: TlsServer;
  let registryPort = 0;
  let tlsPort = 0;
  let proxyHost = '';
  /** What the proxy was asked: absolute URLs (http) and CONNECT targets (https). */
  const asked: string[] = [];
  let sni: string | undefined;
  const saved = { ...process.env };

  beforeAll(async () => {
    registry = createServer((req, res) => {
      if (req.url === '/v2/lib/app/manifests/v1') {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length });
        res.end(manifest);
      } else if (req.url === `/v2/lib/app/blobs/${digest}`) {
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
    registryPort = (registry.address() as AddressInfo).port;

    // A TLS server with a certificate nobody trusts: the handshake through the tunnel reaches it
    // (it records the name asked for) and fails on the certificate.
    const dir = tempDir('vmlet-proxy-tls-');
    await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=secure.vmlet-test', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1']);
    tls = createTlsServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')), SNICallback: (name, cb) => ((sni = name), cb(null, undefined)) }, (s) => s.end());
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    tlsPort = (tls.address() as AddressInfo).port;

    // The forward proxy: resolves *.vmlet-test to this machine; asks for credentials on CONNECT
    // to locked.vmlet-test.
    const port = (host: string) => (host.startsWith('registry.') ? registryPort : tlsPort);
    proxy = createServer((req, res) => {
      asked.push(req.url!);
      const target = new URL(req.url!);
      const up = request({ host: '127.0.0.1', port: port(target.hostname), path: target.pathname, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    proxy.on('connect', (req, client: Socket) => {
      asked.push(`CONNECT ${req.url}`);
      if (req.url!.startsWith('locked.') && req.headers['proxy-authorization'] !== `Basic ${Buffer.from('u:p w').toString('base64')}`) {
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
        return;
      }
      const up = connect(port(req.url!), '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        up.pipe(client);
        client.pipe(up);
      });
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    for (const s of [registry, proxy]) {
      s.closeAllConnections();
      s.close();
    }
    tls.close();
  });
  afterEach(() => {
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    asked.length = 0;
  });

  it('an http registry: the manifest (main thread) and the layer (download worker) both come through the proxy', async () => {
    process.env.HTTP_PROXY = `http://${proxyHost}`;
    const host = `registry.vmlet-test:${registryPort}`;
    const reg = new RegistrySession(parseReference(`${host}/lib/app:v1`), { url: `http://${host}`, mirror: false }, {}, 5000);
    expect((await reg.manifest('v1')).body.equals(manifest)).toBe(true);
    const store = new BlobStore(tempDir('vmlet-blobs-'));
    await store.init();
    await store.fetch(digest, body.length, (t) => reg.storeBlob(digest, t));
    expect((await store.read(digest)).equals(body)).toBe(true);
    expect(asked).toEqual([`http://${host}/v2/lib/app/manifests/v1`, `http://${host}/v2/lib/app/blobs/${digest}`]);
  });

  it('NO_PROXY sends a registry direct: the fake name then cannot be reached', async () => {
    process.env.HTTP_PROXY = `http://${proxyHost}`;
    process.env.NO_PROXY = 'vmlet-test';
    const host = `registry.vmlet-test:${registryPort}`;
    const reg = new RegistrySession(parseReference(`${host}/lib/app:v1`), { url: `http://${host}`, mirror: false }, {}, 5000);
    await expect(reg.manifest('v1')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/cannot reach http:\/\/registry\.vmlet-test/) as unknown });
    expect(asked).toEqual([]);
  });

  it('https goes through a CONNECT tunnel, TLS with the registry\'s name inside it; a proxy that wants credentials gets them from its URL', async () => {
    process.env.HTTPS_PROXY = `http://${proxyHost}`;
    const host = `secure.vmlet-test:${tlsPort}`;
    const reg = new RegistrySession(parseReference(`${host}/lib/app:v1`), { url: `https://${host}`, mirror: false }, {}, 5000);
    // The certificate is not trusted: the handshake got there, and says so.
    await expect(reg.manifest('v1')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/SELF_SIGNED_CERT/) as unknown });
    expect(asked).toEqual([`CONNECT ${host}`]);
    expect(sni).toBe('secure.vmlet-test');

    const locked = `locked.vmlet-test:${tlsPort}`;
    // A session reads the proxy settings once, when it (one pull) begins.
    const lockedReg = () => new RegistrySession(parseReference(`${locked}/lib/app:v1`), { url: `https://${locked}`, mirror: false }, {}, 5000);
    await expect(lockedReg().manifest('v1')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/proxy 127\.0\.0\.1:\d+ refused the tunnel to locked\.vmlet-test:\d+: HTTP 407/) as unknown });
    // A proxy that cannot be reached is named.
    process.env.HTTPS_PROXY = 'http://127.0.0.1:1';
    await expect(lockedReg().manifest('v1')).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/cannot reach https:\/\/locked\.vmlet-test:\d+: through proxy 127\.0\.0\.1:1: ECONNREFUSED$/) as unknown });
    process.env.HTTPS_PROXY = `http://u:p%20w@${proxyHost}`;
    sni = undefined;
    await expect(lockedReg().manifest('v1')).rejects.toMatchObject({ message: expect.stringMatching(/SELF_SIGNED_CERT/) as unknown });
    expect(sni).toBe('locked.vmlet-test');
  });
});
