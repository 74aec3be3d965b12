// vmlet's own gRPC service beside the CRI on the same socket, for what the CRI has no call for
// (today: a pull that streams its progress, for `vmlet pull`). Messages are JSON, so no .proto
// and no generated code; the socket's permissions guard it as they guard the CRI.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { PullSnapshot } from '../image/pull-progress.js';

export interface AdminPullRequest {
  image: string;
  username?: string;
  password?: string;
}

/** A progress report while the pull runs (PullSnapshot, less the image asked for), then one with `imageRef` when it is done. */
export type AdminPullReply = Omit<PullSnapshot, 'image'> & { imageRef?: string };

const toJson = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
/** Bad JSON becomes undefined, which the handler refuses with INVALID_ARGUMENT (not INTERNAL). */
function fromJson<T>(b: Buffer): T {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    return undefined as T;
  }
}

export const ADMIN_SERVICE = 'vmlet.admin.v1.Admin';

export const adminDefinition = {
  PullImage: {
    path: `/${ADMIN_SERVICE}/PullImage`,
    requestStream: false,
    responseStream: true,
    requestSerialize: toJson,
    requestDeserialize: fromJson<AdminPullRequest>,
    responseSerialize: toJson,
    responseDeserialize: fromJson<AdminPullReply>,
    originalName: 'pullImage',
  },
} satisfies ServiceDefinition;
