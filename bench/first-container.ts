// Benchmark (not a test): an image's first sandboxed container.
//   npx tsx bench/first-container.ts [--rounds N=3] [--kubelet]
// The image: the busybox test image's layer under gzip layers of this node's own files
// (node-file-layers.ts, ~550 MB, ~25k entries), pushed to a loopback registry.
// Default (auto mode, imageRootfsAtPull: false): the pod's CreateContainer waits for its VM to
// boot and for the image's rootfs to be built, the two side by side. Each round pulls the image
// afresh (RemoveImage took its rootfs), then times, in a pod of its own each:
//  - fresh: RunPodSandbox → CreateContainer (boot and build) → StartContainer → first log line;
//  - again: the same with the rootfs already there (boot only);
// and prints vmlet's own figures of the fresh pod: the build's ms ("image rootfs unpacked") and
// the boot's ("pod VM ready" bootMs). With the two in turn, the fresh CreateContainer would be
// about again's CreateContainer + the build ("in turn" below).
// --kubelet: a kubelet's order, pull (with the pod's config) between RunPodSandbox and
// CreateContainer, in vmlets on their defaults and with what runs at the pull turned off.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { ROOT, call, parseLogLines, removeTempDirs, startVmlet, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { startRegistry, testImages } from '../test/helpers/registry.js';
import { nodeFileLayers } from './node-file-layers.js';
import { FIRST_LINE, FIRST_LINE_COMMAND, removePod, startPod } from './pod-run.js';

const args = process.argv.slice(2);
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : 3;
const kubelet = args.includes('--kubelet');
const KIT = process.env.VMLET_GUEST_KIT ?? join(ROOT, '.cache/guest-kit');
const work = tempDir('vmlet-bench-first-');
const logRoot = join(work, 'logs');

/** An OCI layout: the busybox test image's layers and config, with the node-file layers on top. */
function buildLayout(dir: string): { entries: number; compressed: number } {
  const base = testImages()['busybox-app'];
  const blobs = join(dir, 'blobs/sha256');
  mkdirSync(blobs, { recursive: true });
  const blobPath = (layout: string, digest: string) => join(layout, 'blobs/sha256', digest.slice(7));
  const writeJson = (doc: unknown) => {
    const body = Buffer.from(JSON.stringify(doc));
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    writeFileSync(blobPath(dir, digest), body);
    return { digest, size: body.length };
  };
  for (const l of base.layers) copyFileSync(blobPath(base.layout, l.digest), blobPath(dir, l.digest));
  const extra = nodeFileLayers(work);
  for (const l of extra) copyFileSync(l.path, blobPath(dir, l.digest));
  const config = JSON.parse(readFileSync(blobPath(base.layout, base.configDigest), 'utf8')) as { rootfs: { diff_ids: string[] } };
  config.rootfs.diff_ids.push(...extra.map((l) => l.diffId));
  const cfg = writeJson(config);
  const manifest = writeJson({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: [...base.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })), ...extra.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }))],
  });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  return { entries: extra.reduce((a, l) => a + l.entries, 0), compressed: extra.reduce((a, l) => a + l.size, 0) };
}

/** A pod of `image` printing FIRST_LINE (bench/pod-run.ts): its CreateContainer and its whole start. */
async function firstLinePod(v: VmletProcess, image: string, name: string): Promise<{ pod: string; create: number; total: number }> {
  const r = await startPod(v.runtime, { name, handler: 'vmlet', image, logRoot, command: FIRST_LINE_COMMAND, marker: FIRST_LINE, timeoutMs: 300_000 });
  return { pod: r.pod, create: r.phases.CreateContainer!, total: r.phases.total! };
}

/**
 * --kubelet: a kubelet's order (RunPodSandbox, PullImage with the pod's config, CreateContainer,
 * StartContainer, first log line) for two pod kinds: sandboxed (vmlet.io/pod-kind: sandboxed:
 * the VM boots once RunPodSandbox has answered) and auto (no annotation: the VM boots at the pull, config
 * podVmAtPull, or at CreateContainer). Each round in a vmlet on its defaults (the pull builds the
 * rootfs and boots an auto pod's VM), in one with podVmAtPull off (auto only) and in one with
 * both off (the rootfs built and the VM booted at CreateContainer), one after the other.
 */
async function kubeletOrder(image: string): Promise<void> {
  const setups: Array<[string, string]> = [
    ['defaults', ''],
    ['podVmAtPull off', 'podVmAtPull: false\n'],
    ['both off', 'podVmAtPull: false\nimageRootfsAtPull: false\n'],
  ];
  const vmlets: Array<[string, VmletProcess]> = [];
  try {
    for (const [name, extra] of setups) vmlets.push([name.padEnd(15), await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\nguestKitDir: ${KIT}\n${extra}` })]);
    const ms = (x: number | undefined) => `${(x ?? NaN).toFixed(0)}`.padStart(8);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const kind of ['sandboxed', 'auto']) {
      // A sandboxed pod's VM boots after RunPodSandbox whatever podVmAtPull says.
      const these = kind === 'auto' ? vmlets : vmlets.filter(([name]) => !name.startsWith('podVmAtPull'));
      console.log(`pod kind ${kind}\nround  vmlet            RunPodSandbox  PullImage  CreateContainer  Start+line | pull+create  whole`);
      const sums = new Map<string, number[]>();
      for (let r = 0; r < rounds; r++) {
        for (const [name, vm] of these) {
          const run = await startPod(vm.runtime, {
            name: `kubelet-${kind}-${r}`,
            handler: 'vmlet',
            image,
            logRoot,
            command: FIRST_LINE_COMMAND,
            marker: FIRST_LINE,
            annotations: kind === 'auto' ? {} : { 'vmlet.io/pod-kind': kind },
            timeoutMs: 300_000,
            pull: (sandboxConfig) => call(vm.image, 'PullImage', { image: { image }, sandbox_config: sandboxConfig }),
          });
          const p = run.phases;
          const pullCreate = p.PullImage! + p.CreateContainer!;
          sums.set(name, [...(sums.get(name) ?? []), pullCreate]);
          console.log(`${String(r).padStart(5)}  ${name}  ${ms(p.RunPodSandbox)}      ${ms(p.PullImage)}  ${ms(p.CreateContainer)}         ${ms(p.StartContainer! + p['first log line']!)}   | ${ms(pullCreate)}  ${ms(p.total)}`);
          await removePod(vm.runtime, run.pod);
          await call(vm.image, 'RemoveImage', { image: { image } });
        }
      }
      const [base, ...others] = [...sums.entries()].map(([name, xs]) => [name.trim(), median(xs)] as const);
      console.log(`${kind}: median PullImage + CreateContainer: ${base![0]} ${base![1].toFixed(0)} ms; ${others.map(([n, x]) => `${n} ${x.toFixed(0)} ms (ratio ${(base![1] / x).toFixed(2)})`).join('; ')}`);
    }
  } finally {
    for (const [, vm] of vmlets) await vm.stop();
  }
}

const reg = await startRegistry();
let v: VmletProcess | undefined;
try {
  const layout = join(work, 'layout');
  const built = buildLayout(layout);
  const image = `${reg.host}/bench/first:1`;
  execFileSync('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:latest`, `docker://${image}`]);
  console.log(`first sandboxed container of an image: busybox + ${(built.compressed / 1e6).toFixed(0)} MB of gzip layers (${built.entries} entries); load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (kubelet) await kubeletOrder(image);
  else await autoRounds(image);
} finally {
  await v?.stop();
  await reg.stop();
  removeTempDirs('first-container'); // vmlet's state (its images-ro mount) and the layers
}
process.exit(0);

/** Each round: pull, then a fresh pod (auto mode: CreateContainer boots and builds), then one with the rootfs there. */
async function autoRounds(image: string): Promise<void> {
  // The first container builds the rootfs (imageRootfsAtPull: false): the build beside the boot.
  v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\nguestKitDir: ${KIT}\nimageRootfsAtPull: false\n` });
  const vm = v;
  const ms = (x: number) => `${x.toFixed(0)} ms`;
  console.log('round  fresh: CreateContainer  to first line | unpack  boot | again: CreateContainer  to first line | in turn (again + unpack)  fresh / in turn');
  for (let r = 0; r < rounds; r++) {
    await call(vm.image, 'PullImage', { image: { image } });
    const fresh = await firstLinePod(vm, image, `fresh-${r}`);
    const lines = parseLogLines(vm.logLines);
    const unpacked = lines.filter((l) => l.msg === 'image rootfs unpacked').at(-1)?.ms as number;
    const boot = lines.find((l) => l.msg === 'pod VM ready' && l.podSandboxId === fresh.pod)?.bootMs as number;
    const again = await firstLinePod(vm, image, `again-${r}`);
    const inTurn = again.create + unpacked;
    console.log(`${String(r).padStart(5)}  ${ms(fresh.create).padStart(22)} ${ms(fresh.total).padStart(14)} | ${ms(unpacked).padStart(6)} ${ms(boot).padStart(6)} | ${ms(again.create).padStart(22)} ${ms(again.total).padStart(14)} | ${ms(inTurn).padStart(24)}  ${(fresh.create / inTurn).toFixed(2)}`);
    for (const p of [fresh.pod, again.pod]) await removePod(vm.runtime, p);
    await call(vm.image, 'RemoveImage', { image: { image } });
  }
}
