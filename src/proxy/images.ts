// ImageService on a converged node, where two image stores serve one kubelet: vmlet's (VM pods'
// CreateContainer reads it) and the downstream's (container pods'). ImageSpec.runtime_handler,
// when the kubelet sends it (RuntimeClassInImageCriApi, KEP-4216), picks one: a VM handler →
// vmlet's, any other → the downstream's. Without it (older kubelets, `crictl pull` without a pod
// config) the stores answer as one: an image is present only when both hold it, so the kubelet
// pulls and the pull fills both. See docs/converged-images.md.
import { status as Status, type UntypedServiceImplementation, type handleUnaryCall } from '@grpc/grpc-js';
import { isServiceError } from './downstream.js';
import { arr, grpcError, str, type Backends, type Call, type GrpcError, type Res, type Route } from './backends.js';
import type { Ownership, PodMetadata } from './ownership.js';

/** Which store(s) an image call concerns. */
export type ImageTarget = Route | 'both';

/** By ImageSpec.runtime_handler: '' (not sent, or no RuntimeClass) concerns both stores. */
export function imageTarget(handler: string, owner: Pick<Ownership, 'isVmHandler'>): ImageTarget {
  if (handler === '') return 'both';
  return owner.isVmHandler(handler) ? 'vmlet' : 'downstream';
}

interface WireImage {
  id: string;
  repo_tags?: string[];
  repo_digests?: string[];
}

type Outcome = { ok: true; res: Res } | { ok: false; err: GrpcError };

const settle = (p: Promise<Res>): Promise<Outcome> =>
  p.then(
    (res): Outcome => ({ ok: true, res }),
    (err: unknown): Outcome => ({ ok: false, err: isServiceError(err) ? grpcError(err.code, err.details) : grpcError(Status.INTERNAL, (err as Error).message) }),
  );

export function routedImages(b: Backends, owner: Ownership): UntypedServiceImplementation {
  const image: UntypedServiceImplementation = { ...b.own.image };
  const handlerOf = (call: Call) => str((call.request.image as { runtime_handler?: unknown } | null)?.runtime_handler);
  const nameOf = (call: Call) => str((call.request.image as { image?: unknown } | null)?.image);
  const store = (side: Route) => (side === 'vmlet' ? "vmlet's image store" : b.where);

  /** One store when the handler names it; `whenBoth` otherwise. */
  function byHandler(method: string, handler: (call: Call) => string, whenBoth: handleUnaryCall<Record<string, unknown>, unknown>): handleUnaryCall<Record<string, unknown>, unknown> {
    const single = b.route('image', method, (call) => imageTarget(handler(call), owner) as Route);
    return (call, callback) => (imageTarget(handler(call), owner) === 'both' ? whenBoth(call, callback) : single(call, callback));
  }

  /** The error as the caller sees it: which store failed, and what it said. */
  const said = (side: Route, err: GrpcError) => (side === 'downstream' && err.details.includes(b.endpoint) ? err.details : `${store(side)}: ${err.details}`);
  function storeError(method: string, side: Route, err: GrpcError, other?: Outcome): GrpcError {
    const rest = other?.ok ? ` (the copy in ${store(side === 'vmlet' ? 'downstream' : 'vmlet')} was pulled and stays)` : '';
    return grpcError(err.code, `${method}: ${said(side, err)}${rest}`);
  }

  /**
   * Into both stores at once. For a pod's pull (the kubelet's: its sandbox config), the store
   * of the pod's backend decides the answer and the other is filled as well, best effort, so
   * the next ImageStatus finds both; for a pull with no pod (crictl pull), both must succeed.
   */
  const pullBoth: handleUnaryCall<Record<string, unknown>, unknown> = (call, callback) => {
    const meta = (call.request.sandbox_config as { metadata?: PodMetadata | null } | null)?.metadata;
    const needed: ImageTarget = meta?.uid ? (owner.ownsPodConfig(meta) ? 'vmlet' : 'downstream') : 'both';
    const outcomes: Record<Route, Promise<Outcome>> = {
      vmlet: settle(b.callOwn('image', 'PullImage', call)),
      downstream: settle(b.loggedDownstream('image', 'PullImage', call)),
    };
    if (needed !== 'both') {
      const other: Route = needed === 'vmlet' ? 'downstream' : 'vmlet';
      void outcomes[needed].then((o) => (o.ok ? callback(null, o.res) : callback(storeError('PullImage', needed, o.err))));
      // Answered without waiting: the pod can start; a missing copy only means the next
      // ImageStatus answers absent and the kubelet pulls again.
      void outcomes[other].then((o) => {
        if (!o.ok) b.log.warn({ rpc: 'PullImage', image: nameOf(call), pod: meta?.name, namespace: meta?.namespace, store: other, error: o.err.details }, `image pulled for the pod's backend only: ${store(other)} failed, so ImageStatus answers absent until a pull fills it`);
      });
      return;
    }
    void Promise.all([outcomes.vmlet, outcomes.downstream]).then(([mine, theirs]) => {
      if (!mine.ok && !theirs.ok) return callback(grpcError(mine.err.code, `PullImage: ${said('vmlet', mine.err)}; ${said('downstream', theirs.err)}`));
      if (!mine.ok) return callback(storeError('PullImage', 'vmlet', mine.err, theirs));
      if (!theirs.ok) return callback(storeError('PullImage', 'downstream', theirs.err, mine));
      if (mine.res.image_ref !== theirs.res.image_ref) {
        b.log.warn({ rpc: 'PullImage', image: nameOf(call), vmlet: mine.res.image_ref, downstream: theirs.res.image_ref }, 'the two stores pulled different images for one reference; answering vmlet\'s');
      }
      callback(null, mine.res);
    });
  };

  /** Present only when both stores hold the same image (one id): vmlet's record then. */
  const statusBoth = b.both('image', 'ImageStatus', (mine, theirs, call) => {
    const a = mine.image as WireImage | null | undefined;
    const t = theirs.image as WireImage | null | undefined;
    const present = !!a && !!t && a.id === t.id;
    if (!call.request.verbose) return { image: present ? a : null, info: {} };
    const info: Record<string, string> = {};
    if (present) {
      Object.assign(info, mine.info as Record<string, string> | undefined);
      for (const [k, v] of Object.entries((theirs.info as Record<string, string> | undefined) ?? {})) info[`downstream.${k}`] = v;
    }
    info.stores = JSON.stringify({ vmlet: a?.id ?? null, downstream: t?.id ?? null, downstreamEndpoint: b.endpoint });
    return { image: present ? a : null, info };
  });

  /**
   * From both; NotFound on a side counts as removed there. vmlet's first: it refuses an image
   * a VM uses, and then containerd's copy stays too.
   */
  const removeBoth: handleUnaryCall<Record<string, unknown>, unknown> = (call, callback) => {
    const notFoundIsOk = (err: unknown) => {
      if (isServiceError(err) && err.code === Status.NOT_FOUND) return {};
      throw err;
    };
    b.callOwn('image', 'RemoveImage', call).catch(notFoundIsOk).then(
      () => b.loggedDownstream('image', 'RemoveImage', call).then(
        () => callback(null, {}),
        (err: GrpcError) => callback(storeError('RemoveImage', 'downstream', err)),
      ),
      (err: GrpcError) => callback(storeError('RemoveImage', 'vmlet', err)),
    );
  };

  const filterHandler = (call: Call) => str((call.request.filter as { image?: { runtime_handler?: unknown } | null } | null)?.image?.runtime_handler);

  image.PullImage = byHandler('PullImage', handlerOf, pullBoth);
  image.ImageStatus = byHandler('ImageStatus', handlerOf, statusBoth);
  image.ListImages = byHandler('ListImages', filterHandler, b.both('image', 'ListImages', (mine, theirs) => ({ images: mergeImages(mine.images, theirs.images) })));
  image.RemoveImage = byHandler('RemoveImage', handlerOf, removeBoth);
  image.ImageFsInfo = b.both('image', 'ImageFsInfo', (mine, theirs) => ({
    // The downstream's first: the kubelet reads the first entry as "the" image filesystem,
    // and container images are the bulk of a converged node's images.
    image_filesystems: [...arr(theirs.image_filesystems), ...arr(mine.image_filesystems)],
    container_filesystems: [...arr(theirs.container_filesystems), ...arr(mine.container_filesystems)],
  }));
  return image;
}

/** Both stores' images; one image known to both (same id) is listed once, names united. */
export function mergeImages(mine: unknown, theirs: unknown): unknown[] {
  const out = new Map<string, WireImage>();
  for (const img of [...arr(mine), ...arr(theirs)] as WireImage[]) {
    const seen = out.get(img.id);
    if (!seen) {
      out.set(img.id, img);
      continue;
    }
    const union = (a?: string[], b?: string[]) => [...new Set([...(a ?? []), ...(b ?? [])])];
    out.set(img.id, { ...seen, repo_tags: union(seen.repo_tags, img.repo_tags), repo_digests: union(seen.repo_digests, img.repo_digests) });
  }
  return [...out.values()];
}
