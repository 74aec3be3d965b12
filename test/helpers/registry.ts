// A real OCI distribution registry (Debian's docker-registry 2.8) on a free loopback port,
// plus skopeo pushes of the project's test images (test/registry/build-oci-images.sh).
// See test/registry/README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { ROOT, tempDir } from './vmlet.js';
import { waitFor } from './wait.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
export const BUILD_SCRIPT = join(ROOT, 'test/registry/build-oci-images.sh');
export const IMAGES_JSON = join(ROOT, '.cache/test-images/oci/images.json');

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;
/** Accept header that lets the registry return any manifest kind as stored. */
export const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(', ');

export type TestImageName =
  | 'containerdisk' | 'containerdisk-raw' | 'kernelboot' | 'kernelboot-bzimage' | 'rootfs' | 'rootfs-named-user' | 'busybox-app'
  | 'uncompressed' | 'multiarch' | 'hostile-traversal' | 'hostile-symlink' | 'hostile-hardlink'
  | 'hostile-device' | 'hostile-size';

export interface Descriptor { digest: string; size: number; mediaType: string }
export interface Platform { architecture: string; os: string; variant?: string }

/** One entry of images.json. For `multiarch`, manifestDigest/configDigest/layers are the
 *  linux/amd64 image's; a tag pushed from it resolves to indexDigest. */
export interface ImageInfo {
  /** OCI image layout directory (tag "latest" in its index.json). */
  layout: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  mediaType: string;
  /** Size of the manifest blob. */
  size: number;
  layers: Descriptor[];
  indexDigest?: string;
  indexMediaType?: string;
  platforms?: { platform: Platform; manifestDigest: string; configDigest: string }[];
}

export interface Credentials { user: string; password: string }

export interface TestRegistry {
  /** host:port as used in image references, e.g. 127.0.0.1:40123 */
  host: string;
  url: string;
  storageDir: string;
  logFile: string;
  creds?: Credentials;
  stop(): Promise<void>;
}

/** Builds the test images if their inputs changed (well under a second when up to date). */
export async function ensureTestImages(): Promise<Record<TestImageName, ImageInfo>> {
  await execa('bash', [BUILD_SCRIPT]);
  return testImages();
}

export function testImages(): Record<TestImageName, ImageInfo> {
  return JSON.parse(readFileSync(IMAGES_JSON, 'utf8')) as Record<TestImageName, ImageInfo>;
}

/** A port that was free a moment ago (the registry then binds it; start retries on a race). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port from listen(0)'))));
    });
  });
}

export function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.user}:${c.password}`).toString('base64')}`;
}

// Registries still running when the test process exits are killed (a crashed test
// must not leave a registry behind).
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export async function startRegistry(opts: { htpasswd?: Credentials } = {}): Promise<TestRegistry> {
  if (!existsSync(REGISTRY_BIN)) {
    throw new Error(`${REGISTRY_BIN} missing: run node-install/install.sh --skip-vmlet --with-test-deps`);
  }
  const dir = tempDir('vmlet-registry-');
  const storageDir = join(dir, 'storage');
  const logFile = join(dir, 'registry.log');
  let auth = '';
  if (opts.htpasswd) {
    // distribution only accepts bcrypt entries.
    const { stdout } = await execa('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password]);
    writeFileSync(join(dir, 'htpasswd'), `${stdout.trim()}\n`);
    auth = `auth:\n  htpasswd:\n    realm: vmlet-test\n    path: ${JSON.stringify(join(dir, 'htpasswd'))}\n`;
  }

  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    const config = join(dir, 'config.yml');
    // Upload purging off: its first run would otherwise be scheduled mid-test at random.
    writeFileSync(
      config,
      `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(storageDir)}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${JSON.stringify(host)}
${auth}`,
    );
    const log = openSync(logFile, 'a');
    const proc = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', log, log] });
    closeSync(log);
    running.add(proc);
    const exited = new Promise<number | string | null>((resolve) => {
      proc.once('exit', (code) => resolve(code));
      proc.once('error', (err) => resolve(err.message)); // spawn failed: no 'exit' follows
    });
    const stop = async (): Promise<void> => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      running.delete(proc);
      rmSync(storageDir, { recursive: true, force: true }); // keep config + log for debugging
    };
    try {
      await Promise.race([
        waitFor(`registry on ${url}/v2/`, async () => {
          const r = await fetch(`${url}/v2/`);
          return r.status === 200 || (opts.htpasswd !== undefined && r.status === 401);
        }, { timeoutMs: 20_000, intervalMs: 50 }),
        exited.then((code) => {
          throw new Error(`docker-registry exited (${code}) before serving; log: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
        }),
      ]);
      return { host, url, storageDir, logFile, creds: opts.htpasswd, stop };
    } catch (err) {
      lastErr = err;
      await stop();
    }
  }
  throw lastErr;
}

export interface PushOptions {
  creds?: Credentials;
  /** Manifest format in the registry; 'oci' (the layouts' own) keeps every digest. */
  format?: 'oci' | 'v2s2';
  /** 'decompress': push layers uncompressed (see test/registry/README.md); 'zstd': recompress them with zstd. */
  compress?: 'keep' | 'decompress' | 'zstd';
}

/** Pushes test image `name` to `repoAndTag` (e.g. 'vmlet/containerdisk:v1') with skopeo and
 *  returns the digest the registry reports for the tag (the index digest for multiarch). */
export async function pushImage(
  reg: TestRegistry,
  name: TestImageName,
  repoAndTag: string,
  opts: PushOptions = {},
): Promise<{ reference: string; manifestDigest: string }> {
  const info = testImages()[name];
  if (!info) throw new Error(`unknown test image ${name}`);
  const format = opts.format ?? 'oci';
  const creds = opts.creds ?? reg.creds;
  const reference = `${reg.host}/${repoAndTag}`;
  const all = info.indexDigest ? ['--all'] : []; // push the whole index, not one platform
  const dest = ['--dest-tls-verify=false', ...(creds ? ['--dest-creds', `${creds.user}:${creds.password}`] : [])];
  // --insecure-policy: no dependence on the host's /etc/containers/policy.json.
  const skopeo = (args: string[]) => execa('skopeo', ['--insecure-policy', 'copy', '--quiet', ...all, ...args]);
  const src = `oci:${info.layout}:${info.ref}`;
  if (opts.compress === 'decompress') {
    // --dest-decompress only acts on dir: destinations, and a direct push of decompressed
    // blobs may be swapped back to the gzip ones by skopeo's blob-info cache: go through a
    // dir: copy, then push that with --preserve-digests (which forbids any substitution).
    const tmp = tempDir('vmlet-skopeo-');
    try {
      await skopeo(['--dest-decompress', ...(format === 'v2s2' ? ['--format', 'v2s2'] : []), src, `dir:${tmp}`]);
      await skopeo(['--preserve-digests', ...dest, `dir:${tmp}`, `docker://${reference}`]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } else if (opts.compress === 'zstd') {
    // New digests by design: the layers are recompressed (zstd needs the OCI format).
    await skopeo(['--dest-compress', '--dest-compress-format', 'zstd', ...dest, src, `docker://${reference}`]);
  } else if (format === 'v2s2') {
    // Never with --preserve-digests: skopeo 1.9 then silently ignores --format.
    await skopeo(['--format', 'v2s2', ...dest, src, `docker://${reference}`]);
  } else {
    await skopeo(['--preserve-digests', ...dest, src, `docker://${reference}`]);
  }

  const { repo, tag } = splitRef(repoAndTag);
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: MANIFEST_ACCEPT, ...(creds ? { Authorization: basicAuth(creds) } : {}) },
  });
  const digest = res.headers.get('docker-content-digest');
  if (!res.ok || !digest) throw new Error(`HEAD ${reference}: ${res.status}, digest ${digest}`);
  return { reference, manifestDigest: digest };
}

function splitRef(repoAndTag: string): { repo: string; tag: string } {
  const i = repoAndTag.lastIndexOf(':');
  if (i <= 0 || repoAndTag.includes('/', i)) return { repo: repoAndTag, tag: 'latest' };
  return { repo: repoAndTag.slice(0, i), tag: repoAndTag.slice(i + 1) };
}

export function blobDataPath(reg: TestRegistry, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

/** Rewrites a stored blob with different bytes of the same length, so only a client that
 *  verifies digests notices: for gzip it changes the header's MTIME byte (still a valid gzip
 *  stream with the same content), otherwise it flips the last byte (a tar's zero padding). */
export function corruptBlob(reg: TestRegistry, digest: string): void {
  const file = blobDataPath(reg, digest);
  const data = readFileSync(file);
  if (data.length === 0) throw new Error(`blob ${digest} is empty: cannot corrupt it keeping its length`);
  const i = data.length > 10 && data[0] === 0x1f && data[1] === 0x8b ? 4 : data.length - 1;
  data[i] = (data[i] ?? 0) ^ 0x01;
  writeFileSync(file, data);
}

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
