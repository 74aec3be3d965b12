// The VM's NoCloud seed (meta-data, user-data, network-config) from its parsed settings, pure.
// The cloud-init annotations are read and validated with the rest of the VM's settings
// (cloud-init-settings.ts); what can still be refused here comes from the container (its envs,
// a user key vmlet must append to that is not a list) or the size of the whole seed.
//
// All YAML is produced by the `yaml` package as YAML 1.1, the dialect cloud-init's PyYAML reads:
// the emitter then quotes what 1.1 would misread (`yes`, `on`, `0644`, a MAC such as
// 52:54:00:12:34:56, which 1.1 reads as a base-60 integer). User documents are edited in place
// (a copy of them), so their comments, formats, anchors and tags survive.
import { BlockList, isIP } from 'node:net';
import { Document, isAlias, isMap, isScalar, isSeq, type YAMLMap, type YAMLSeq, type Node } from 'yaml';
import { invalidArgument, VmletError } from '../errors.js';
import { ANNOTATION_BYTES, CLOUD_INIT_ANNOTATION, readCloudInit, YAML_VERSION, type CloudInitSettings, type NetworkMode } from './cloud-init-settings.js';
import { cloudInitMounts, cloudInitWriteFiles, type GuestFile, type GuestMount } from './volumes.js';

export const SEED_LIMITS = {
  /** Per annotation, in UTF-8 bytes (Kubernetes allows 256 KiB for all annotations together). */
  annotationBytes: ANNOTATION_BYTES,
  /** meta-data + user-data + network-config, in UTF-8 bytes. */
  seedBytes: 1024 * 1024,
} as const;

/**
 * The container's envs in the guest. Not /etc/environment: that belongs to the distro (Ubuntu
 * keeps PATH there) and pam_env reads it without shell quoting, so a value with a quote, `$` or a
 * newline could not be written safely. This file is POSIX shell (`KEY='value'`), which both
 * `set -a; . /etc/vmlet/environment` and systemd's `EnvironmentFile=` read back exactly.
 * Mode 0600: envs often carry Secrets.
 */
export const ENV_FILE = '/etc/vmlet/environment';

export interface PodNetworkInfo {
  mac: string;
  ips: Array<{ address: string; prefix: number; gateway?: string; family: 4 | 6 }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns: { nameservers: string[]; search: string[]; options?: string[] };
  mtu?: number;
}

interface SeedBase {
  podUid: string;
  podName: string;
  /** The sandbox hostname; empty → the pod name. */
  hostname: string;
  envs: Array<{ key: string; value: string }>;
  command: string[];
  args: string[];
  /** Absent while the pod has no network. */
  network?: PodNetworkInfo;
  /** The container's shares, mounted at boot (cloud-init `mounts`). */
  mounts?: GuestMount[];
  /** Config files (ConfigMap, Secret, token) written at boot (`write_files`), for guests without 9p. */
  files?: GuestFile[];
}

/** The seed's inputs: the cloud-init part of the VM's settings (VmSettings.cloudInit) and the container's. */
export interface SeedInput extends SeedBase {
  cloudInit: CloudInitSettings;
}

/** The same with one set of annotations instead of parsed settings (tools, tests): read as a pod's. */
export interface CloudInitInput extends SeedBase {
  annotations: Record<string, string>;
}

export type SeedFileName = 'meta-data' | 'user-data' | 'network-config';
export type SeedFiles = { 'meta-data': string; 'user-data': string; 'network-config'?: string };

export interface Seed {
  files: SeedFiles;
  mode: NetworkMode;
}

const TO_STRING = { lineWidth: 0, minContentWidth: 0 } as const; // never fold long lines (keys, scripts)
const CLOUD_CONFIG_HEADER = '#cloud-config';
const MIME_BOUNDARY = '==vmlet-seed-boundary==';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

const newDoc = (value: unknown) => new Document(value, { version: YAML_VERSION, aliasDuplicateObjects: false });
const kib = (n: number) => `${n / 1024} KiB`;

/** `doc` as text, without the header comment the user's document may carry (the caller adds its own). */
function bodyOf(doc: Document): string {
  const lines = doc.toString(TO_STRING).split('\n');
  while (lines.length > 0 && /^#cloud-config\s*$/.test(lines[0] ?? '')) lines.shift();
  return lines.join('\n');
}

// ---- meta-data ----

function buildMetaData(input: SeedInput): string {
  const doc = input.cloudInit.metaData?.doc.clone() ?? newDoc({}); // a copy: the settings stay as parsed
  const map = doc.contents as YAMLMap;
  // instance-id is vmlet's: cloud-init re-applies per-instance config (the network-config with
  // this pod's IP, SSH keys) only when it changes, so it must follow the pod. Everything else
  // the user sets wins, local-hostname included: it is an explicit request for that guest name.
  map.delete('instance-id');
  const head = [doc.createPair('instance-id', input.podUid)];
  if (!map.has('local-hostname')) head.push(doc.createPair('local-hostname', input.hostname || input.podName));
  map.items.unshift(...head);
  return bodyOf(doc);
}

// ---- user-data ----

const shQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function envFile(envs: SeedInput['envs']): string | undefined {
  if (envs.length === 0) return undefined;
  const last = new Map<string, string>(); // CRI: a repeated key takes its last value
  for (const { key, value } of envs) {
    if (!ENV_NAME.test(key)) {
      throw invalidArgument(`container env ${JSON.stringify(key)} cannot be set in a VM (it is written to ${ENV_FILE} in shell syntax): allowed names match [A-Za-z_][A-Za-z0-9_]*`);
    }
    if (value.includes('\0')) throw invalidArgument(`container env ${key}: the value contains a NUL byte: not allowed`);
    last.set(key, value);
  }
  const lines = [...last].map(([k, v]) => `${k}=${shQuote(v)}`);
  return `# The container's environment, written by vmlet. Shell: set -a; . ${ENV_FILE}; set +a\n# systemd: EnvironmentFile=${ENV_FILE}\n${lines.join('\n')}\n`;
}

/** What vmlet adds to the user's cloud-config; lists are appended to the user's, other keys only fill gaps. */
function vmletConfig(input: SeedInput): Record<string, unknown> {
  const cfg: Record<string, unknown> = {};
  const keys = input.cloudInit.sshAuthorizedKeys;
  if (keys.length > 0) cfg.ssh_authorized_keys = [...keys];
  const env = envFile(input.envs);
  const writeFiles: Array<Record<string, string>> = env !== undefined ? [{ path: ENV_FILE, owner: 'root:root', permissions: '0600', content: env }] : [];
  writeFiles.push(...cloudInitWriteFiles(input.files ?? []));
  if (writeFiles.length > 0) cfg.write_files = writeFiles;
  if (input.mounts?.length) cfg.mounts = cloudInitMounts(input.mounts);
  const argv = [...input.command, ...input.args];
  if (argv.length > 0) {
    // One runcmd entry as an argv list: cloud-init quotes each element, nothing is re-split.
    // With envs, a fixed sh wrapper loads them first so the command sees them as in a container.
    cfg.runcmd = [env === undefined ? argv : ['/bin/sh', '-c', `set -a; . ${ENV_FILE}; set +a; exec "$@"`, 'vmlet', ...argv]];
  }
  return cfg;
}

function mergeInto(doc: Document, key: string, add: Record<string, unknown>): void {
  const map = doc.contents as YAMLMap;
  for (const [name, value] of Object.entries(add)) {
    const node = map.get(name, true) as Node | undefined;
    if (!Array.isArray(value)) {
      if (node === undefined) map.set(name, doc.createNode(value));
      continue; // the user's value wins
    }
    if (node === undefined || (isScalar(node) && node.value === null)) {
      map.set(name, doc.createNode(value));
      continue;
    }
    const target = isAlias(node) ? node.resolve(doc) : node;
    if (!isSeq(target)) {
      throw invalidArgument(`annotation ${key}: ${name} must be a list (vmlet appends its own entries to it), but it is ${isMap(target) ? 'a mapping' : 'a scalar'}`);
    }
    let seq: YAMLSeq = target;
    if (isAlias(node)) {
      seq = target.clone() as YAMLSeq; // keep the anchored original as it is
      map.set(name, seq);
    }
    for (const item of value) seq.add(doc.createNode(item));
  }
}

function multipart(parts: Array<{ type: string; filename: string; text: string }>): string {
  const out = [`Content-Type: multipart/mixed; boundary="${MIME_BOUNDARY}"`, 'MIME-Version: 1.0', ''];
  for (const p of parts) {
    // ASCII stays readable (7bit). Anything else is base64, as cloud-init's own make-mime writes
    // it: Python's email package would mangle non-ASCII text in an 8bit part. base64 also covers
    // a part that happens to contain the boundary ('-' never occurs in base64).
    // eslint-disable-next-line no-control-regex -- the whole ASCII range, NUL included
    const plain = /^[\x00-\x7f]*$/.test(p.text) && !p.text.includes(MIME_BOUNDARY);
    out.push(
      `--${MIME_BOUNDARY}`,
      `Content-Type: ${p.type}; charset="${plain ? 'us-ascii' : 'utf-8'}"`,
      'MIME-Version: 1.0',
      `Content-Transfer-Encoding: ${plain ? '7bit' : 'base64'}`,
      `Content-Disposition: attachment; filename="${p.filename}"`,
      '',
      ...(plain ? [p.text] : (Buffer.from(p.text).toString('base64').match(/.{1,76}/g) ?? [])),
    );
  }
  out.push(`--${MIME_BOUNDARY}--`, '');
  return out.join('\n');
}

function buildUserData(input: SeedInput): string {
  const { config, scripts } = input.cloudInit;
  const add = vmletConfig(input);
  let doc: Document;
  if (config) {
    doc = config.doc.clone(); // a copy: the settings stay as parsed
    mergeInto(doc, config.key, add);
  } else {
    doc = newDoc(add);
  }
  const cloudConfig = `${CLOUD_CONFIG_HEADER}\n${bodyOf(doc)}`;
  if (scripts.length === 0) return cloudConfig;
  return multipart([
    { type: 'text/cloud-config', filename: 'vmlet-cloud-config', text: cloudConfig },
    ...scripts.map((s, i) => ({
      type: 'text/x-shellscript',
      filename: `part-${String(i + 1).padStart(3, '0')}-${s.key.replace(/[^A-Za-z0-9.-]/g, '_')}`,
      text: s.text,
    })),
  ]);
}

// ---- network-config ----

const internal = (msg: string) => new VmletError('internal', `pod network for cloud-init: ${msg}`);

function familyOf(addr: string): 4 | 6 | 0 {
  const f = isIP(addr);
  return f === 4 || f === 6 ? f : 0;
}

/** "10.0.0.0/8" → [address, prefix, family]; undefined when malformed. */
function parseCidr(cidr: string): [string, number, 4 | 6] | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m) return undefined;
  const f = familyOf(m[1]!);
  const prefix = Number(m[2]);
  if (f === 0 || prefix > (f === 4 ? 32 : 128)) return undefined;
  return [m[1]!, prefix, f];
}

/**
 * Netplan v2 in the form cloud-init documents for NoCloud (top-level `version: 2`, which every
 * cloud-init release reads; the `network:` wrapper is only stripped since 23.x). Default
 * gateways are `gateway4`/`gateway6` when on-link: every cloud-init renderer handles them
 * (netplan only warns they are deprecated), while `to: default` fails before cloud-init 22.3 off
 * netplan and `to: ::/0` rendered as ::/64 before 23.1 (Debian 12 ships 22.4). A gateway
 * outside every subnet (/32 pod addresses) becomes a 0.0.0.0/0 or ::/0 route with `on-link`.
 * DNS options have no netplan field and are left out.
 */
function buildNetworkConfig(net: PodNetworkInfo): string | undefined {
  if (net.ips.length === 0) return undefined;
  if (!MAC.test(net.mac)) throw internal(`MAC address ${JSON.stringify(net.mac)} is not xx:xx:xx:xx:xx:xx`);
  const subnets = new BlockList();
  const addresses: string[] = [];
  const gateway: { 4?: string; 6?: string } = {};
  for (const ip of net.ips) {
    const max = ip.family === 4 ? 32 : 128;
    if (familyOf(ip.address) !== ip.family || !Number.isInteger(ip.prefix) || ip.prefix < 0 || ip.prefix > max) {
      throw internal(`address ${ip.address}/${ip.prefix} is not an IPv${ip.family} address with a prefix 0–${max}`);
    }
    if (ip.gateway !== undefined && familyOf(ip.gateway) !== ip.family) throw internal(`gateway ${ip.gateway} is not IPv${ip.family}`);
    subnets.addSubnet(ip.address, ip.prefix, ip.family === 4 ? 'ipv4' : 'ipv6');
    addresses.push(`${ip.address}/${ip.prefix}`);
    if (ip.gateway !== undefined) gateway[ip.family] ??= ip.gateway;
  }
  const routes: Array<Record<string, unknown>> = [];
  const defaults: { 4?: string; 6?: string } = {};
  for (const r of net.routes) {
    const dst = parseCidr(r.dst);
    if (!dst) throw internal(`route destination ${JSON.stringify(r.dst)} is not a CIDR`);
    const family = dst[2];
    if (r.gw !== undefined && familyOf(r.gw) !== family) throw internal(`route ${r.dst} via ${r.gw} mixes address families`);
    const via = r.gw ?? gateway[family];
    if (dst[1] === 0) {
      if (via !== undefined) defaults[family] ??= via;
      continue;
    }
    routes.push(via !== undefined ? { to: r.dst, via, ...(onLink(subnets, via, family) ? {} : { 'on-link': true }) } : { to: r.dst, scope: 'link' });
  }
  // CNI results list the default route explicitly or only give a gateway; both mean the same.
  for (const f of [4, 6] as const) defaults[f] ??= gateway[f];

  const eth: Record<string, unknown> = {
    match: { macaddress: net.mac.toLowerCase() },
    'set-name': 'eth0',
    dhcp4: false,
    dhcp6: false,
    addresses,
  };
  for (const f of [4, 6] as const) {
    const gw = defaults[f];
    if (gw === undefined) continue;
    if (onLink(subnets, gw, f)) eth[`gateway${f}`] = gw;
    else routes.unshift({ to: f === 4 ? '0.0.0.0/0' : '::/0', via: gw, 'on-link': true });
  }
  if (routes.length > 0) eth.routes = routes;
  for (const ns of net.dns.nameservers) if (familyOf(ns) === 0) throw internal(`DNS server ${JSON.stringify(ns)} is not an IP address`);
  const nameservers: Record<string, string[]> = {};
  if (net.dns.nameservers.length > 0) nameservers.addresses = net.dns.nameservers;
  if (net.dns.search.length > 0) nameservers.search = net.dns.search;
  if (Object.keys(nameservers).length > 0) eth.nameservers = nameservers;
  if (net.mtu !== undefined) {
    if (!Number.isInteger(net.mtu) || net.mtu < 68 || net.mtu > 65535) throw internal(`MTU ${net.mtu} is not 68–65535`);
    eth.mtu = net.mtu;
  }
  return newDoc({ version: 2, ethernets: { eth0: eth } }).toString(TO_STRING);
}

function onLink(subnets: BlockList, addr: string, family: 4 | 6): boolean {
  return subnets.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

// ---- the seed ----

/** The seed; from parsed settings (CreateContainer), or from one set of annotations read by the same parser. */
export function buildSeed(input: SeedInput | CloudInitInput): Seed {
  if (!('cloudInit' in input)) {
    const { annotations, ...rest } = input;
    return buildSeed({ ...rest, cloudInit: readCloudInit({ container: {}, pod: annotations }, {}) });
  }
  const mode = input.cloudInit.networkMode;
  const files: SeedFiles = { 'meta-data': buildMetaData(input), 'user-data': buildUserData(input) };
  if (mode !== 'dhcp' && input.network) {
    const nc = buildNetworkConfig(input.network);
    if (nc !== undefined) files['network-config'] = nc;
  }
  const sizes = Object.entries(files).map(([name, text]) => [name, Buffer.byteLength(text)] as const);
  const total = sizes.reduce((n, [, s]) => n + s, 0);
  if (total > SEED_LIMITS.seedBytes) {
    throw invalidArgument(
      `the cloud-init seed would be ${total} bytes (${sizes.map(([n, s]) => `${n} ${s}`).join(', ')}): allowed at most ${kib(SEED_LIMITS.seedBytes)} (${SEED_LIMITS.seedBytes} bytes); shrink ${CLOUD_INIT_ANNOTATION.userData}, ${CLOUD_INIT_ANNOTATION.metaData} (or their Virtlet aliases) or the container's env`,
    );
  }
  return { files, mode };
}
