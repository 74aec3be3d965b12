// A sandboxed pod's VM booted before its first container, in the background while the kubelet
// pulls: at RunPodSandbox with vmlet.io/pod-kind: sandboxed, and for a pod whose kind its first
// container decides (no annotation) at the kubelet's PullImage, as soon as the image's config
// says it looks like a container image (store.ts looksLike; config podVmAtPull). That kind is a
// guess until the first container (SandboxRecord.guessed): a VM image's first container destroys
// the VM and the pod becomes a VM-image pod, as it would have without the guess.
import type { PodSandboxConfig } from './configs.js';
import type { PodManager } from './manager.js';
import type { SandboxRecord } from './records.js';
import { ensurePodVm, forgetPodVm, removePodVm } from './podvm-boot.js';
import { parsePodAnnotations } from '../vm/annotations.js';
import { podVmGuessed } from '../metrics/vmlet.js';

/** The pod a kubelet's PullImage is for (its sandbox_config), if vmlet runs it and its kind is still open. */
export function podOfPull(m: PodManager, config: PodSandboxConfig | null | undefined): SandboxRecord | undefined {
  const md = config?.metadata;
  if (!m.deps.config.podVmAtPull || !md?.uid) return undefined;
  const s = m.sandboxByMetadata(md);
  return s && openKind(m, s) ? s : undefined;
}

/** Whether the pod's kind is still its first container's to decide, and no VM of it is under way. */
function openKind(m: PodManager, s: SandboxRecord): boolean {
  if (s.kind || s.state !== 'ready' || m.closing.has(s.id) || m.containersOf(s.id).length > 0) return false;
  try {
    return parsePodAnnotations(s.config.annotations ?? {}).podKind === 'auto';
  } catch {
    return false; // RunPodSandbox checked them; nothing to guess on a record that no longer parses
  }
}

/**
 * Boots the pod's VM at the image pull, on the guess (see above), in the background under the
 * pod's lock. Not from the warm pool: a pod that would take a pool VM takes it at its first
 * container, in well under a boot.
 */
export function bootPodVmAtPull(m: PodManager, s: SandboxRecord): void {
  if (m.pool?.idleNames.length) return;
  bootInBackground(m, s, () => openKind(m, s), { guessed: true }, 'the pod VM booted at the image pull failed; the first container boots one');
}

/**
 * RunPodSandbox with vmlet.io/pod-kind: sandboxed: the VM boots (or a pool VM is claimed) after
 * the call has answered, while the kubelet pulls the pod's images, as at a guessed pull.
 */
export function bootPodVmOfKind(m: PodManager, s: SandboxRecord): void {
  bootInBackground(m, s, () => s.state === 'ready' && !m.closing.has(s.id), {}, 'the pod VM booted at RunPodSandbox failed; the first container boots one');
}

/**
 * Under the pod's lock, so CreateContainer waits for the boot's end and Stop/RemovePodSandbox
 * too; `still` says whether the pod still wants it then. A failure (nothing is left of it:
 * ensurePodVm) is logged and left to the first container, which boots again and reports it.
 */
function bootInBackground(m: PodManager, s: SandboxRecord, still: () => boolean, o: { guessed?: boolean }, failed: string): void {
  void m.lock
    .run(s.id, async () => {
      if (m.sandboxes.get(s.id) !== s || !still()) return; // a container, a stop or a removal came first
      await ensurePodVm(m, s, o);
    })
    .catch((err: unknown) => m.log.warn({ podSandboxId: s.id, err: (err as Error).message }, failed));
}

/**
 * CreateContainer of a VM image in a pod whose VM was booted on a guess (caller holds the pod's
 * lock): the VM goes (its definition first, which has the name the container's VM takes), and
 * the pod is as RunPodSandbox left it. Its tap is the pod's own: a guess never takes a pool VM.
 */
export async function undoGuessedPodVm(m: PodManager, s: SandboxRecord, image: string): Promise<void> {
  const domain = s.podVm?.domainName;
  await m.ownVmStop(s, () => removePodVm(m, s));
  forgetPodVm(m, s);
  await m.store.saveSandbox(s);
  podVmGuessed('undone');
  m.log.info({ podSandboxId: s.id, domain, image }, 'the pod VM booted at the image pull is destroyed: the first container\'s image boots a VM of its own');
}
