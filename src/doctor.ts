// `vmlet doctor`: one line per prerequisite, OK / WARN / FAIL, with the fix when it is not OK.
// Exit 0 only when vmlet can run VMs (TCG counts, with a warning).
import { decideQemuUser, KVM_DEVICE_FIX, kvmDeviceProblem, ROOT } from './vm/qemu-user.js';
import { connect } from 'node:net';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import { splitStreamingAddress, type Config, type StreamingConfig } from './config.js';
import type { Logger } from './log.js';
import { checkCni } from './net/cni-config.js';
import { checkDownstream } from './proxy/downstream.js';
import { programVersion, QEMU_IMG, QEMU_SYSTEM, which } from './util/binaries.js';
import { decideAccel, probeHost } from './vm/accel.js';
import { Libvirt, loadedLibvirtVersion } from './vm/libvirt.js';
import { hasPvhNote, imageRootfsFormat, readAt } from './guest/kit.js';
import { probeMetricsAddress } from './metrics/server.js';
import { isLoopback, readTls } from './stream/server.js';
import { PodStateStore } from './pod/records.js';
import { WITHOUT_ZSTD, ZSTD, zstdProgram } from './image/zstd.js';
import { netnsName } from './net/netns.js';
import { dhcpFiles, dhcpPid } from './net/dhcp.js';
import { NO_QBOOT_FIX, podVmBiosRom } from './guest/pod-vm-bios.js';

export type Verdict = 'OK' | 'WARN' | 'FAIL';

export interface CheckResult {
  name: string;
  verdict: Verdict;
  detail: string;
  fix?: string;
}

const INSTALL_FIX = 'run node-install/install.sh';
export const VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock';

async function libvirtCheck(config: Config, log: Logger): Promise<CheckResult> {
  const lv = new Libvirt(config.libvirtUri, log);
  try {
    await lv.connect();
    await lv.ping();
    const v = loadedLibvirtVersion();
    return { name: 'libvirt', verdict: 'OK', detail: `${config.libvirtUri} answers${v ? ` (libvirt ${v})` : ''}` };
  } catch (err) {
    return {
      name: 'libvirt',
      verdict: 'FAIL',
      detail: `${config.libvirtUri}: ${(err as Error).message}`,
      fix: `start libvirtd (${INSTALL_FIX}, or systemctl start libvirtd), or set libvirtUri in the config`,
    };
  } finally {
    await lv.close();
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

async function virtlogdCheck(): Promise<CheckResult> {
  const ok = await socketAnswers(VIRTLOGD_SOCKET);
  return ok
    ? { name: 'virtlogd', verdict: 'OK', detail: `${VIRTLOGD_SOCKET} answers (it writes VM console logs)` }
    : { name: 'virtlogd', verdict: 'FAIL', detail: `${VIRTLOGD_SOCKET} does not answer; VMs with a console log cannot start`, fix: `start virtlogd (${INSTALL_FIX}, or systemctl start virtlogd)` };
}

async function binaryCheck(name: string, bin: string, pkg: string): Promise<CheckResult> {
  const path = which(bin);
  if (!path) return { name, verdict: 'FAIL', detail: `${bin} not found`, fix: `apt-get install ${pkg} (or ${INSTALL_FIX})` };
  const v = await programVersion(path);
  return v
    ? { name, verdict: 'OK', detail: `${path} (version ${v})` }
    : { name, verdict: 'FAIL', detail: `${path} does not run (--version failed)`, fix: `reinstall ${pkg}` };
}

/** zstd: optional (vmlet falls back to JavaScript), but zstd image layers then pull ~6x slower. */
async function zstdCheck(): Promise<CheckResult> {
  if (!zstdProgram()) return { name: 'zstd', verdict: 'WARN', detail: WITHOUT_ZSTD, fix: `apt-get install zstd (or ${INSTALL_FIX})` };
  return binaryCheck('zstd', ZSTD, 'zstd');
}

function podVmBiosCheck(config: Config): CheckResult {
  const name = 'pod-vm-bios';
  const b = podVmBiosRom(config.podVmBios);
  if (b.rom) return { name, verdict: 'OK', detail: `sandboxed pods' VMs start qboot (${b.rom})` };
  if (b.missing) return { name, verdict: 'WARN', detail: `config podVmBios is qboot, and ${b.missing} is missing: sandboxed pods' VMs start SeaBIOS, a slower boot`, fix: NO_QBOOT_FIX };
  return { name, verdict: 'OK', detail: "sandboxed pods' VMs start SeaBIOS (config podVmBios: seabios)" };
}

/** How sandboxed pods' image rootfs are made: the config's imageRootfs, unless the guest kit cannot mount EROFS images. */
export async function imageRootfsCheck(config: Pick<Config, 'imageRootfs' | 'guestKitDir'>): Promise<CheckResult> {
  const name = 'image-rootfs';
  const r = await imageRootfsFormat(config.imageRootfs, config.guestKitDir);
  if (r.fallback) return { name, verdict: 'WARN', detail: r.fallback, fix: `${INSTALL_FIX}, or set imageRootfs: tree` };
  return { name, verdict: 'OK', detail: r.format === 'erofs' ? "a container image's rootfs is one EROFS image file, which sandboxed pods' guests mount" : "a container image's rootfs is unpacked as a tree (config imageRootfs: tree)" };
}

function kvmCheck(config: Config): CheckResult {
  const d = decideAccel(config.hypervisor, probeHost());
  if (d.accel === 'kvm') {
    const how = config.hypervisor === 'kvm' ? 'forced by config hypervisor: kvm' : `${d.facts.cpuFlag}, ${d.facts.kvmModules.join(', ')}`;
    return { name: 'kvm', verdict: 'OK', detail: `KVM usable (${how})` };
  }
  return {
    name: 'kvm',
    verdict: 'WARN',
    detail: `falling back to TCG: ${d.reason}`,
    fix: 'for KVM, run on a host with hardware virtualisation (vmx/svm) and kvm_intel or kvm_amd loaded',
  };
}

function cniCheck(config: Config): CheckResult {
  const c = checkCni(config.cni.confDir, config.cni.binDirs);
  if (c.ok) {
    return { name: 'cni', verdict: 'OK', detail: `network "${c.network.name}" from ${c.network.file}; plugins ${c.network.plugins.join(', ')} found` };
  }
  const fix =
    c.reason === 'CNIPluginMissing'
      ? `apt-get install containernetworking-plugins, or put the plugins in ${config.cni.binDirs.join(' or ')}`
      : `install your cluster's CNI, or ${INSTALL_FIX} for a default bridge network in ${config.cni.confDir}`;
  return { name: 'cni', verdict: 'FAIL', detail: c.message, fix };
}

async function writableCheck(name: string, dir: string): Promise<CheckResult> {
  const probe = join(dir, `.doctor-${process.pid}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(probe, 'x');
    await rm(probe);
    return { name, verdict: 'OK', detail: `${dir} is writable` };
  } catch (err) {
    return { name, verdict: 'FAIL', detail: `${dir}: ${(err as Error).message}`, fix: `run vmlet as root, or create ${dir} writable by it` };
  }
}

/** Who VMs' QEMU will run as (vm/qemu-user.ts), as `vmlet serve` decides it. */
async function qemuUserCheck(config: Config): Promise<CheckResult> {
  const name = 'qemu-user';
  try {
    const d = await decideQemuUser(config);
    if (d.fallback) return { name, verdict: 'WARN', detail: `VMs' QEMU would run as root: ${d.fallback}`, fix: `${INSTALL_FIX} (it makes the libvirt-qemu user), or set qemuUser` };
    if (d.id.uid === 0) return { name, verdict: 'WARN', detail: 'VMs\' QEMU runs as root (config qemuUser)', fix: 'set qemuUser to libvirt\'s qemu user (libvirt-qemu)' };
    return { name, verdict: 'OK', detail: `VMs' QEMU runs as ${d.id.user} (uid ${d.id.uid}, gid ${d.id.gid}); as root only for VMs with 9p shares` };
  } catch (err) {
    return { name, verdict: 'FAIL', detail: (err as Error).message, fix: 'create the user, set qemuUser to an existing one, or move stateDir below a searchable parent' };
  }
}

/** Whether VMs' QEMU can open /dev/kvm (vm/qemu-user.ts says what follows when it cannot). */
async function kvmDeviceCheck(config: Config): Promise<CheckResult> {
  const name = 'kvm-device';
  const { id } = await decideQemuUser(config).catch(() => ({ id: ROOT }));
  const problem = await kvmDeviceProblem(id);
  if (!problem) return { name, verdict: 'OK', detail: existsSync('/dev/kvm') ? `VMs' QEMU (${id.user}) can open /dev/kvm` : 'no /dev/kvm (see the kvm check)' };
  // With KVM chosen, QEMU's start fails; under TCG every define pays a QEMU probe.
  const kvm = decideAccel(config.hypervisor, probeHost()).accel === 'kvm';
  return { name, verdict: kvm ? 'FAIL' : 'WARN', detail: problem, fix: KVM_DEVICE_FIX };
}

async function downstreamCheck(endpoint: string): Promise<CheckResult> {
  const r = await checkDownstream(endpoint);
  return r.ok
    ? { name: 'downstream', verdict: 'OK', detail: `${endpoint}: ${r.version}` }
    : { name: 'downstream', verdict: 'FAIL', detail: r.error ?? `${endpoint} does not answer`, fix: "start the node's containerd, or fix downstream in the config" };
}

/** Where operators get crictl (it is not in Debian): the README's crictl section says the same. */
export const CRICTL_FIX =
  "install crictl: the cri-tools package of the Kubernetes apt repository (pkgs.k8s.io), or crictl-<version>-linux-amd64.tar.gz from https://github.com/kubernetes-sigs/cri-tools/releases checked against its .sha256 file, unpacked into /usr/local/bin";

/** `crictl --version` says "crictl version v1.30.0". */
async function crictlVersion(bin: string): Promise<string | undefined> {
  try {
    const { stdout } = await execa(bin, ['--version'], { timeout: 5000 });
    return /v?(\d+\.\d+\.\d+\S*)/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * crictl, the operators' CRI client: on PATH, and its config (CRI_CONFIG_FILE, else
 * /etc/crictl.yaml) pointing at vmlet's socket. A WARN, never a FAIL: vmlet runs VMs without it.
 */
export async function crictlCheck(socket: string, env: NodeJS.ProcessEnv = process.env): Promise<CheckResult> {
  const name = 'crictl';
  const endpoint = `unix://${socket}`;
  const confFile = env.CRI_CONFIG_FILE || '/etc/crictl.yaml';
  const problems: string[] = [];
  const fixes: string[] = [];
  const bin = which('crictl', env.PATH ?? '');
  let found = '';
  if (!bin) {
    problems.push('crictl not found');
    fixes.push(CRICTL_FIX);
  } else {
    const v = await crictlVersion(bin);
    found = `${bin}${v ? ` (version ${v})` : ''}`;
  }
  let text: string | undefined;
  try {
    text = await readFile(confFile, 'utf8');
  } catch {
    problems.push(`${confFile} absent (crictl then tries containerd's and CRI-O's sockets, not vmlet's)`);
    fixes.push(`copy node-install/crictl.yaml to ${confFile}, or pass --runtime-endpoint ${endpoint}`);
  }
  if (text !== undefined) {
    let conf: Record<string, unknown> = {};
    try {
      const parsed: unknown = parseYaml(text);
      if (parsed && typeof parsed === 'object') conf = parsed as Record<string, unknown>;
    } catch (err) {
      problems.push(`${confFile} is not YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    const bad = (['runtime-endpoint', 'image-endpoint'] as const)
      .filter((k) => conf[k] !== endpoint)
      .map((k) => `${k} is ${conf[k] === undefined ? 'unset' : JSON.stringify(conf[k]).replace(/^"(.*)"$/, '$1')}`);
    if (bad.length) {
      problems.push(`${confFile}: ${bad.join(', ')}, not ${endpoint}`);
      fixes.push(`set runtime-endpoint and image-endpoint to ${endpoint} in ${confFile} (as node-install/crictl.yaml does)`);
    }
  }
  const parts = [found, ...problems];
  if (!problems.some((p) => p.startsWith(confFile))) parts.push(`${confFile} points at ${endpoint}`);
  const detail = parts.filter(Boolean).join('; ');
  return problems.length ? { name, verdict: 'WARN', detail, fix: fixes.join('; ') } : { name, verdict: 'OK', detail };
}

const KIT_FILES = ['vmlinux', 'initrd.img', 'cmdline', 'VERSION'] as const;

/** The guest kit sandboxed pods boot from: its files, VERSION, a PVH-bootable vmlinux, a gzip'd initrd. */
export async function guestKitCheck(dir: string): Promise<CheckResult> {
  const name = 'guest-kit';
  const fix = `run node-install/install.sh (it builds the kit into /usr/local/lib/vmlet/guest with node-install/build-guest-kit.sh), or set guestKitDir in the config`;
  const fail = (detail: string): CheckResult => ({ name, verdict: 'FAIL', detail: `${dir}: ${detail}; sandboxed pods cannot boot`, fix });
  const missing: string[] = [];
  for (const f of KIT_FILES) {
    const st = await stat(join(dir, f)).catch(() => undefined);
    if (!st?.isFile() || st.size === 0) missing.push(f);
  }
  if (missing.length) return fail(`missing ${missing.join(', ')}`);
  try {
    const version = (await readFile(join(dir, 'VERSION'), 'utf8')).trim();
    if (!version) return fail('VERSION is empty');
    const vmlinux = join(dir, 'vmlinux');
    let pvh: boolean;
    try {
      pvh = await hasPvhNote(vmlinux);
    } catch (err) {
      return fail(`vmlinux: ${(err as Error).message}`);
    }
    if (!pvh) return fail('vmlinux has no PVH entry note (QEMU cannot boot it with -kernel)');
    const gz = await readAt(join(dir, 'initrd.img'), 0, 2);
    if (gz.length < 2 || gz[0] !== 0x1f || gz[1] !== 0x8b) return fail('initrd.img is not gzip');
    if (version.endsWith('-standin')) {
      return { name, verdict: 'WARN', detail: `${dir}: version ${version} has the stand-in agent (built without src/guest/agent): sandboxed pods boot but run no containers`, fix };
    }
    return { name, verdict: 'OK', detail: `${dir}: version ${version}` };
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** The metrics endpoint (config metricsAddress): off, served by vmlet now, or free for `vmlet serve`; else FAIL (serve would not start). */
export async function metricsCheck(address: string): Promise<CheckResult> {
  const p = await probeMetricsAddress(address);
  const fix = 'set metricsAddress to a free host:port of this host (e.g. 127.0.0.1:9464), or leave it empty';
  if (p.state === 'off') return { name: 'metrics', verdict: 'OK', detail: 'off (metricsAddress is empty)' };
  if (p.state === 'vmlet') return { name: 'metrics', verdict: 'OK', detail: `${p.url} answers: vmlet serves its metrics there` };
  if (p.state === 'free') return { name: 'metrics', verdict: 'OK', detail: `${address} is free: vmlet serve will listen there` };
  return { name: 'metrics', verdict: 'FAIL', detail: `${address}: ${p.problem}`, fix };
}

/**
 * The streaming server (config streaming): Exec/Attach/PortForward sessions are as good as a
 * shell in the pod, so off loopback they want TLS (WARN without); TLS files that cannot be used FAIL (serve would not start).
 */
export async function streamingCheck(c: StreamingConfig): Promise<CheckResult> {
  const name = 'streaming';
  const host = splitStreamingAddress(c.address)?.host ?? '';
  if (c.tls) {
    try {
      await readTls(c.tls);
    } catch (err) {
      return { name, verdict: 'FAIL', detail: (err as Error).message, fix: 'point streaming.tls.certFile and keyFile at the node certificate and its key (e.g. /var/lib/kubelet/pki/kubelet.crt and .key), readable by vmlet' };
    }
    return { name, verdict: 'OK', detail: `https on ${c.address} with ${c.tls.certFile}` };
  }
  if (isLoopback(host)) return { name, verdict: 'OK', detail: `http on ${c.address} (loopback: the kubelet on this node proxies it)` };
  return {
    name,
    verdict: 'WARN',
    detail: `plain http on ${c.address}, which is not loopback: exec, attach and port-forward sessions cross the network unencrypted`,
    fix: 'set streaming.tls.certFile and keyFile (e.g. the kubelet\'s /var/lib/kubelet/pki/kubelet.crt and .key), or streaming.address to 127.0.0.1:0',
  };
}

/**
 * Pods vmlet sets aside at start because a record of theirs does not parse or validate: their VMs,
 * netns and DHCP server are kept (docs/design.md, "Pod records"), so the operator is told here.
 */
export async function podRecordsCheck(stateDir: string, log: Logger): Promise<CheckResult> {
  const name = 'pod-records';
  const root = join(stateDir, 'pods');
  try {
    const { sandboxes, setAside } = await new PodStateStore(root, log.child({}, { level: 'silent' })).loadAll();
    if (!setAside.length) return { name, verdict: 'OK', detail: `${sandboxes.length} pod(s) in ${root}, every record readable` };
    const pods = setAside.map((p) => {
      const dhcp = dhcpPid(dhcpFiles(p.dir));
      const kept = [`netns ${netnsName(p.sandboxId)}`, ...(dhcp ? [`dnsmasq pid ${dhcp}`] : []), ...(p.containerIds.length ? [`${p.containerIds.length} container(s) whose VMs keep running`] : [])];
      return `${p.records.map((r) => `${r.file}: ${r.problem}`).join('; ')} (kept: ${kept.join(', ')})`;
    });
    return {
      name,
      verdict: 'WARN',
      detail: `${setAside.length} pod(s) set aside, not served: ${pods.join(' | ')}`,
      fix: "repair the record (then restart vmlet), or destroy and undefine the pod's domains (virsh list --all: names end in the pod id's first 8 characters), delete its netns (ip netns delete), stop its dnsmasq and remove its directory",
    };
  } catch (err) {
    return { name, verdict: 'WARN', detail: `${root}: ${(err as Error).message}` };
  }
}

export async function runChecks(config: Config, log: Logger): Promise<CheckResult[]> {
  return Promise.all([
    ...(config.downstream ? [downstreamCheck(config.downstream)] : []),
    libvirtCheck(config, log),
    virtlogdCheck(),
    binaryCheck('qemu', QEMU_SYSTEM, 'qemu-system-x86'),
    Promise.resolve(kvmCheck(config)),
    kvmDeviceCheck(config),
    binaryCheck('qemu-img', QEMU_IMG, 'qemu-utils'),
    binaryCheck('dnsmasq', 'dnsmasq', 'dnsmasq-base'),
    binaryCheck('nsenter', 'nsenter', 'util-linux'),
    zstdCheck(),
    Promise.resolve(cniCheck(config)),
    writableCheck('state-dir', config.stateDir),
    qemuUserCheck(config),
    writableCheck('socket-dir', dirname(config.socket)),
    guestKitCheck(config.guestKitDir),
    imageRootfsCheck(config),
    Promise.resolve(podVmBiosCheck(config)),
    crictlCheck(config.socket),
    metricsCheck(config.metricsAddress),
    streamingCheck(config.streaming),
    podRecordsCheck(config.stateDir, log),
  ]);
}

export function formatCheck(c: CheckResult): string {
  const line = `${c.verdict.padEnd(4)} ${c.name.padEnd(11)} ${c.detail}`;
  return c.fix ? `${line}\n${' '.repeat(17)}fix: ${c.fix}` : line;
}

/** Exit code: 0 when nothing FAILed (WARN, e.g. TCG, still runs VMs). */
export function doctorExitCode(results: CheckResult[]): number {
  return results.some((r) => r.verdict === 'FAIL') ? 1 : 0;
}
