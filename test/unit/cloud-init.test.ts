import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { VmletError } from '../../src/errors.js';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { invalidArgumentFrom } from '../helpers/errors.js';
import { buildSeed, ENV_FILE, SEED_LIMITS, type CloudInitInput, type PodNetworkInfo } from '../../src/vm/cloud-init.js';

const KEY1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1tJc0a2wTQwbXBpR8fKx1 alice@laptop';
const KEY2 = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7Zt3nq9+/x== bob@desk';
const KEY3 = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI carol@x';

const NET: PodNetworkInfo = {
  mac: '52:54:00:12:34:56',
  ips: [{ address: '10.88.0.5', prefix: 16, gateway: '10.88.0.1', family: 4 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] },
  mtu: 1450,
};

function input(extra: Partial<CloudInitInput> = {}): CloudInitInput {
  return { podUid: '7d1c9a3e-0b7f-4d8e-9a55-3c2b1f0e6d4a', podName: 'web-7f9c', hostname: 'web', annotations: {}, envs: [], command: [], args: [], ...extra };
}

const seed = (extra: Partial<CloudInitInput> = {}) => buildSeed(input(extra));
const withAnn = (annotations: Record<string, string>, extra: Partial<CloudInitInput> = {}) => seed({ annotations, ...extra });

/** YAML as cloud-init's PyYAML reads it (1.1: 0644 is octal, yes is true), as the test expects it. */
const y11 = <T = Record<string, unknown>>(text: string) => parseYaml(text, { version: '1.1' }) as T;

/** The netplan v2 network-config fields the tests read. */
interface NetworkConfig {
  version: number;
  ethernets: { eth0: NetplanEthernet };
}

interface NetplanEthernet {
  match: { macaddress: string };
  addresses?: string[];
  gateway4?: string;
  gateway6?: string;
  routes?: unknown[];
  nameservers?: unknown;
}

/** The cloud-config fields the tests read into; any other is compared as a plain value. */
interface CloudConfig {
  write_files?: { path: string; content: string; permissions?: unknown }[];
  runcmd?: unknown[];
  ssh_authorized_keys?: string[];
  [key: string]: unknown;
}

/** The cloud-config of a plain (non-multipart) user-data. */
function cloudConfig(userData: string): CloudConfig {
  expect(userData.split('\n')[0]).toBe('#cloud-config');
  return y11<CloudConfig | null>(userData) ?? {};
}

interface MimePart {
  headers: Record<string, string>;
  body: string;
}

/** Splits a multipart/mixed user-data the way Python's email parser does (enough for these tests). */
function mimeParts(userData: string): MimePart[] {
  const boundary = /^Content-Type: multipart\/mixed; boundary="([^"]+)"$/m.exec(userData)?.[1];
  expect(boundary).toBeDefined();
  const chunks = userData.split(`\n--${boundary}`);
  expect(chunks.at(-1)).toBe('--\n');
  return chunks.slice(1, -1).map((chunk) => {
    const [head, ...rest] = chunk.replace(/^\n/, '').split('\n\n');
    const headers = Object.fromEntries((head ?? '').split('\n').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const raw = rest.join('\n\n');
    const body = headers['content-transfer-encoding'] === 'base64' ? Buffer.from(raw.replace(/\n/g, ''), 'base64').toString('utf8') : raw;
    return { headers, body };
  });
}

const rejection = invalidArgumentFrom;

describe('the seed from parsed settings (cloud-init-settings.test.ts: the parsing)', () => {
  const settings = (pod: Record<string, string>) => parseVmSettings({ sandboxAnnotations: pod, containerAnnotations: {}, defaults: NODE_DEFAULTS }).cloudInit;

  it('is the seed the same annotations give', () => {
    const ann = { 'vmlet.io/user-data': '#cloud-config\n# note\nruncmd: [date]\n', VirtletCloudInitMetaData: 'zone: z1\n', VirtletSSHKeys: KEY2 };
    const extra = { command: ['app'], envs: [{ key: 'A', value: '1' }], network: NET };
    const { annotations: _, ...base } = input(extra);
    expect(buildSeed({ ...base, cloudInit: settings(ann) })).toEqual(withAnn(ann, extra));
  });

  it('leaves the settings as parsed: building twice gives the same seed', () => {
    const cloudInit = settings({ 'vmlet.io/user-data': '#cloud-config\nruncmd: [date]\n', 'vmlet.io/meta-data': 'instance-id: x\n' });
    const { annotations: _, ...base } = input({ command: ['app'] });
    const first = buildSeed({ ...base, cloudInit });
    expect(buildSeed({ ...base, cloudInit })).toEqual(first);
    expect(cloudConfig(first.files['user-data']).runcmd).toEqual(['date', ['app']]);
  });
});

describe('meta-data', () => {
  it('has instance-id = pod uid and local-hostname = sandbox hostname', () => {
    const s = seed();
    expect(y11(s.files['meta-data'])).toEqual({ 'instance-id': '7d1c9a3e-0b7f-4d8e-9a55-3c2b1f0e6d4a', 'local-hostname': 'web' });
    expect(s.files['meta-data'].split('\n')[0]).toBe('instance-id: 7d1c9a3e-0b7f-4d8e-9a55-3c2b1f0e6d4a');
  });

  it('is stable for the same pod (restarts keep the instance-id)', () => {
    expect(seed().files).toEqual(seed().files);
    expect(y11(seed({ podUid: 'other' }).files['meta-data'])['instance-id']).toBe('other');
  });

  it('falls back to the pod name without a sandbox hostname', () => {
    expect(y11(seed({ hostname: '' }).files['meta-data'])['local-hostname']).toBe('web-7f9c');
  });

  it('merges VirtletCloudInitMetaData: user keys win, except instance-id', () => {
    const md = y11(withAnn({ VirtletCloudInitMetaData: 'instance-id: mine\nlocal-hostname: custom\npublic-keys: [k]\nzone: "yes"\n' }).files['meta-data']);
    expect(md).toEqual({ 'instance-id': '7d1c9a3e-0b7f-4d8e-9a55-3c2b1f0e6d4a', 'local-hostname': 'custom', 'public-keys': ['k'], zone: 'yes' });
  });

  it('vmlet.io/meta-data wins over VirtletCloudInitMetaData', () => {
    const md = y11(withAnn({ 'vmlet.io/meta-data': 'a: 1\n', VirtletCloudInitMetaData: 'b: 2\n' }).files['meta-data']);
    expect(md).toEqual({ 'instance-id': '7d1c9a3e-0b7f-4d8e-9a55-3c2b1f0e6d4a', 'local-hostname': 'web', a: 1 });
  });

  it('rejects meta-data that is not YAML or not a mapping, naming the annotation', () => {
    expect(rejection(() => withAnn({ VirtletCloudInitMetaData: 'a: [1\nb: 2\n' })).message).toMatch(/^annotation VirtletCloudInitMetaData is not valid YAML: line \d+, column \d+: /);
    expect(rejection(() => withAnn({ 'vmlet.io/meta-data': '- a\n- b\n' })).message).toMatch(/^annotation vmlet.io\/meta-data must be cloud-init meta-data .* the document is a list/);
  });

  it('quotes values YAML 1.1 would misread', () => {
    const s = seed({ hostname: 'yes', podUid: '0644' });
    expect(y11(s.files['meta-data'])).toEqual({ 'instance-id': '0644', 'local-hostname': 'yes' });
  });
});

describe('network-config', () => {
  it('is netplan v2 with a MAC match, static address, gateway, DNS and MTU', () => {
    const s = seed({ network: NET });
    expect(s.mode).toBe('both');
    expect(y11(s.files['network-config']!)).toEqual({
      version: 2,
      ethernets: {
        eth0: {
          match: { macaddress: '52:54:00:12:34:56' },
          'set-name': 'eth0',
          dhcp4: false,
          dhcp6: false,
          addresses: ['10.88.0.5/16'],
          gateway4: '10.88.0.1',
          nameservers: { addresses: ['10.96.0.10'], search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'] },
          mtu: 1450,
        },
      },
    });
    // YAML 1.1 reads an unquoted all-digit MAC as a base-60 integer.
    expect(s.files['network-config']).toContain('macaddress: "52:54:00:12:34:56"');
  });

  it('lowercases the MAC and carries extra routes with their gateway or the pod gateway', () => {
    const nc = y11<NetworkConfig>(seed({ network: { ...NET, mac: '52:54:00:AB:CD:EF', routes: [{ dst: '10.96.0.0/12' }, { dst: '192.168.0.0/16', gw: '10.88.0.254' }] } }).files['network-config']!);
    const eth = nc.ethernets.eth0;
    expect(eth.match.macaddress).toBe('52:54:00:ab:cd:ef');
    expect(eth.gateway4).toBe('10.88.0.1');
    expect(eth.routes).toEqual([{ to: '10.96.0.0/12', via: '10.88.0.1' }, { to: '192.168.0.0/16', via: '10.88.0.254' }]);
  });

  it('takes the default gateway from a 0.0.0.0/0 route with its own gw', () => {
    const nc = y11<NetworkConfig>(seed({ network: { ...NET, ips: [{ address: '10.88.0.5', prefix: 16, family: 4 }], routes: [{ dst: '0.0.0.0/0', gw: '10.88.0.2' }] } }).files['network-config']!);
    expect(nc.ethernets.eth0.gateway4).toBe('10.88.0.2');
    expect(nc.ethernets.eth0.routes).toBeUndefined();
  });

  it('routes through an off-subnet gateway on-link (/32 pod addresses)', () => {
    const nc = y11<NetworkConfig>(seed({ network: { ...NET, ips: [{ address: '10.1.2.3', prefix: 32, gateway: '169.254.1.1', family: 4 }] } }).files['network-config']!);
    expect(nc.ethernets.eth0.gateway4).toBeUndefined();
    expect(nc.ethernets.eth0.routes).toEqual([{ to: '0.0.0.0/0', via: '169.254.1.1', 'on-link': true }]);
  });

  it('configures IPv6 too (dual stack)', () => {
    const net: PodNetworkInfo = {
      ...NET,
      ips: [...NET.ips, { address: 'fd00:10:88::5', prefix: 64, gateway: 'fd00:10:88::1', family: 6 }],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }, { dst: 'fd00:10:96::/108' }],
      dns: { nameservers: ['10.96.0.10', 'fd00:10:96::a'], search: [] },
    };
    const eth = y11<NetworkConfig>(seed({ network: net }).files['network-config']!).ethernets.eth0;
    expect(eth.addresses).toEqual(['10.88.0.5/16', 'fd00:10:88::5/64']);
    expect(eth.gateway4).toBe('10.88.0.1');
    expect(eth.gateway6).toBe('fd00:10:88::1');
    expect(eth.routes).toEqual([{ to: 'fd00:10:96::/108', via: 'fd00:10:88::1' }]);
    expect(eth.nameservers).toEqual({ addresses: ['10.96.0.10', 'fd00:10:96::a'] });
  });

  it('IPv6 only', () => {
    const eth = y11<NetworkConfig>(seed({ network: { ...NET, ips: [{ address: 'fd00::5', prefix: 64, gateway: 'fd00::1', family: 6 }], routes: [] } }).files['network-config']!).ethernets.eth0;
    expect(eth.addresses).toEqual(['fd00::5/64']);
    expect(eth.gateway6).toBe('fd00::1');
    expect(eth.gateway4).toBeUndefined();
  });

  it('is left out with vmlet.io/network-config: dhcp, and without a network', () => {
    const dhcp = withAnn({ 'vmlet.io/network-config': 'dhcp' }, { network: NET });
    expect(dhcp.mode).toBe('dhcp');
    expect(dhcp.files['network-config']).toBeUndefined();
    expect(Object.keys(dhcp.files).sort()).toEqual(['meta-data', 'user-data']);
    const none = seed();
    expect(none.mode).toBe('both');
    expect(none.files['network-config']).toBeUndefined();
    for (const mode of ['static', 'both']) expect(withAnn({ 'vmlet.io/network-config': mode }, { network: NET }).files['network-config']).toContain('10.88.0.5/16');
  });

  it('rejects other modes, naming the annotation and the allowed values', () => {
    for (const v of ['DHCP', 'none', '']) {
      expect(rejection(() => withAnn({ 'vmlet.io/network-config': v }, { network: NET })).message).toBe(
        `annotation vmlet.io/network-config=${JSON.stringify(v)} is invalid: allowed both | static | dhcp`,
      );
    }
  });

  it('refuses a malformed network from vmlet itself as an internal error', () => {
    const err = (() => {
      try {
        seed({ network: { ...NET, mac: 'nope' } });
      } catch (e) {
        return e as VmletError;
      }
      return undefined;
    })();
    expect(err?.kind).toBe('internal');
  });
});

describe('user-data', () => {
  it('is an empty #cloud-config without annotations, envs or command', () => {
    const ud = seed().files['user-data'];
    expect(ud).toBe('#cloud-config\n{}\n');
    expect(cloudConfig(ud)).toEqual({});
  });

  it('adds SSH keys from vmlet.io/ssh-authorized-keys (newline-separated, blank lines and comments skipped)', () => {
    const ud = withAnn({ 'vmlet.io/ssh-authorized-keys': `${KEY1}\r\n\n# old key\n  ${KEY2}  \n` }).files['user-data'];
    expect(cloudConfig(ud).ssh_authorized_keys).toEqual([KEY1, KEY2]);
  });

  it('accepts keys with options and certificates', () => {
    const withOpts = `no-pty,command="/bin/true" ${KEY1}`;
    const cert = 'ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= me';
    expect(cloudConfig(withAnn({ VirtletSSHKeys: `${withOpts}\n${cert}` }).files['user-data']).ssh_authorized_keys).toEqual([withOpts, cert]);
  });

  it('rejects a line that is not a public key, naming the annotation and the line', () => {
    const e = rejection(() => withAnn({ 'vmlet.io/ssh-authorized-keys': `${KEY1}\n-----BEGIN OPENSSH PRIVATE KEY-----` }));
    expect(e.message).toMatch(/^annotation vmlet.io\/ssh-authorized-keys line 2 is not an OpenSSH public key: allowed/);
  });

  it('VirtletSSHKeys is an alias; vmlet.io/ssh-authorized-keys wins when both are set', () => {
    expect(cloudConfig(withAnn({ VirtletSSHKeys: KEY2 }).files['user-data']).ssh_authorized_keys).toEqual([KEY2]);
    expect(cloudConfig(withAnn({ VirtletSSHKeys: KEY2, 'vmlet.io/ssh-authorized-keys': KEY1 }).files['user-data']).ssh_authorized_keys).toEqual([KEY1]);
  });

  it('writes the envs to /etc/vmlet/environment, 0600, in shell quoting that survives any value', () => {
    const envs = [
      { key: 'PLAIN', value: 'x' },
      { key: 'QUOTE', value: `it's "q" $HOME \`id\` \\n` },
      { key: 'MULTI', value: 'a\nb' },
      { key: 'EMPTY', value: '' },
      { key: 'PLAIN', value: 'last wins' },
    ];
    const cfg = cloudConfig(seed({ envs }).files['user-data']);
    expect(cfg.write_files).toHaveLength(1);
    const f = cfg.write_files![0]!;
    expect(f).toMatchObject({ path: ENV_FILE, owner: 'root:root', permissions: '0600' });
    expect(ENV_FILE).toBe('/etc/vmlet/environment');
    const lines = f.content.split('\n').filter((l) => !l.startsWith('#'));
    expect(lines).toEqual([`PLAIN='last wins'`, `QUOTE='it'\\''s "q" $HOME \`id\` \\n'`, `MULTI='a`, `b'`, `EMPTY=''`, '']);
  });

  it('rejects env names a shell file cannot hold', () => {
    expect(rejection(() => seed({ envs: [{ key: 'my.var', value: '1' }] })).message).toMatch(/^container env "my.var" cannot be set in a VM .*allowed names match/);
    expect(rejection(() => seed({ envs: [{ key: 'A', value: 'x\0y' }] })).message).toMatch(/NUL/);
  });

  it('runs command + args as one argv runcmd entry, not a shell string', () => {
    const cfg = cloudConfig(seed({ command: ['/usr/bin/server'], args: ['--listen', ':8080', 'a b; rm -rf /'] }).files['user-data']);
    expect(cfg.runcmd).toEqual([['/usr/bin/server', '--listen', ':8080', 'a b; rm -rf /']]);
    expect(cloudConfig(seed({ args: ['echo', 'hi'] }).files['user-data']).runcmd).toEqual([['echo', 'hi']]);
    expect(cloudConfig(seed({ envs: [{ key: 'A', value: '1' }] }).files['user-data']).runcmd).toBeUndefined();
  });

  it('loads the env file before the command when there are envs', () => {
    const cfg = cloudConfig(seed({ envs: [{ key: 'A', value: '1' }], command: ['app'], args: ['x y'] }).files['user-data']);
    expect(cfg.runcmd).toEqual([['/bin/sh', '-c', `set -a; . ${ENV_FILE}; set +a; exec "$@"`, 'vmlet', 'app', 'x y']]);
  });

  it('merges vmlet.io/user-data: user lists kept and vmlet entries appended, user scalars and comments kept', () => {
    const user = [
      '#cloud-config',
      '# keep me',
      'hostname: custom',
      'ssh_pwauth: yes',
      'ssh_authorized_keys:',
      `  - ${KEY3}`,
      'runcmd:',
      '  - echo first',
      'write_files:',
      '  - path: /etc/motd',
      '    permissions: 0644',
      '    content: hello',
      'packages: [htop]',
      '',
    ].join('\n');
    const ud = seed({
      annotations: { 'vmlet.io/user-data': user, 'vmlet.io/ssh-authorized-keys': KEY1 },
      envs: [{ key: 'A', value: '1' }],
      command: ['app'],
    }).files['user-data'];
    expect(ud.split('\n').slice(0, 2)).toEqual(['#cloud-config', '# keep me']);
    expect(ud).toContain('permissions: 0644'); // octal stays octal for PyYAML
    const cfg = cloudConfig(ud);
    expect(cfg.hostname).toBe('custom');
    expect(cfg.ssh_pwauth).toBe(true);
    expect(cfg.packages).toEqual(['htop']);
    expect(cfg.ssh_authorized_keys).toEqual([KEY3, KEY1]);
    expect(cfg.runcmd![0]).toBe('echo first');
    expect(cfg.runcmd![1]).toEqual(['/bin/sh', '-c', `set -a; . ${ENV_FILE}; set +a; exec "$@"`, 'vmlet', 'app']);
    expect(cfg.write_files!.map((f) => f.path)).toEqual(['/etc/motd', ENV_FILE]);
    expect(cfg.write_files![0]!.permissions).toBe(0o644);
  });

  it('fills a user key that is present but empty', () => {
    expect(cloudConfig(withAnn({ 'vmlet.io/user-data': '#cloud-config\nssh_authorized_keys:\n', VirtletSSHKeys: KEY1 }).files['user-data']).ssh_authorized_keys).toEqual([KEY1]);
  });

  it('appends to a list the user wrote through an alias without changing the anchor', () => {
    const cfg = cloudConfig(withAnn({ 'vmlet.io/user-data': '#cloud-config\nx-keys: &k [a]\nruncmd: *k\n' }, { command: ['app'] }).files['user-data']);
    expect(cfg['x-keys']).toEqual(['a']);
    expect(cfg.runcmd).toEqual(['a', ['app']]);
  });

  it('rejects a user key vmlet must append to that is not a list', () => {
    expect(rejection(() => withAnn({ 'vmlet.io/user-data': '#cloud-config\nruncmd: echo hi\n' }, { command: ['app'] })).message).toBe(
      'annotation vmlet.io/user-data: runcmd must be a list (vmlet appends its own entries to it), but it is a scalar',
    );
    // Nothing to append: the user's value is left to cloud-init.
    expect(cloudConfig(withAnn({ 'vmlet.io/user-data': '#cloud-config\nruncmd: echo hi\n' }).files['user-data']).runcmd).toBe('echo hi');
  });

  it('rejects invalid YAML, naming the annotation and the line', () => {
    const e = rejection(() => withAnn({ 'vmlet.io/user-data': '#cloud-config\npackages:\n  - a\n bad: [\n' }));
    expect(e.message).toMatch(/^annotation vmlet.io\/user-data is not valid YAML: line 4, column \d+: \S/);
    expect(rejection(() => withAnn({ 'vmlet.io/user-data': '#cloud-config\na: 1\na: 2\n' })).message).toMatch(/not valid YAML: line 3/);
  });

  it('rejects a cloud-config that is not a mapping', () => {
    expect(rejection(() => withAnn({ 'vmlet.io/user-data': '#cloud-config\n- a\n- b\n' })).message).toMatch(
      /^annotation vmlet.io\/user-data must be a cloud-config document \(a YAML mapping of keys to values\), but the document is a list$/,
    );
    expect(rejection(() => withAnn({ 'vmlet.io/user-data': '#cloud-config\njust text\n' })).message).toMatch(/the document is a scalar/);
  });

  it('rejects user-data without a #cloud-config or #! header, naming both', () => {
    for (const v of ['packages: [a]\n', '#include http://x\n', 'Content-Type: multipart/mixed\n']) {
      expect(rejection(() => withAnn({ 'vmlet.io/user-data': v })).message).toMatch(/^annotation vmlet.io\/user-data must start with "#cloud-config" .* or "#!" \(a script\)/);
    }
  });

  it('accepts an empty header-only document', () => {
    expect(cloudConfig(withAnn({ 'vmlet.io/user-data': '#cloud-config\n' }, { command: ['a'] }).files['user-data'])).toEqual({ runcmd: [['a']] });
  });

  it('VirtletCloudInitUserData is merged the same way and needs no header', () => {
    const cfg = cloudConfig(withAnn({ VirtletCloudInitUserData: 'users:\n  - name: u\nruncmd: [date]\n', VirtletSSHKeys: KEY1 }, { command: ['app'] }).files['user-data']);
    expect(cfg).toEqual({ users: [{ name: 'u' }], runcmd: ['date', ['app']], ssh_authorized_keys: [KEY1] });
  });

  it('vmlet.io/user-data wins over both Virtlet user-data annotations', () => {
    const ud = withAnn({ 'vmlet.io/user-data': '#cloud-config\na: 1\n', VirtletCloudInitUserData: 'b: 2\n', VirtletCloudInitUserDataScript: '#!/bin/sh\necho\n' }).files['user-data'];
    expect(cloudConfig(ud)).toEqual({ a: 1 });
  });
});

describe('user-data scripts', () => {
  it('makes a multipart/mixed with the vmlet cloud-config part and the script part', () => {
    const script = '#!/bin/sh\necho "hello" > /run/hello\n';
    const ud = withAnn({ 'vmlet.io/user-data': script, VirtletSSHKeys: KEY1 }, { command: ['app'] }).files['user-data'];
    expect(ud.split('\n')[0]).toMatch(/^Content-Type: multipart\/mixed; boundary="/);
    expect(ud).toContain('\nMIME-Version: 1.0\n');
    const parts = mimeParts(ud);
    expect(parts.map((p) => p.headers['content-type'])).toEqual(['text/cloud-config; charset="us-ascii"', 'text/x-shellscript; charset="us-ascii"']);
    expect(cloudConfig(parts[0]!.body)).toEqual({ ssh_authorized_keys: [KEY1], runcmd: [['app']] });
    expect(parts[1]!.body).toBe(script);
    expect(parts[1]!.headers['content-disposition']).toMatch(/^attachment; filename="part-001-vmlet.io_user-data"$/);
  });

  it('base64-encodes parts with non-ASCII text', () => {
    const script = '#!/bin/sh\necho héllo ☃\n';
    const parts = mimeParts(withAnn({ VirtletCloudInitUserDataScript: script }).files['user-data']);
    expect(parts[1]!.headers['content-transfer-encoding']).toBe('base64');
    expect(parts[1]!.headers['content-type']).toBe('text/x-shellscript; charset="utf-8"');
    expect(parts[1]!.body).toBe(script);
  });

  it('Virtlet: VirtletCloudInitUserData and VirtletCloudInitUserDataScript together give both parts', () => {
    const parts = mimeParts(withAnn({ VirtletCloudInitUserData: 'packages: [curl]\n', VirtletCloudInitUserDataScript: '#!/bin/bash\ntrue\n' }).files['user-data']);
    expect(cloudConfig(parts[0]!.body)).toEqual({ packages: ['curl'] });
    expect(parts[1]!.body).toBe('#!/bin/bash\ntrue\n');
  });

  it('rejects a VirtletCloudInitUserDataScript without #!', () => {
    expect(rejection(() => withAnn({ VirtletCloudInitUserDataScript: 'echo hi' })).message).toMatch(/^annotation VirtletCloudInitUserDataScript must be a script starting with "#!"/);
  });
});

describe('size limits', () => {
  it('rejects an annotation over 256 KiB, naming it', () => {
    const big = `#cloud-config\nx: "${'a'.repeat(SEED_LIMITS.annotationBytes)}"\n`;
    expect(rejection(() => withAnn({ 'vmlet.io/user-data': big })).message).toMatch(/^annotation vmlet.io\/user-data is \d+ bytes: allowed at most 256 KiB \(262144 bytes\)$/);
    expect(rejection(() => withAnn({ VirtletSSHKeys: ' '.repeat(SEED_LIMITS.annotationBytes + 1) })).message).toMatch(/^annotation VirtletSSHKeys is 262145 bytes/);
    // Multi-byte characters count as bytes.
    expect(rejection(() => withAnn({ 'vmlet.io/meta-data': `a: ${'é'.repeat(SEED_LIMITS.annotationBytes / 2 + 1)}` })).message).toMatch(/^annotation vmlet.io\/meta-data/);
  });

  it('accepts 256 KiB exactly', () => {
    const v = `#cloud-config\nx: ${'a'.repeat(SEED_LIMITS.annotationBytes - 18)}\n`;
    expect(Buffer.byteLength(v)).toBe(SEED_LIMITS.annotationBytes);
    expect(() => withAnn({ 'vmlet.io/user-data': v })).not.toThrow();
  });

  it('rejects a seed over 1 MiB in total, naming the limit and the sizes', () => {
    const chunk = 'a'.repeat(250 * 1024);
    const e = rejection(() =>
      seed({
        annotations: { 'vmlet.io/user-data': `#cloud-config\nx: ${chunk}\n`, 'vmlet.io/meta-data': `y: ${chunk}\n` },
        envs: [1, 2, 3].map((i) => ({ key: `E${i}`, value: chunk })),
      }),
    );
    expect(e.message).toMatch(/^the cloud-init seed would be \d+ bytes \(meta-data \d+, user-data \d+\): allowed at most 1024 KiB \(1048576 bytes\)/);
  });
});
