// The NoCloud seed as a guest sees it: the ISO vmlet builds (src/vm/iso9660.ts), read back with
// isoinfo (Debian's genisoimage package) through both its trees, byte-identical on every rebuild. Its files are then checked by
// cloud-init itself: Debian 12's cloud-init (the guest side) is fetched with `apt-get download`
// and unpacked into .cache/ (nothing installed on the host, as the test image scripts do), and
// its own parsers read the user-data (MIME included), validate the cloud-config schema, parse
// the network-config and render it for ifupdown, netplan and networkd. Skipped with a note when
// the package or its Python deps are not available.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { VmletError } from '../../src/errors.js';
import { buildSeed, ENV_FILE, type CloudInitInput } from '../../src/vm/cloud-init.js';
import { writeSeedIso } from '../../src/vm/seed-iso.js';
import { tempDir } from '../helpers/vmlet.js';

const dir = tempDir('vmlet-seed-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const isoinfo = (...args: string[]) => execFileSync('isoinfo', args, { encoding: 'utf8' });
const extract = (iso: string, name: string, tree: '-R' | '-J' = '-R') => isoinfo('-i', iso, tree, '-x', `/${name}`);
const listing = (iso: string) =>
  isoinfo('-i', iso, '-R', '-l')
    .split('\n')
    .filter((l) => /^[-d]/.test(l))
    .map((l) => l.trim().split(/\s+/));

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1tJc0a2wTQwbXBpR8fKx1 alice@laptop';
const POD: CloudInitInput = {
  podUid: '0f6c3e9a-5b1d-4c2e-8f7a-1d2c3b4a5e6f',
  podName: 'db-0',
  hostname: 'db-0',
  annotations: {
    'vmlet.io/user-data': '#!/bin/sh\necho "seeded $(hostname)" > /run/seeded\n',
    VirtletCloudInitUserData: 'ignored: true\n', // vmlet.io/user-data wins
    'vmlet.io/ssh-authorized-keys': KEY,
    VirtletCloudInitMetaData: 'availability-zone: z1\n',
  },
  envs: [{ key: 'DB_PASSWORD', value: `p'a"s$s wörd` }, { key: 'MODE', value: 'primary' }],
  command: ['/usr/local/bin/db'],
  args: ['--data', '/var/lib/db'],
  network: {
    mac: '52:54:00:0a:0b:0c',
    ips: [
      { address: '10.88.0.7', prefix: 16, gateway: '10.88.0.1', family: 4 },
      { address: 'fd00:10:88::7', prefix: 64, gateway: 'fd00:10:88::1', family: 6 },
    ],
    routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }, { dst: '10.96.0.0/12' }],
    dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    mtu: 1450,
  },
};

describe('writeSeedIso', () => {
  it('names its files 8.3 in the plain ISO 9660 tree, as genisoimage does', async () => {
    const iso = join(dir, 'names.iso');
    await writeSeedIso(iso, { 'meta-data': 'a\n', 'user-data': 'b\n', 'network-config': 'c\n', 'vendor-data': 'd\n' });
    const names = isoinfo('-i', iso, '-l')
      .split('\n')
      .filter((l) => /^-/.test(l))
      .map((l) => l.trim().split(/\s+/).at(-1));
    expect(names).toEqual(['META_DAT.;1', 'NETWORK_.;1', 'USER_DAT.;1', 'VENDOR_D.;1']);
  });

  it('writes a cidata ISO (Rock Ridge + Joliet) whose files read back exactly', async () => {
    const files = { 'meta-data': 'instance-id: a\nlocal-hostname: h\n', 'user-data': '#cloud-config\n{}\n', 'network-config': 'version: 2\nethernets: {}\n' };
    const iso = join(dir, 'seed.iso');
    await writeSeedIso(iso, files);
    const info = isoinfo('-d', '-i', iso);
    expect(info).toMatch(/^Volume id: cidata$/m);
    expect(info).toMatch(/^Rock Ridge signatures version 1 found$/m);
    expect(info).toMatch(/^Joliet with UCS level 3 found$/m);
    for (const [name, content] of Object.entries(files)) {
      expect(extract(iso, name)).toBe(content);
      expect(extract(iso, name, '-J')).toBe(content);
    }
    // Rationalized Rock Ridge: owned by root, read-only, fixed dates.
    const rows = listing(iso).filter((r) => !['.', '..'].includes(r.at(-1)!));
    expect(rows.map((r) => r.at(-1)).sort()).toEqual(['meta-data', 'network-config', 'user-data']);
    for (const r of rows) expect([r[0], r[2], r[3], r[5], r[6], r[7]]).toEqual(['-r--r--r--', '0', '0', 'Jan', '1', '1970']);
    expect(statSync(iso).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]); // temp dir cleaned
  });

  it('gives identical bytes for the same files, whenever it runs', async () => {
    const files = { 'meta-data': 'instance-id: x\n', 'user-data': '#cloud-config\n{}\n' };
    const a = join(dir, 'a.iso');
    const b = join(dir, 'b.iso');
    await writeSeedIso(a, files);
    await writeSeedIso(b, files);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    // Directories too.
    for (const r of listing(b)) expect(r.slice(5, 8)).toEqual(['Jan', '1', '1970']);
    await writeSeedIso(b, { ...files, 'meta-data': 'instance-id: y\n' });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(false);
  });

  it('replaces an existing seed atomically', async () => {
    const iso = join(dir, 'replace.iso');
    await writeSeedIso(iso, { 'meta-data': 'instance-id: one\n' });
    const before = statSync(iso).ino;
    await writeSeedIso(iso, { 'meta-data': 'instance-id: two\n' });
    expect(statSync(iso).ino).not.toBe(before); // a rename, not a rewrite in place
    expect(extract(iso, 'meta-data')).toBe('instance-id: two\n');
  });

  it('refuses file names that are not plain names', async () => {
    await expect(writeSeedIso(join(dir, 'bad.iso'), { '../x': 'y' })).rejects.toThrow(/seed file name "..\/x"/);
  });

  it('says which seed it could not write, RESOURCE_EXHAUSTED on a full disk, and leaves nothing behind', async (ctx) => {
    const err = await writeSeedIso(join(dir, 'missing', 'seed.iso'), { 'meta-data': 'x\n' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmletError);
    expect((err as VmletError).kind).toBe('internal');
    expect((err as Error).message).toMatch(/^cannot write the cloud-init seed .*\/missing\/seed\.iso: ENOENT/);

    // A file system too small for the image (~360 KiB with its padding).
    const small = mkdtempSync(join(dir, 'small-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small], { encoding: 'utf8' });
    if (mounted.status !== 0) return ctx.skip(`mount -t tmpfs failed: ${mounted.stderr.trim()}`);
    try {
      const full = await writeSeedIso(join(small, 'seed.iso'), { 'meta-data': 'x\n' }).catch((e: unknown) => e);
      expect((full as VmletError).kind).toBe('resource-exhausted');
      expect((full as Error).message).toMatch(/^cannot write the cloud-init seed .*\/seed\.iso: ENOSPC/);
      expect(readdirSync(small)).toEqual([]);
    } finally {
      spawnSync('umount', [small]);
    }
  });

  it('takes a few milliseconds (median of 10)', async () => {
    const { files } = buildSeed(POD);
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await writeSeedIso(join(dir, 'timing.iso'), files);
      times.push(performance.now() - t);
    }
    times.sort((x, y) => x - y);
    const median = (times[4]! + times[5]!) / 2;
    console.log(`writeSeedIso: median ${median.toFixed(1)} ms of 10 (min ${times[0]!.toFixed(1)}, max ${times[9]!.toFixed(1)})`);
    expect(median).toBeLessThan(1000);
  });
});

describe('a pod seed on the ISO', () => {
  const iso = join(dir, 'pod.iso');
  const seed = buildSeed(POD);
  beforeAll(() => writeSeedIso(iso, seed.files));

  it('carries meta-data, user-data and network-config', () => {
    expect(listing(iso).map((r) => r.at(-1)).filter((n) => !['.', '..'].includes(n!)).sort()).toEqual(['meta-data', 'network-config', 'user-data']);
    for (const [name, content] of Object.entries(seed.files)) expect(extract(iso, name)).toBe(content);
  });

  it('meta-data parses to the pod uid, hostname and the Virtlet meta-data', () => {
    expect(parseYaml(extract(iso, 'meta-data'), { version: '1.1' })).toEqual({
      'instance-id': POD.podUid,
      'local-hostname': 'db-0',
      'availability-zone': 'z1',
    });
  });

  it('network-config has the netplan v2 shape', () => {
    const nc = parseYaml(extract(iso, 'network-config'), { version: '1.1' }) as { version: number; ethernets: { eth0: Record<string, unknown> } };
    expect(Object.keys(nc)).toEqual(['version', 'ethernets']);
    expect(nc.version).toBe(2);
    const eth = nc.ethernets.eth0;
    expect(eth.match).toEqual({ macaddress: '52:54:00:0a:0b:0c' });
    expect(eth['set-name']).toBe('eth0');
    expect(eth.addresses).toEqual(['10.88.0.7/16', 'fd00:10:88::7/64']);
    expect([eth.gateway4, eth.gateway6]).toEqual(['10.88.0.1', 'fd00:10:88::1']);
    expect(eth.routes).toEqual([{ to: '10.96.0.0/12', via: '10.88.0.1' }]);
    expect(eth.nameservers).toEqual({ addresses: ['10.96.0.10'], search: ['default.svc.cluster.local', 'svc.cluster.local'] });
    expect(eth.mtu).toBe(1450);
    const allowed = new Set(['match', 'set-name', 'dhcp4', 'dhcp6', 'addresses', 'gateway4', 'gateway6', 'routes', 'nameservers', 'mtu']);
    for (const k of Object.keys(eth)) expect(allowed.has(k), k).toBe(true);
  });

  it('user-data is a MIME multipart with the cloud-config and the script', () => {
    const ud = extract(iso, 'user-data');
    expect(ud).toMatch(/^Content-Type: multipart\/mixed; boundary="[^"]+"\nMIME-Version: 1.0\n\n/);
    expect(ud).toContain('Content-Type: text/cloud-config');
    expect(ud).toContain('Content-Type: text/x-shellscript');
  });
});

// ---- cloud-init's own parsers (Debian 12's cloud-init 22.4.2), when they can be had ----

const CACHE = fileURLToPath(new URL('../../.cache/cloud-init-py/', import.meta.url));
const PYPATH = join(CACHE, 'root/usr/lib/python3/dist-packages');
/** Debian's interpreter, the one its python3-* packages (installed by --with-test-deps) serve; a pyenv
 * or venv python3 earlier on PATH would not see them. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** cloud-init and the pure-Python modules it imports that --with-test-deps does not install. */
const CLOUD_INIT_DEBS = ['cloud-init', 'python3-configobj', 'python3-jsonpatch', 'python3-json-pointer'];

/** Unpacks CLOUD_INIT_DEBS into .cache/ once (never installed: cloud-init on the host would run at
 * its boot); a reason string when it cannot. */
function cloudInitPython(): string | undefined {
  const deps = spawnSync(PYTHON, ['-c', 'import yaml, jinja2, jsonschema, requests'], { encoding: 'utf8' });
  if (deps.status !== 0) return `${PYTHON} with yaml, jinja2, jsonschema and requests is not available (${deps.stderr.trim().split('\n').at(-1)})`;
  if (['cloudinit', 'configobj', 'jsonpatch.py', 'jsonpointer.py'].every((m) => existsSync(join(PYPATH, m)))) return undefined;
  const dl = join(CACHE, `dl-${process.pid}`);
  mkdirSync(dl, { recursive: true });
  try {
    const r = spawnSync('apt-get', ['-q', '-o', 'APT::Sandbox::User=root', 'download', ...CLOUD_INIT_DEBS], { cwd: dl, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) return `apt-get download cloud-init failed: ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)}`;
    const root = join(dl, 'root');
    for (const deb of readdirSync(dl).filter((f) => f.endsWith('.deb'))) execFileSync('dpkg-deb', ['-x', join(dl, deb), root]);
    rmSync(join(CACHE, 'root'), { recursive: true, force: true });
    renameSync(root, join(CACHE, 'root'));
    return undefined;
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}

const VALIDATE_PY = String.raw`
import json, os, sys, tempfile
from cloudinit import helpers, user_data, util, version
from cloudinit.config.schema import SchemaValidationError, get_schema, validate_cloudconfig_schema
from cloudinit.net import eni, netplan, network_state, networkd
d = sys.argv[1]
out = {"version": version.version_string(), "parts": []}
paths = helpers.Paths({"cloud_dir": tempfile.mkdtemp(), "run_dir": tempfile.mkdtemp()})
msg = user_data.UserDataProcessor(paths).process(open(os.path.join(d, "user-data"), "rb").read())
for part in msg.walk():
    if part.get_content_maintype() == "multipart":
        continue
    body = part.get_payload(decode=True).decode("utf-8")
    p = {"type": part.get_content_type(), "filename": part.get_filename(), "body": body}
    if p["type"] == "text/cloud-config":
        p["config"] = util.load_yaml(body)
        try:
            validate_cloudconfig_schema(p["config"], get_schema(), strict=True)
            p["schema_errors"] = []
        except SchemaValidationError as e:
            p["schema_errors"] = ["%s: %s" % (k, m) for k, m in e.schema_errors]
    out["parts"].append(p)
out["meta"] = util.load_yaml(open(os.path.join(d, "meta-data")).read())
nc = os.path.join(d, "network-config")
if os.path.exists(nc):
    ns = network_state.parse_net_config_data(util.load_yaml(open(nc).read()))
    out["rendered"] = {}
    for name, renderer in (("eni", eni.Renderer), ("netplan", netplan.Renderer), ("networkd", networkd.Renderer)):
        t = tempfile.mkdtemp()
        renderer({}).render_network_state(ns, target=t)
        files = {}
        for root, _, names in os.walk(t):
            for n in names:
                files[os.path.relpath(os.path.join(root, n), t)] = open(os.path.join(root, n)).read()
        out["rendered"][name] = files
print(json.dumps(out))
`;

/** What VALIDATE_PY prints. */
interface ValidateResult {
  version?: string;
  parts?: {
    type: string;
    filename: string | null;
    body: string;
    config?: { write_files?: { content: string }[]; [key: string]: unknown };
    schema_errors?: string[];
  }[];
  meta?: unknown;
  /** Renderer → file path → text. */
  rendered?: Record<string, Record<string, string>>;
}

describe('the seed as cloud-init reads it', () => {
  let skip: string | undefined;
  let result: ValidateResult = {};
  beforeAll(() => {
    skip = cloudInitPython();
    if (skip) {
      console.log(`cloud-init parsers skipped: ${skip}`);
      return;
    }
    const out = join(dir, 'extracted');
    mkdirSync(out, { recursive: true });
    const iso = join(dir, 'ci.iso');
    return writeSeedIso(iso, buildSeed(POD).files).then(() => {
      for (const name of ['meta-data', 'user-data', 'network-config']) writeFileSync(join(out, name), extract(iso, name));
      const r = spawnSync(PYTHON, ['-c', VALIDATE_PY, out], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: PYPATH }, timeout: 60_000 });
      if (r.status !== 0) throw new Error(`cloud-init validation failed: ${r.stderr}`);
      result = JSON.parse(r.stdout) as ValidateResult;
    });
  });

  it('splits the user-data into the cloud-config and the script, with a schema-valid config', (ctx) => {
    if (skip) return ctx.skip();
    expect(result.version).toMatch(/^\d+\.\d+/);
    const parts = result.parts!;
    expect(parts.map((p) => p.type)).toEqual(['text/cloud-config', 'text/x-shellscript']);
    expect(parts[0]!.schema_errors).toEqual([]);
    expect(parts[0]!.config!.ssh_authorized_keys).toEqual([KEY]);
    expect(parts[0]!.config!.runcmd).toEqual([['/bin/sh', '-c', `set -a; . ${ENV_FILE}; set +a; exec "$@"`, 'vmlet', '/usr/local/bin/db', '--data', '/var/lib/db']]);
    expect(parts[0]!.config!.write_files![0]!.content).toContain(`DB_PASSWORD='p'\\''a"s$s wörd'`); // non-ASCII survives MIME
    expect(parts[0]!.config!.ignored).toBeUndefined();
    expect(parts[1]!.body).toBe(POD.annotations['vmlet.io/user-data']);
  });

  it('the env file is read back by a shell exactly', (ctx) => {
    if (skip) return ctx.skip();
    const envFile = join(dir, 'environment');
    writeFileSync(envFile, result.parts![0]!.config!.write_files![0]!.content);
    const r = spawnSync('sh', ['-c', `set -a; . "$1"; set +a; printf '%s\\0' "$DB_PASSWORD" "$MODE"`, 'sh', envFile], { encoding: 'utf8' });
    expect(r.stdout.split('\0').slice(0, 2)).toEqual([`p'a"s$s wörd`, 'primary']);
  });

  it('meta-data is what vmlet wrote', (ctx) => {
    if (skip) return ctx.skip();
    expect(result.meta).toEqual({ 'instance-id': POD.podUid, 'local-hostname': 'db-0', 'availability-zone': 'z1' });
  });

  it('network-config renders to ifupdown, netplan and networkd with the pod addresses', (ctx) => {
    if (skip) return ctx.skip();
    const r = result.rendered!;
    const eniText = r.eni!['etc/network/interfaces']!;
    expect(eniText).toContain('iface eth0 inet static');
    expect(eniText).toContain('address 10.88.0.7/16');
    expect(eniText).toContain('gateway 10.88.0.1');
    expect(eniText).toContain('address fd00:10:88::7/64');
    expect(eniText).toContain('gateway fd00:10:88::1');
    expect(eniText).toContain('mtu 1450');
    expect(eniText).toContain('dns-search default.svc.cluster.local svc.cluster.local');
    expect(r.eni!['etc/udev/rules.d/70-persistent-net.rules']).toContain('ATTR{address}=="52:54:00:0a:0b:0c", NAME="eth0"');
    expect(r.netplan!['etc/netplan/50-cloud-init.yaml']).toContain('10.88.0.7/16');
    const networkdText = Object.values(r.networkd!).join('\n');
    expect(networkdText).toContain('MACAddress=52:54:00:0a:0b:0c');
    expect(networkdText).toContain('Gateway=10.88.0.1');
    expect(networkdText).toContain('Gateway=fd00:10:88::1');
    expect(networkdText).toContain('Destination=10.96.0.0/12');
  });
});
