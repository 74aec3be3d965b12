// An HTTP front for the test registry that sends response bodies at a set rate, so a pull of a
// small test image lasts long enough to report progress (a real registry over a slow link).
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform } from 'node:stream';

export interface SlowProxy {
  host: string;
  url: string;
  stop(): Promise<void>;
}

/** Passes chunks on no faster than `bytesPerSecond` (16 KiB slices, paced by a timer). */
function throttle(bytesPerSecond: number): Transform {
  const slice = 16 * 1024;
  let sentAt = Date.now();
  let budget = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const pushSlices = (off: number): void => {
        if (off >= chunk.length) return cb();
        const now = Date.now();
        budget += ((now - sentAt) * bytesPerSecond) / 1000;
        sentAt = now;
        const n = Math.min(slice, chunk.length - off);
        if (budget >= n) {
          budget -= n;
          this.push(chunk.subarray(off, off + n));
          return pushSlices(off + n);
        }
        setTimeout(() => pushSlices(off), Math.ceil(((n - budget) * 1000) / bytesPerSecond));
      };
      pushSlices(0);
    },
  });
}

/** Flips one byte half-way through a body of `size` bytes (a blob corrupted on its way). */
function flipAt(size: number): Transform {
  let seen = 0;
  const at = Math.floor(size / 2);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (seen <= at && at < seen + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[at - seen] = chunk[at - seen]! ^ 0xff;
      }
      seen += chunk.length;
      cb(null, chunk);
    },
  });
}

/** `corrupt`: request paths whose response body gets one byte flipped half-way. */
export async function startSlowProxy(upstream: string, bytesPerSecond: number, opts: { corrupt?: (path: string) => boolean } = {}): Promise<SlowProxy> {
  const up = new URL(upstream);
  const server: Server = createServer((req, res) => {
    const out = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        const size = Number(upRes.headers['content-length']);
        const body = opts.corrupt?.(req.url ?? '') && size > 0 ? upRes.pipe(flipAt(size)) : upRes;
        body.pipe(throttle(bytesPerSecond)).pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
