// The downstream client's transport (src/proxy/h2-unary.ts, through connectDownstream) against
// real servers on unix sockets: grpc-js's server (what a downstream CRI speaks: the same
// protocol as containerd's grpc-go) and, for answers grpc-js would not send, a bare node:http2
// server.
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import { Metadata, Server, ServerCredentials, status as Status, type ServiceError, type handleUnaryCall } from '@grpc/grpc-js';
import { loadCri } from '../../src/grpc/cri-proto.js';
import { connectDownstream, type Downstream } from '../../src/proxy/downstream.js';
import { H2UnaryClient, timeoutHeader } from '../../src/proxy/h2-unary.js';
import { tempDir } from '../helpers/vmlet.js';

const cri = loadCri().runtime.v1;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function grpcServer(socket: string, impl: Record<string, handleUnaryCall<Record<string, unknown>, unknown>>): Promise<Server> {
  const server = new Server();
  server.addService(cri.RuntimeService.service, impl);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  cleanups.push(() => server.forceShutdown());
  return server;
}

function downstream(socket: string): Downstream {
  const ds = connectDownstream(`unix://${socket}`);
  cleanups.push(() => ds.close());
  return ds;
}

const fail = (p: Promise<unknown>) => p.then(() => { throw new Error('expected the call to fail'); }, (e: ServiceError) => e);

const version: handleUnaryCall<Record<string, unknown>, unknown> = (_call, cb) => cb(null, { version: '0.1.0', runtime_name: 'fakecri', runtime_version: '1', runtime_api_version: 'v1' });

describe('downstream transport (h2-unary)', () => {
  it('carries answers larger than HTTP/2\'s first flow-control window', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'cri.sock');
    const containers = Array.from({ length: 2000 }, (_, i) => ({ id: `c${i}`.padEnd(64, '0'), pod_sandbox_id: 'p'.repeat(64), state: 'CONTAINER_RUNNING', labels: { app: `app-${i}` } }));
    await grpcServer(socket, { ListContainers: (_call, cb) => cb(null, { containers }) });
    const ds = downstream(socket);
    const res = await ds.call<{ containers: { id: string; labels: Record<string, string> }[] }>('runtime', 'ListContainers', {});
    expect(res.containers).toHaveLength(2000);
    expect(res.containers[1999]).toMatchObject({ id: containers[1999]!.id, labels: { app: 'app-1999' } });
  });

  it('passes an error\'s code, details and trailing metadata (text and binary) on', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'cri.sock');
    await grpcServer(socket, {
      ContainerStatus: (_call, cb) => {
        const md = new Metadata();
        md.set('x-reason', 'gone');
        md.set('x-trace-bin', Buffer.from([0, 1, 2, 255]));
        cb({ code: Status.NOT_FOUND, details: 'container "c1" not found: 100% gone, ünïcode', metadata: md });
      },
    });
    const err = await fail(downstream(socket).call('runtime', 'ContainerStatus', { container_id: 'c1' }));
    expect(err.code).toBe(Status.NOT_FOUND);
    expect(err.details).toBe('container "c1" not found: 100% gone, ünïcode');
    expect(err.metadata.get('x-reason')).toEqual(['gone']);
    expect(err.metadata.get('x-trace-bin')).toEqual([Buffer.from([0, 1, 2, 255])]);
    expect(err.metadata.get('grpc-status')).toEqual([]);
  });

  it('gives up at the deadline with DEADLINE_EXCEEDED, and sends the deadline on', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'cri.sock');
    let seen: Date | number | undefined;
    await grpcServer(socket, {
      Version: (call) => {
        seen = call.getDeadline(); // and never answers
      },
    });
    const ds = downstream(socket);
    const started = Date.now();
    const err = await fail(ds.call('runtime', 'Version', {}, { deadline: started + 300 }));
    expect(err.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(seen instanceof Date ? seen.getTime() : seen).toBeGreaterThan(started);
    // A deadline already past: not sent at all.
    expect((await fail(ds.call('runtime', 'Version', {}, { deadline: Date.now() - 1 }))).code).toBe(Status.DEADLINE_EXCEEDED);
  });

  it('is UNAVAILABLE naming the socket while nothing listens, and connects once something does', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'cri.sock');
    const ds = downstream(socket);
    const err = await fail(ds.call('runtime', 'Version', {}));
    expect(err.code).toBe(Status.UNAVAILABLE);
    expect(err.details).toContain(socket);
    const server = await grpcServer(socket, { Version: version });
    expect(await ds.call('runtime', 'Version', {})).toMatchObject({ runtime_name: 'fakecri' });
    // The downstream restarts: a call while it is gone fails, the next one after it is back works.
    server.forceShutdown();
    expect((await fail(ds.call('runtime', 'Version', {}))).code).toBe(Status.UNAVAILABLE);
    await grpcServer(socket, { Version: version });
    expect(await ds.call('runtime', 'Version', {})).toMatchObject({ runtime_name: 'fakecri' });
  });

  it('refuses an answer above its size limit with RESOURCE_EXHAUSTED', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'cri.sock');
    await grpcServer(socket, { Version: (_call, cb) => cb(null, { version: 'x'.repeat(5000), runtime_name: 'fakecri' }) });
    const client = new H2UnaryClient(socket, 1000);
    cleanups.push(() => client.close());
    const path = cri.RuntimeService.service.Version.path;
    const err = await fail(client.call(path, Buffer.alloc(0)));
    expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/larger than max \(\d+ vs 1000\)/);
  });

  it('maps an HTTP error, a status after headers, and a stream without status as gRPC does', async () => {
    const socket = join(tempDir('vmlet-h2-'), 'h2.sock');
    const h2: Http2Server = createH2Server();
    h2.on('stream', (stream, headers) => {
      const path = String(headers[':path']);
      if (path.endsWith('/Version')) {
        stream.respond({ ':status': 503 }, { endStream: true });
      } else if (path.endsWith('/Status')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(Status.PERMISSION_DENIED), 'grpc-message': 'not%20yours' }));
        stream.end();
      } else {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.end(); // no message, no trailers
      }
    });
    await new Promise<void>((resolve) => h2.listen(socket, resolve));
    cleanups.push(() => new Promise<void>((resolve) => h2.close(() => resolve())));
    const ds = downstream(socket);
    expect(await fail(ds.call('runtime', 'Version', {}))).toMatchObject({ code: Status.UNAVAILABLE, details: 'Received HTTP status code 503' });
    expect(await fail(ds.call('runtime', 'Status', {}))).toMatchObject({ code: Status.PERMISSION_DENIED, details: 'not yours' });
    expect((await fail(ds.call('runtime', 'ListContainers', {}))).code).toBe(Status.INTERNAL);
  });

  it('refuses methods that are not unary CRI calls', async () => {
    const ds = downstream(join(tempDir('vmlet-h2-'), 'none.sock'));
    await expect(ds.call('runtime', 'NoSuchCall', {})).rejects.toThrow(/no runtime unary method NoSuchCall/);
    await expect(ds.call('runtime', 'GetContainerEvents', {})).rejects.toThrow(/no runtime unary method GetContainerEvents/);
  });

  it('writes grpc-timeout in at most 8 digits', () => {
    expect(timeoutHeader(1500)).toBe('1500m');
    expect(timeoutHeader(0.2)).toBe('1m');
    expect(timeoutHeader(99_999_999)).toBe('99999999m');
    expect(timeoutHeader(100_000_000)).toBe('100000S');
    expect(timeoutHeader(1e12)).toBe('277778H');
  });
});
