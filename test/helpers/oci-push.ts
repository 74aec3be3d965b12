// Images made in a test, entry by entry, and pushed to the loopback registry with its own HTTP
// API (no skopeo, no layout on disk): for layers no test image has (hostile, large, odd).
import { gzipSync } from 'node:zlib';
import { Header, Pax, type HeaderData } from 'tar';
import { sha256, type TestRegistry } from './registry.js';

export type TarEntry = HeaderData & { path: string; data?: string | Buffer };

/** A ustar stream of `entries`, in the given order (no sorting: order is part of the attack). */
export function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    const type = e.type ?? 'File';
    const h = new Header({ mode: type === 'Directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: new Date(1_000_000_000_000), ...e, type, size: type === 'File' ? data.length : 0 });
    // Paths and link targets past ustar's 100 bytes go in a pax header before it, as tar writes them.
    if (h.encode()) blocks.push(new Pax({ path: e.path, ...(e.linkpath ? { linkpath: e.linkpath } : {}) }).encode());
    blocks.push(h.block!);
    if (type === 'File') blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

async function putBlob(reg: TestRegistry, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`starting an upload: HTTP ${start.status}`);
  const loc = new URL(start.headers.get('location')!, reg.url);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: new Uint8Array(data), headers: { 'Content-Type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`uploading ${digest}: HTTP ${put.status}`);
  return digest;
}

/**
 * Pushes an OCI image of `tars` (each gzipped, fast) whose config's `config` is `run` (Cmd,
 * Entrypoint, Labels…) to `repo:v1`; returns its reference and its layers' digests.
 */
export async function pushLayers(reg: TestRegistry, repo: string, tars: Buffer[], run: Record<string, unknown> = {}): Promise<{ reference: string; layers: string[] }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: tars.map((t) => sha256(t)) }, config: run }));
  const layers = [];
  for (const tar of tars) {
    const body = gzipSync(tar, { level: 1 });
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await putBlob(reg, repo, body), size: body.length });
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await putBlob(reg, repo, config), size: config.length },
      layers,
    }),
  );
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/v1`, { method: 'PUT', body: new Uint8Array(manifest), headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  if (res.status !== 201) throw new Error(`pushing the manifest: HTTP ${res.status} ${await res.text()}`);
  return { reference: `${reg.host}/${repo}:v1`, layers: layers.map((l) => l.digest) };
}
