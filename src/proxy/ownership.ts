// Who owns what on a converged node, as the routing asks it: vmlet's PodManager knows its own
// sandboxes and containers; the handler config says which RuntimeClass handlers are VMs.
import type { PodManager } from '../pod/manager.js';

/** What the router needs to know about vmlet's side. */
export interface Ownership {
  ownsSandbox(id: string): boolean;
  ownsContainer(id: string): boolean;
  /** Is a pod with this RuntimeClass handler a VM pod ('' = no RuntimeClass)? */
  isVmHandler(handler: string): boolean;
  /** Is this pod (by its sandbox metadata) one of vmlet's sandboxes? */
  ownsPodConfig(meta: PodMetadata | null | undefined): boolean;
}

export interface PodMetadata {
  name?: string;
  uid?: string;
  namespace?: string;
}

/**
 * Ownership from the PodManager and the handler config. An ambiguous id prefix counts as
 * vmlet's, so vmlet's own handler answers it (InvalidArgument naming the prefix).
 */
export function podOwnership(pods: PodManager, cfg: { handlers: string[]; defaultRuntime: boolean }): Ownership {
  const owns = (lookup: () => unknown): boolean => {
    try {
      return lookup() !== undefined;
    } catch {
      return true;
    }
  };
  return {
    ownsSandbox: (id) => owns(() => pods.sandbox(id)),
    ownsContainer: (id) => owns(() => pods.container(id)),
    isVmHandler: (h) => cfg.handlers.includes(h) || (h === '' && cfg.defaultRuntime),
    ownsPodConfig: (meta) => {
      if (!meta?.uid) return false;
      for (const s of pods.sandboxes.values()) {
        const m = s.config.metadata;
        if (m && m.uid === meta.uid && m.name === meta.name && m.namespace === meta.namespace) return true;
      }
      return false;
    },
  };
}
