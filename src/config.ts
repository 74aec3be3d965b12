// vmlet's one typed config. Precedence: command-line flags > VMLET_* env > config file > defaults.
import { DEFAULT_QEMU_USER } from './vm/qemu-user.js';
import type { RootfsFormat } from './image/rootfs-protocol.js';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

export type Hypervisor = 'auto' | 'kvm' | 'tcg';
export type CgroupDriverSetting = 'auto' | 'systemd' | 'cgroupfs';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface Config {
  socket: string;
  stateDir: string;
  libvirtUri: string;
  /** RuntimeClass handlers that vmlet runs as VMs. */
  handlers: string[];
  /** When true, an empty runtime_handler means a VM pod. */
  defaultRuntime: boolean;
  hypervisor: Hypervisor;
  cgroupDriver: CgroupDriverSetting;
  /**
   * The user every VM's QEMU runs as unless its 9p shares need root (vm/qemu-user.ts): libvirt's
   * unprivileged qemu user by default; root runs all as root, as vmlet did before.
   */
  qemuUser: string;
  /**
   * How a VM-image pod's directory volumes reach the guest: auto is virtiofs where the node has
   * virtiofsd (QEMU then stays unprivileged), else 9p (QEMU as root); 9p or virtiofs forces one.
   */
  shareDriver: ShareDriver;
  /** TCG only: each VM's translation cache in MiB (libvirt's <tb-cache>); 0 leaves QEMU's default (1 GiB). */
  tcgTbCacheMiB: number;
  /** The firmware sandboxed pods' VMs start: qboot (where the node has it; vm/spec.ts QBOOT_ROM) or SeaBIOS. */
  podVmBios: PodVmBios;
  /**
   * What a container image's rootfs is made as for sandboxed pods: one EROFS image file, which
   * the guest mounts (no file of it created on the host), or a tree of files shared as they are.
   */
  imageRootfs: RootfsFormat;
  /**
   * With EROFS rootfs: a pull of what looks like a container image (it names a command) builds
   * its rootfs in the same read of its layers, so a sandboxed pod's first container of it waits
   * for no build. false: the first container builds it (less disk for images pulled and never run).
   */
  imageRootfsAtPull: boolean;
  /**
   * A pod whose kind its first container decides (no vmlet.io/pod-kind) boots its VM at the
   * kubelet's PullImage of what looks like a container image, while the layers download, instead
   * of at CreateContainer. A guess: a VM image's first container then destroys that VM.
   */
  podVmAtPull: boolean;
  /**
   * Largest image vmlet pulls, in GiB: its uncompressed layers, and its files once kept or
   * unpacked with every hard link counted at its target's size (also the largest single file).
   */
  imageMaxGiB: number;
  cni: { confDir: string; binDirs: string[] };
  registries: RegistriesConfig;
  logLevel: LogLevel;
  /** The guest kit sandboxed pods boot from (node-install/build-guest-kit.sh writes it). */
  guestKitDir: string;
  /**
   * The node's own CRI runtime (e.g. unix:///run/containerd/containerd.sock): every pod whose
   * handler is not one of vmlet's goes there, and calls about its ids are forwarded (src/proxy/).
   */
  downstream?: string;
  /** host:port of the Prometheus /metrics endpoint (docs/metrics.md); '' = off. */
  metricsAddress: string;
  /**
   * Handler → the gated pod/container annotations its pods may use (docs/annotations-policy.md):
   * names, 'prefix*' or '*'. A handler not listed allows none of them.
   */
  allowedAnnotations: Record<string, string[]>;
  /** Group of the CRI socket (mode 0660): a group name or a gid. */
  socketGroup: string | number;
  streaming: StreamingConfig;
  podVmPool: PodVmPoolConfig;
}

/**
 * Sandboxed pods' VMs booted ahead of their pods (src/pod/podvm-pool.ts, docs/sandboxed-pods.md):
 * a pod whose VM fits one takes it, and skips the boot. Each idle VM holds its QEMU's memory
 * (~300 MiB under TCG) that no pod accounts for: reserve it (system-reserved) when enabling.
 */
export interface PodVmPoolConfig {
  /** Idle VMs kept ready; 0 = off (the default). */
  size: number;
  /** The guest RAM a pool VM can grow to (balloon): pods that need more boot their own VM. */
  maxMemoryMiB: number;
}

/** Where the CRI streaming server (Exec/Attach/PortForward URLs, src/stream/) listens. */
export interface StreamingConfig {
  /** host:port, [v6]:port or :port (all addresses); port 0 = an ephemeral port. */
  address: string;
  /** Host written into the URLs; '' = the listen host, or a non-loopback address of the node when it listens on all. */
  advertiseAddress: string;
  /** Serve https with the node's certificate (e.g. the kubelet's /var/lib/kubelet/pki/kubelet.crt and .key). */
  tls?: { certFile: string; keyFile: string };
}

export interface RegistriesConfig {
  /** Registries (host[:port] as written in image references) reached over plain HTTP. */
  insecure: string[];
  /** Registry → endpoint URLs tried in order before the registry itself, e.g. docker.io → http://127.0.0.1:5000. */
  mirrors: Record<string, string[]>;
}

export const DEFAULT_CONFIG_PATH = '/etc/vmlet/config.yaml';

export const SHARE_DRIVERS = ['auto', 'virtiofs', '9p'] as const;
export type ShareDriver = (typeof SHARE_DRIVERS)[number];
export const POD_VM_BIOSES = ['qboot', 'seabios'] as const;
export type PodVmBios = (typeof POD_VM_BIOSES)[number];
export const IMAGE_ROOTFS_FORMATS = ['erofs', 'tree'] as const satisfies readonly RootfsFormat[];

export const defaults: Readonly<Config> = Object.freeze({
  socket: '/run/vmlet/vmlet.sock',
  stateDir: '/var/lib/vmlet',
  libvirtUri: 'qemu:///system',
  handlers: ['vmlet'],
  defaultRuntime: false,
  hypervisor: 'auto',
  cgroupDriver: 'auto',
  qemuUser: DEFAULT_QEMU_USER,
  shareDriver: 'auto', // libvirt-daemon-system's own (Debian, Ubuntu); the installer makes it where that package did not
  tcgTbCacheMiB: 128, // vm/spec.ts TCG_TB_CACHE_MIB; measured in docs/pod-cgroup.md
  podVmBios: 'qboot',
  imageRootfs: 'erofs', // measured in docs/sandboxed-pods.md
  imageRootfsAtPull: true, // measured in docs/sandboxed-pods.md
  podVmAtPull: true, // measured in docs/sandboxed-pods.md
  // Above the largest published containerDisks (cloud images: 0.3-2 GiB; Windows ones people
  // build: 10-20 GiB) and big container images (CUDA: ~20 GiB unpacked), and well under a node's
  // image filesystem, so one hostile image (gzip bomb, hard links) costs at most this much.
  imageMaxGiB: 32,
  cni: { confDir: '/etc/cni/net.d', binDirs: ['/opt/cni/bin', '/usr/lib/cni'] },
  registries: { insecure: [], mirrors: {} },
  logLevel: 'info',
  guestKitDir: '/usr/local/lib/vmlet/guest',
  downstream: undefined,
  metricsAddress: '',
  allowedAnnotations: {}, // safe default: no annotation that takes host resources (vm/annotation-policy.ts)
  socketGroup: 0, // root: only root (the kubelet) connects unless the operator names a group
  streaming: { address: '127.0.0.1:0', advertiseAddress: '' }, // loopback: the kubelet on this node proxies it
  // Off: idle VMs cost memory the kubelet does not see. 2 GiB of guest RAM costs a pool VM's guest
  // ~32 MiB of page structures (1.6% of it), whether the pod uses it or not.
  podVmPool: { size: 0, maxMemoryMiB: 2048 },
});

const HYPERVISORS: readonly Hypervisor[] = ['auto', 'kvm', 'tcg'];
const CGROUP_DRIVERS: readonly CgroupDriverSetting[] = ['auto', 'systemd', 'cgroupfs'];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Partial config as it comes from one source, before validation. */
export type ConfigLayer = { [K in keyof Config]?: unknown };

export interface LoadOptions {
  /** Values from command-line flags (highest precedence). */
  flags?: ConfigLayer & { config?: string };
  env?: NodeJS.ProcessEnv;
}

/** Reads the env layer: VMLET_SOCKET, VMLET_STATE_DIR, … and VMLET_CONFIG for the file path. */
export function envLayer(env: NodeJS.ProcessEnv): ConfigLayer & { config?: string } {
  const layer: ConfigLayer & { config?: string } = {};
  const map: Record<string, keyof Config | 'config'> = {
    VMLET_CONFIG: 'config',
    VMLET_SOCKET: 'socket',
    VMLET_STATE_DIR: 'stateDir',
    VMLET_LIBVIRT_URI: 'libvirtUri',
    VMLET_HYPERVISOR: 'hypervisor',
    VMLET_CGROUP_DRIVER: 'cgroupDriver',
    VMLET_TCG_TB_CACHE_MIB: 'tcgTbCacheMiB',
    VMLET_QEMU_USER: 'qemuUser',
    VMLET_SHARE_DRIVER: 'shareDriver',
    VMLET_POD_VM_BIOS: 'podVmBios',
    VMLET_IMAGE_ROOTFS: 'imageRootfs',
    VMLET_IMAGE_ROOTFS_AT_PULL: 'imageRootfsAtPull',
    VMLET_POD_VM_AT_PULL: 'podVmAtPull',
    VMLET_IMAGE_MAX_GIB: 'imageMaxGiB',
    VMLET_LOG_LEVEL: 'logLevel',
    VMLET_DOWNSTREAM: 'downstream',
    VMLET_GUEST_KIT_DIR: 'guestKitDir',
    VMLET_METRICS_ADDRESS: 'metricsAddress',
    VMLET_SOCKET_GROUP: 'socketGroup',
  };
  for (const [name, key] of Object.entries(map)) {
    const v = env[name];
    if (v !== undefined && v !== '') (layer as Record<string, unknown>)[key] = v;
  }
  if (env.VMLET_HANDLERS) layer.handlers = env.VMLET_HANDLERS.split(',').map((s) => s.trim()).filter(Boolean);
  const set = (name: string) => (env[name] === '' ? undefined : env[name]);
  const streaming = {
    address: set('VMLET_STREAMING_ADDRESS'),
    advertiseAddress: set('VMLET_STREAMING_ADVERTISE_ADDRESS'),
    tls: { certFile: set('VMLET_STREAMING_TLS_CERT_FILE'), keyFile: set('VMLET_STREAMING_TLS_KEY_FILE') },
  };
  if (streaming.address ?? streaming.advertiseAddress ?? streaming.tls.certFile ?? streaming.tls.keyFile) layer.streaming = streaming;
  const pool = { size: set('VMLET_POD_VM_POOL_SIZE'), maxMemoryMiB: set('VMLET_POD_VM_POOL_MAX_MEMORY_MIB') };
  if (pool.size ?? pool.maxMemoryMiB) layer.podVmPool = pool;
  return layer;
}

function readFileLayer(path: string, required: boolean): ConfigLayer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path}: top level must be a mapping`);
  const known = new Set(Object.keys(defaults));
  for (const key of Object.keys(doc)) {
    if (!known.has(key)) throw new ConfigError(`config file ${path}: unknown key "${key}" (known: ${[...known].join(', ')})`);
  }
  return doc;
}

export function loadConfig(opts: LoadOptions = {}): { config: Config; file: string | undefined } {
  const env = envLayer(opts.env ?? process.env);
  const flags = opts.flags ?? {};
  const explicit = flags.config ?? env.config;
  const path = explicit ?? DEFAULT_CONFIG_PATH;
  const file = readFileLayer(path, explicit !== undefined);
  const fileUsed = explicit !== undefined || Object.keys(file).length > 0 ? path : undefined;
  const merged: Record<string, unknown> = { ...defaults };
  for (const layer of [file, env, flags]) {
    for (const [k, v] of Object.entries(layer)) {
      if (k === 'config' || v === undefined) continue;
      // cni (and registries, podVmPool) are nested objects: merged field by field so a layer may set one of them.
      if ((k === 'cni' || k === 'registries' || k === 'podVmPool') && v && typeof v === 'object') merged[k] = mergeFields(merged[k], v);
      // streaming too, and its tls one level down (env may give the cert, the file the key).
      else if (k === 'streaming' && isMapping(v)) {
        const prev = (merged[k] ?? {}) as Record<string, unknown>;
        merged[k] = { ...mergeFields(prev, v), ...(isMapping(v.tls) ? { tls: mergeFields(prev.tls, v.tls) } : {}) };
      }
      else merged[k] = v;
    }
  }
  return { config: validate(merged), file: fileUsed };
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `over`'s defined fields on top of `base`'s. */
function mergeFields(base: unknown, over: object): Record<string, unknown> {
  const set = Object.entries(over).filter(([, x]) => x !== undefined);
  return { ...(isMapping(base) ? base : {}), ...Object.fromEntries(set) };
}

function str(v: unknown, key: string): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`config "${key}" must be a non-empty string`);
  return v;
}

function oneOf<T extends string>(v: unknown, key: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; allowed: ${allowed.join(', ')}`);
  }
  return v as T;
}

function strList(v: unknown, key: string): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s === '')) {
    throw new ConfigError(`config "${key}" must be a list of non-empty strings`);
  }
  return v as string[];
}

function bool(v: unknown, key: string): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new ConfigError(`config "${key}" must be true or false`);
}

function registries(v: unknown): RegistriesConfig {
  const r = (v ?? {}) as Record<string, unknown>;
  const insecure = strList(r.insecure ?? [], 'registries.insecure');
  const mirrors = r.mirrors ?? {};
  if (typeof mirrors !== 'object' || Array.isArray(mirrors)) throw new ConfigError('config "registries.mirrors" must map a registry to a list of URLs');
  const out: Record<string, string[]> = {};
  for (const [reg, urls] of Object.entries(mirrors as Record<string, unknown>)) {
    const list = strList(typeof urls === 'string' ? [urls] : urls, `registries.mirrors.${reg}`);
    for (const u of list) {
      if (!/^https?:\/\/[^/]+\/?$/.test(u)) throw new ConfigError(`config "registries.mirrors.${reg}": ${JSON.stringify(u)} must be http(s)://host[:port]`);
    }
    out[reg] = list.map((u) => u.replace(/\/$/, ''));
  }
  return { insecure, mirrors: out };
}

function mib(v: unknown, key: string, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; it must be a whole number of MiB from 0 to ${max}`);
  return n;
}

function gib(v: unknown, key: string, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; it must be a whole number of GiB from 1 to ${max}`);
  return n;
}

function absPath(v: unknown, key: string): string {
  const s = str(v, key);
  if (!s.startsWith('/')) throw new ConfigError(`config "${key}" is ${JSON.stringify(s)}; it must be an absolute path`);
  return s;
}

/** A CRI endpoint on a unix socket: unix:///absolute/path (what crictl and the kubelet accept). */
function criEndpoint(v: unknown, key: string): string {
  if (typeof v !== 'string' || !/^unix:\/\/\/[^\0]+$/.test(v) || v.endsWith('/')) {
    throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; it must be a CRI endpoint on a unix socket, e.g. unix:///run/containerd/containerd.sock`);
  }
  return v;
}

/** Handler → annotation patterns: each handler one of `handlers` (a typo would allow nothing), each pattern a name, 'prefix*' or '*'. */
function allowedAnnotations(v: unknown, handlers: string[]): Record<string, string[]> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('config "allowedAnnotations" must map a runtime handler to a list of annotation names, e.g. vmlet: ["vmlet.io/hugepages"]');
  const out: Record<string, string[]> = {};
  for (const [handler, list] of Object.entries(v as Record<string, unknown>)) {
    const key = `allowedAnnotations.${handler}`;
    if (!handlers.includes(handler)) throw new ConfigError(`config "${key}": ${JSON.stringify(handler)} is not one of vmlet's handlers (${handlers.join(', ')})`);
    const patterns = strList(list, key);
    for (const p of patterns) {
      if (p.slice(0, -1).includes('*')) throw new ConfigError(`config "${key}": ${JSON.stringify(p)} may have a * only at its end (e.g. vmlet.io/* or *)`);
    }
    out[handler] = patterns;
  }
  return out;
}

/** '' (off) or host:port, [v6]:port, :port (all addresses); the port 1–65535. */
function metricsAddress(v: unknown, key: string): string {
  if (v === '' || v === null) return '';
  const m = typeof v === 'string' ? /^(?:\[[0-9a-fA-F:.]+\]|[^:[\]\s]*):(\d{1,5})$/.exec(v) : null;
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) {
    throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; it must be host:port (e.g. 127.0.0.1:9464), or empty for no metrics endpoint`);
  }
  return v as string;
}

/** A group name (as in /etc/group) or a gid; digits are a gid, like chown(1). */
function socketGroup(v: unknown, key: string): string | number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 0xffffffff) return n;
  if (typeof n === 'string' && /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/.test(n)) return n;
  throw new ConfigError(`config "${key}" is ${JSON.stringify(v)}; it must be a group name (e.g. kubelet) or a gid`);
}

/** `host:port`, `[v6]:port` or `:port` (all addresses) → its parts, the port 0–65535 (0: ephemeral); undefined when malformed. */
export function splitStreamingAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(address);
  if (!m || Number(m[3]) > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port: Number(m[3]) };
}

function podVmPool(v: unknown): PodVmPoolConfig {
  if (!isMapping(v)) throw new ConfigError('config "podVmPool" must be a mapping with size and maxMemoryMiB');
  const unknown = Object.keys(v).find((k) => k !== 'size' && k !== 'maxMemoryMiB');
  if (unknown) throw new ConfigError(`config "podVmPool" has an unknown key "${unknown}" (known: size, maxMemoryMiB)`);
  const size = v.size ?? defaults.podVmPool.size;
  const n = typeof size === 'string' && /^\d+$/.test(size) ? Number(size) : size;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 64) throw new ConfigError(`config "podVmPool.size" is ${JSON.stringify(size)}; it must be a whole number of VMs from 0 (off) to 64`);
  const maxMemoryMiB = mib(v.maxMemoryMiB ?? defaults.podVmPool.maxMemoryMiB, 'podVmPool.maxMemoryMiB', 1024 * 1024);
  if (maxMemoryMiB < 512) throw new ConfigError(`config "podVmPool.maxMemoryMiB" is ${maxMemoryMiB}; it must be at least 512 (a pod VM's default size)`);
  return { size: n, maxMemoryMiB };
}

function streaming(v: unknown): StreamingConfig {
  if (!isMapping(v)) throw new ConfigError('config "streaming" must be a mapping with address, advertiseAddress and tls');
  const known = ['address', 'advertiseAddress', 'tls'];
  const unknown = Object.keys(v).find((k) => !known.includes(k));
  if (unknown) throw new ConfigError(`config "streaming" has an unknown key "${unknown}" (known: ${known.join(', ')})`);
  const address = v.address ?? defaults.streaming.address;
  if (typeof address !== 'string' || !splitStreamingAddress(address)) {
    throw new ConfigError(`config "streaming.address" is ${JSON.stringify(address)}; it must be host:port (e.g. 127.0.0.1:0, port 0 = any free port), [v6]:port or :port for every address`);
  }
  const adv = v.advertiseAddress ?? '';
  if (typeof adv !== 'string' || /[\s/[\]]/.test(adv) || (adv.includes(':') && !/^[0-9a-fA-F:.]+$/.test(adv))) {
    throw new ConfigError(`config "streaming.advertiseAddress" is ${JSON.stringify(adv)}; it must be a host name or an IP address (no port), or empty`);
  }
  const out: StreamingConfig = { address, advertiseAddress: adv };
  const tls = v.tls ?? {};
  if (!isMapping(tls)) throw new ConfigError('config "streaming.tls" must be a mapping with certFile and keyFile');
  const certFile = tls.certFile || undefined;
  const keyFile = tls.keyFile || undefined;
  if (certFile === undefined && keyFile === undefined) return out;
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError(`config "streaming.tls" needs both certFile and keyFile (${certFile === undefined ? 'certFile' : 'keyFile'} is missing)`);
  }
  out.tls = { certFile: absPath(certFile, 'streaming.tls.certFile'), keyFile: absPath(keyFile, 'streaming.tls.keyFile') };
  return out;
}

export function validate(raw: Record<string, unknown>): Config {
  const cni = (raw.cni ?? {}) as Record<string, unknown>;
  const handlers = strList(raw.handlers, 'handlers');
  if (handlers.length === 0) throw new ConfigError('config "handlers" must name at least one RuntimeClass handler');
  return {
    socket: str(raw.socket, 'socket'),
    stateDir: str(raw.stateDir, 'stateDir'),
    libvirtUri: str(raw.libvirtUri, 'libvirtUri'),
    handlers,
    defaultRuntime: bool(raw.defaultRuntime, 'defaultRuntime'),
    hypervisor: oneOf(raw.hypervisor, 'hypervisor', HYPERVISORS),
    cgroupDriver: oneOf(raw.cgroupDriver, 'cgroupDriver', CGROUP_DRIVERS),
    qemuUser: str(raw.qemuUser, 'qemuUser'),
    shareDriver: oneOf(raw.shareDriver, 'shareDriver', SHARE_DRIVERS),
    tcgTbCacheMiB: mib(raw.tcgTbCacheMiB, 'tcgTbCacheMiB', 4096),
    podVmBios: oneOf(raw.podVmBios, 'podVmBios', POD_VM_BIOSES),
    imageRootfs: oneOf(raw.imageRootfs, 'imageRootfs', IMAGE_ROOTFS_FORMATS),
    imageRootfsAtPull: bool(raw.imageRootfsAtPull, 'imageRootfsAtPull'),
    podVmAtPull: bool(raw.podVmAtPull, 'podVmAtPull'),
    imageMaxGiB: gib(raw.imageMaxGiB, 'imageMaxGiB', 1024),
    cni: { confDir: str(cni.confDir, 'cni.confDir'), binDirs: strList(cni.binDirs, 'cni.binDirs') },
    registries: registries(raw.registries),
    logLevel: oneOf(raw.logLevel, 'logLevel', LOG_LEVELS),
    guestKitDir: absPath(raw.guestKitDir, 'guestKitDir'),
    metricsAddress: metricsAddress(raw.metricsAddress ?? '', 'metricsAddress'),
    allowedAnnotations: allowedAnnotations(raw.allowedAnnotations, handlers),
    socketGroup: socketGroup(raw.socketGroup ?? 0, 'socketGroup'),
    streaming: streaming(raw.streaming ?? defaults.streaming),
    podVmPool: podVmPool(raw.podVmPool ?? defaults.podVmPool),
    ...(raw.downstream === undefined || raw.downstream === null ? {} : { downstream: criEndpoint(raw.downstream, 'downstream') }),
  };
}
