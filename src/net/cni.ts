// Runs a CNI network config list the way libcni does (CNI spec 0.4.0 / 1.0.0):
// - each plugin gets its own config on stdin: the plugin's object plus the list's `name` and
//   `cniVersion`, `runtimeConfig` with only the capabilities it declares, and on ADD the
//   previous plugin's result as `prevResult`;
// - ADD runs the plugins in order, DEL in reverse order with the ADD result as `prevResult`
//   (0.4.0+), CHECK in order with the same (0.4.0+ and not `disableCheck`);
// - env CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH;
// - a plugin that fails prints `{code, msg, details}` on stdout: that becomes a CniPluginError
//   naming the plugin. Every plugin call has a deadline.
// DEL after the netns is gone: pass `netns: ''` (containerd does; the spec lets plugins skip
// the in-netns part then and still release IPAM and host-side state).
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { invalidArgument, VmletError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkCni, findPlugin, parseCniConfig } from './cni-config.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface CniConfList {
  /** The file it came from (for messages). */
  file: string;
  name: string;
  cniVersion: string;
  disableCheck?: boolean;
  plugins: CniPluginConf[];
}

export interface CniPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string;
}

export interface CniDns {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** Capability arguments; a plugin sees a key only when its `capabilities` declares it true. */
export interface CniRuntimeConfig {
  portMappings?: CniPortMapping[];
  dns?: CniDns;
  [capability: string]: unknown;
}

/** What identifies one attachment: the same values must be given to ADD, CHECK and DEL. */
export interface CniAttachment {
  containerId: string;
  /** Path of the netns (`/run/netns/<name>`), or '' on DEL when it no longer exists. */
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. from cniArgs(). */
  args: string;
  runtimeConfig: CniRuntimeConfig;
}

export interface CniExecOptions {
  binDirs: string[];
  /** Deadline for each plugin call (default 60 s). */
  timeoutMs?: number;
  log?: Logger;
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
}

export interface CniIpConfig {
  family: 4 | 6;
  address: string;
  prefix: number;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniResultDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

/** A CNI result (any version from 0.1.0 to 1.x) in one shape. */
export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniResultDns;
}

export class CniPluginError extends VmletError {
  override name = 'CniPluginError';
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly network: string,
    message: string,
    readonly code?: number,
    readonly details?: string,
  ) {
    super('internal', message);
  }
}

export const DEFAULT_CNI_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------------- config

/** Parses a .conflist, or a single-plugin .conf/.json wrapped into a list (as libcni does). */
export function parseConfList(file: string, text: string): CniConfList {
  parseCniConfig(file, text); // validates: name, plugins/type, JSON
  const doc = JSON.parse(text) as Record<string, unknown>;
  const name = doc.name as string;
  const cniVersion = typeof doc.cniVersion === 'string' && doc.cniVersion ? doc.cniVersion : '0.1.0';
  if (Array.isArray(doc.plugins)) {
    return {
      file,
      name,
      cniVersion,
      disableCheck: doc.disableCheck === true,
      plugins: doc.plugins.map((p) => ({ ...(p as CniPluginConf) })),
    };
  }
  return { file, name, cniVersion, plugins: [{ ...(doc as CniPluginConf) }] };
}

/** The node's network: libcni's choice of file in confDir (see cni-config.ts), fully parsed. */
export function loadNetworkConfList(confDir: string, binDirs: string[]): CniConfList {
  const check = checkCni(confDir, binDirs);
  if (!check.ok) throw new VmletError('failed-precondition', `CNI is not ready: ${check.message}`);
  return parseConfList(check.network.file, readFileSync(check.network.file, 'utf8'));
}

/** CNI_ARGS as the kubelet's runtimes pass them. */
export function cniArgs(pod: { namespace: string; name: string; sandboxId: string; uid: string }): string {
  return [
    'IgnoreUnknown=1',
    `K8S_POD_NAMESPACE=${pod.namespace}`,
    `K8S_POD_NAME=${pod.name}`,
    `K8S_POD_INFRA_CONTAINER_ID=${pod.sandboxId}`,
    `K8S_POD_UID=${pod.uid}`,
  ].join(';');
}

type CriPortMappingLike = { protocol?: string | number; container_port?: number; host_port?: number; host_ip?: string };

/**
 * Refuses port mappings the portmap plugin would (or that would make it program the wrong
 * thing): ports outside 1-65535, an unknown protocol, a host_ip that is not an address. Mappings
 * without a host port (0) are not passed to CNI and are not checked but for a negative port.
 */
export function checkPortMappings(mappings: ReadonlyArray<CriPortMappingLike>): void {
  for (const [i, m] of mappings.entries()) {
    const at = `config.port_mappings[${i}]`;
    const host = m.host_port ?? 0;
    if (!Number.isInteger(host) || host < 0 || host > 65535) throw invalidArgument(`${at}.host_port is ${host}: it must be 1-65535, or 0 for none`);
    if (host === 0) continue;
    const ctr = m.container_port ?? 0;
    if (!Number.isInteger(ctr) || ctr < 1 || ctr > 65535) throw invalidArgument(`${at}.container_port is ${ctr}: it must be 1-65535`);
    if (![undefined, 'TCP', 'UDP', 'SCTP', 0, 1, 2].includes(m.protocol)) throw invalidArgument(`${at}.protocol is ${JSON.stringify(m.protocol)}: it must be TCP, UDP or SCTP`);
    if (m.host_ip && !isIP(m.host_ip)) throw invalidArgument(`${at}.host_ip ${JSON.stringify(m.host_ip.slice(0, 64))} is not an IP address`);
  }
}

/** CRI port mappings → the portMappings capability (host_port 0 means "no host port": skipped). */
export function cniPortMappings(mappings: ReadonlyArray<CriPortMappingLike>): CniPortMapping[] {
  const out: CniPortMapping[] = [];
  for (const m of mappings) {
    if (!m.host_port || m.host_port <= 0 || !m.container_port) continue;
    const p = m.protocol;
    const protocol = p === 'UDP' || p === 1 ? 'udp' : p === 'SCTP' || p === 2 ? 'sctp' : 'tcp';
    out.push({ hostPort: m.host_port, containerPort: m.container_port, protocol, ...(m.host_ip ? { hostIP: m.host_ip } : {}) });
  }
  return out;
}

/** Compares dotted versions: <0, 0, >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function hasContent(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.values(v as Record<string, unknown>).some(hasContent);
  return true;
}

/** The stdin config for one plugin of the list (libcni's buildOneConfig + injectRuntimeConfig). */
export function pluginConfig(
  list: Pick<CniConfList, 'name' | 'cniVersion'>,
  plugin: CniPluginConf,
  runtimeConfig: CniRuntimeConfig,
  prevResult?: unknown,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const caps = plugin.capabilities ?? {};
  const rc: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(runtimeConfig)) {
    if (caps[key] === true && hasContent(value)) rc[key] = value;
  }
  if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
  else delete conf.runtimeConfig;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}

// ---------------------------------------------------------------------------------- results

/** A plugin answered with a result vmlet cannot read: the node's CNI setup is at fault. */
const badResult = (msg: string) => new VmletError('internal', `CNI result: ${msg.replace(/^CNI result:? ?/, '')}`);

function parseCidr(s: unknown, what: string): { address: string; prefix: number; family: 4 | 6 } {
  if (typeof s !== 'string') throw badResult(`${what}: not a string`);
  const slash = s.lastIndexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(address);
  if (family !== 4 && family !== 6) throw badResult(`${what}: ${JSON.stringify(s)} is not an IP address`);
  const prefix = slash < 0 ? (family === 4 ? 32 : 128) : Number(s.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
    throw badResult(`${what}: bad prefix length in ${JSON.stringify(s)}`);
  }
  return { address, prefix, family };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : []);

function parseRoutes(v: unknown, what: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badResult(`${what}: not a list`);
  return v.map((r, i) => {
    const o = (r ?? {}) as Record<string, unknown>;
    parseCidr(o.dst, `${what}[${i}].dst`);
    const gw = str(o.gw);
    if (gw !== undefined && !isIP(gw)) throw badResult(`${what}[${i}].gw: ${JSON.stringify(gw)} is not an IP address`);
    return { dst: o.dst as string, ...(gw ? { gw } : {}) };
  });
}

function parseDns(v: unknown): CniResultDns {
  const o = (v ?? {}) as Record<string, unknown>;
  const domain = str(o.domain);
  return { nameservers: strs(o.nameservers), ...(domain ? { domain } : {}), search: strs(o.search), options: strs(o.options) };
}

/** Parses a plugin's ADD result: 0.3.x/0.4.0/1.x (`ips`, `interfaces`) or 0.1/0.2 (`ip4`, `ip6`). */
export function parseCniResult(raw: unknown): CniResult {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw badResult('CNI result is not a JSON object');
  const o = raw as Record<string, unknown>;
  const cniVersion = str(o.cniVersion) ?? '0.1.0';
  const res: CniResult = { cniVersion, interfaces: [], ips: [], routes: [], dns: parseDns(o.dns) };
  if (compareVersions(cniVersion, '0.3.0') < 0) {
    for (const fam of ['ip4', 'ip6'] as const) {
      const ipc = o[fam] as Record<string, unknown> | undefined;
      if (!ipc) continue;
      const c = parseCidr(ipc.ip, `${fam}.ip`);
      const gateway = str(ipc.gateway);
      res.ips.push({ family: c.family, address: c.address, prefix: c.prefix, ...(gateway ? { gateway } : {}) });
      res.routes.push(...parseRoutes(ipc.routes, `${fam}.routes`));
    }
    return res;
  }
  if (o.interfaces !== undefined) {
    if (!Array.isArray(o.interfaces)) throw badResult('CNI result: interfaces is not a list');
    res.interfaces = o.interfaces.map((x, i) => {
      const it = (x ?? {}) as Record<string, unknown>;
      const name = str(it.name);
      if (!name) throw badResult(`CNI result: interfaces[${i}] has no name`);
      const mac = str(it.mac);
      const sandbox = str(it.sandbox);
      const mtu = typeof it.mtu === 'number' && it.mtu > 0 ? it.mtu : undefined;
      return { name, ...(mac ? { mac } : {}), ...(sandbox ? { sandbox } : {}), ...(mtu ? { mtu } : {}) };
    });
  }
  if (o.ips !== undefined) {
    if (!Array.isArray(o.ips)) throw badResult('CNI result: ips is not a list');
    res.ips = o.ips.map((x, i) => {
      const ip = (x ?? {}) as Record<string, unknown>;
      const c = parseCidr(ip.address, `ips[${i}].address`);
      const gateway = str(ip.gateway);
      if (gateway !== undefined && isIP(gateway) !== c.family) throw badResult(`ips[${i}].gateway: ${JSON.stringify(gateway)} is not an IPv${c.family} address`);
      let iface: number | undefined;
      if (typeof ip.interface === 'number') {
        if (!Number.isInteger(ip.interface) || ip.interface < 0 || ip.interface >= res.interfaces.length) {
          throw badResult(`ips[${i}].interface: index ${ip.interface} is not in interfaces (${res.interfaces.length})`);
        }
        iface = ip.interface;
      }
      return { family: c.family, address: c.address, prefix: c.prefix, ...(gateway ? { gateway } : {}), ...(iface !== undefined ? { interface: iface } : {}) };
    });
  }
  res.routes = parseRoutes(o.routes, 'routes');
  return res;
}

/** The IPs a result gives to the interface `ifName` in the sandbox (or IPs that name no interface). */
export function sandboxIps(result: CniResult, ifName: string): CniIpConfig[] {
  return result.ips.filter((ip) => {
    if (ip.interface === undefined) return true;
    const it = result.interfaces[ip.interface];
    return it !== undefined && it.name === ifName && it.sandbox !== undefined;
  });
}

// ---------------------------------------------------------------------------------- exec

function pluginPath(type: string, binDirs: string[], list: CniConfList, command: CniCommand): string {
  const path = findPlugin(type, binDirs);
  if (!path) {
    throw new CniPluginError(type, command, list.name, `CNI plugin "${type}" of network "${list.name}" (${list.file}) not found in ${binDirs.join(', ')}`);
  }
  return path;
}

function errorText(stdout: string, stderr: string): { msg: string; code?: number; details?: string } {
  const text = stdout.trim();
  if (text.startsWith('{')) {
    try {
      const e = JSON.parse(text) as { code?: unknown; msg?: unknown; details?: unknown };
      const msg = typeof e.msg === 'string' ? e.msg : '';
      const details = typeof e.details === 'string' && e.details ? e.details : undefined;
      const code = typeof e.code === 'number' ? e.code : undefined;
      if (msg || details || code !== undefined) return { msg: msg || '(no message)', ...(code !== undefined ? { code } : {}), ...(details ? { details } : {}) };
    } catch {
      // not JSON: fall through
    }
  }
  const lines = [stderr.trim(), text].filter(Boolean).join('; ');
  return { msg: lines.slice(0, 2000) || '(no output)' };
}

/** Runs one plugin once; returns its parsed stdout (ADD) or undefined (empty stdout). */
export async function execPlugin(
  list: CniConfList,
  plugin: CniPluginConf,
  command: CniCommand,
  att: CniAttachment,
  prevResult: unknown,
  opts: CniExecOptions,
): Promise<unknown> {
  const path = pluginPath(plugin.type, opts.binDirs, list, command);
  const conf = pluginConfig(list, plugin, att.runtimeConfig, prevResult);
  const timeout = opts.timeoutMs ?? DEFAULT_CNI_TIMEOUT_MS;
  const t0 = performance.now();
  const r = await execa(path, [], {
    input: JSON.stringify(conf),
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: att.containerId,
      CNI_NETNS: att.netns,
      CNI_IFNAME: att.ifName,
      CNI_ARGS: att.args,
      CNI_PATH: opts.binDirs.join(':'),
    },
    extendEnv: true,
    reject: false,
    timeout,
    forceKillAfterDelay: 2000,
    stripFinalNewline: true,
  });
  const ms = Math.round(performance.now() - t0);
  const where = `CNI plugin "${plugin.type}" (network "${list.name}") ${command}`;
  if (r.timedOut) {
    throw new CniPluginError(plugin.type, command, list.name, `${where} timed out after ${timeout} ms`);
  }
  if (r.exitCode !== 0 || r.failed) {
    const e = errorText(String(r.stdout ?? ''), String(r.stderr ?? ''));
    const how = r.exitCode !== undefined ? `exit code ${r.exitCode}` : r.signal ? `signal ${r.signal}` : 'failed';
    const msg = `${where} failed: ${e.msg}${e.details ? ` (${e.details})` : ''}${e.code !== undefined ? ` [CNI error code ${e.code}]` : ''} (${how})`;
    opts.log?.warn({ plugin: plugin.type, command, ms, code: e.code }, msg);
    throw new CniPluginError(plugin.type, command, list.name, msg, e.code, e.details);
  }
  opts.log?.debug({ plugin: plugin.type, command, network: list.name, ms }, 'CNI plugin call');
  const out = String(r.stdout ?? '').trim();
  if (!out) return undefined;
  try {
    return JSON.parse(out) as unknown;
  } catch {
    if (command === 'ADD') throw new CniPluginError(plugin.type, command, list.name, `${where} printed a result that is not JSON: ${out.slice(0, 500)}`);
    return undefined;
  }
}

export interface CniAddResult {
  /** The final result as the last plugin printed it: store it, DEL/CHECK need it. */
  raw: unknown;
  result: CniResult;
}

/** ADD: every plugin in order, each one's result the next one's prevResult. */
export async function cniAdd(list: CniConfList, att: CniAttachment, opts: CniExecOptions): Promise<CniAddResult> {
  let prev: unknown;
  for (const plugin of list.plugins) {
    const out = await execPlugin(list, plugin, 'ADD', att, prev, opts);
    if (out === undefined) {
      throw new CniPluginError(plugin.type, 'ADD', list.name, `CNI plugin "${plugin.type}" (network "${list.name}") ADD printed no result`);
    }
    prev = out;
  }
  let result: CniResult;
  try {
    result = parseCniResult(prev);
  } catch (err) {
    const last = list.plugins[list.plugins.length - 1]?.type ?? '?';
    throw new CniPluginError(last, 'ADD', list.name, `CNI network "${list.name}": bad ADD result: ${(err as Error).message}`);
  }
  return { raw: prev, result };
}

/**
 * DEL: every plugin in reverse order; from 0.4.0 on each gets the ADD result as prevResult.
 * All plugins run even when one fails (so each releases what it can); the first error is thrown.
 */
export async function cniDel(list: CniConfList, att: CniAttachment, prevResult: unknown, opts: CniExecOptions): Promise<void> {
  const prev = compareVersions(list.cniVersion, '0.4.0') >= 0 && prevResult !== undefined && prevResult !== null ? prevResult : undefined;
  let first: Error | undefined;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await execPlugin(list, plugin, 'DEL', att, prev, opts);
    } catch (err) {
      first ??= err instanceof Error ? err : new VmletError('internal', String(err));
    }
  }
  if (first) throw first;
}

/** CHECK (0.4.0+): every plugin in order with the ADD result. No-op when the list disables it. */
export async function cniCheck(list: CniConfList, att: CniAttachment, prevResult: unknown, opts: CniExecOptions): Promise<void> {
  if (compareVersions(list.cniVersion, '0.4.0') < 0) {
    throw new VmletError('failed-precondition', `CNI network "${list.name}" is version ${list.cniVersion}: CHECK needs 0.4.0 or later`);
  }
  if (list.disableCheck) return;
  if (prevResult === undefined || prevResult === null) {
    throw new VmletError('failed-precondition', `CNI CHECK of network "${list.name}" needs the ADD result`);
  }
  for (const plugin of list.plugins) await execPlugin(list, plugin, 'CHECK', att, prevResult, opts);
}
