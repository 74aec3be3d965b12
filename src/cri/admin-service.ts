// vmlet.admin.v1.Admin (src/grpc/admin-proto.ts): PullImage with progress, for `vmlet pull`. The
// pull is the CRI's PullImage (shared with one in flight for the same image), watched.
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { ImageStore } from '../image/store.js';
import type { PullSnapshot } from '../image/pull-progress.js';
import type { AdminPullReply, AdminPullRequest } from '../grpc/admin-proto.js';
import { pullImage } from '../pod/image-pull.js';
import { invalidArgument } from '../errors.js';
import { serverStream } from './rpc.js';

/** Progress replies at most this often: a terminal redraws no faster, and slow clients keep up. */
const REPLY_EVERY_MS = 250;
const MAX_IMAGE_NAME = 4096;

function checkRequest(req: AdminPullRequest | undefined): AdminPullRequest {
  if (!req || typeof req !== 'object') throw invalidArgument('request must be a JSON object {"image": "<reference>"}');
  const { image, username, password } = req;
  if (typeof image !== 'string' || image === '' || image.length > MAX_IMAGE_NAME) {
    throw invalidArgument(`image must be an image reference of 1 to ${MAX_IMAGE_NAME} characters`);
  }
  for (const [k, v] of Object.entries({ username, password })) {
    if (v !== undefined && typeof v !== 'string') throw invalidArgument(`${k} must be a string`);
  }
  return { image, ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

/** The snapshot without the image name the client asked with. */
function reply(s: PullSnapshot): AdminPullReply {
  const { image: _asked, ...rest } = s;
  return rest;
}

export function adminService(log: Logger, images: ImageStore): UntypedServiceImplementation {
  return {
    PullImage: serverStream(log, 'Admin/PullImage', async (raw: AdminPullRequest | undefined, write: (r: AdminPullReply) => void) => {
      const req = checkRequest(raw);
      let last = 0;
      let lastPhase = '';
      let latest: PullSnapshot | undefined;
      const creds = { ...(req.username ? { username: req.username } : {}), ...(req.password ? { password: req.password } : {}) };
      const rec = await pullImage(images, req.image, creds, (s) => {
        latest = s;
        const now = performance.now();
        if (s.phase === lastPhase && now - last < REPLY_EVERY_MS) return;
        last = now;
        lastPhase = s.phase;
        write(reply(s));
      });
      const done: AdminPullReply = latest ? reply(latest) : { phase: 'done', bytesDone: 0, bytesTotal: 0, layersDone: 0, layersTotal: 0, rate: 0, elapsedMs: 0 };
      write({ ...done, phase: 'done', imageRef: rec.id });
    }),
  };
}
