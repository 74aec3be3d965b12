// `vmlet pull IMAGE`: pulls into vmlet's own store through the running server's Admin/PullImage
// (src/cri/admin-service.ts), drawing its progress: a redrawn bar on a terminal, a line every
// few seconds otherwise. The image id goes to stdout, progress to stderr.
import type { AdminPullReply, AdminPullRequest } from './grpc/admin-proto.js';
import { AdminCallError, adminPull } from './grpc/admin-client.js';
import { progressLine } from './image/pull-progress.js';

/** Without a terminal, one progress line this often (a log or CI output stays short). */
const PLAIN_EVERY_MS = 2_000;

interface Out {
  write(s: string): boolean;
  isTTY?: boolean;
}

/** "user:password" or "user" (password then empty), as crictl's --creds. */
export function parseCreds(creds: string | undefined): Pick<AdminPullRequest, 'username' | 'password'> {
  if (creds === undefined) return {};
  const i = creds.indexOf(':');
  const username = i < 0 ? creds : creds.slice(0, i);
  if (!username) throw new Error('--creds must be USER[:PASSWORD]');
  return { username, ...(i >= 0 ? { password: creds.slice(i + 1) } : {}) };
}

export async function pullCommand(socket: string, image: string, creds: string | undefined, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let auth;
  try {
    auth = parseCreds(creds);
  } catch (e) {
    err.write(`vmlet pull: ${(e as Error).message}\n`);
    return 2;
  }
  const tty = err.isTTY === true;
  let lastPlain = 0;
  let drawn = false;
  const draw = (r: AdminPullReply) => {
    const line = progressLine({ image, ...r });
    if (tty) {
      err.write(`\r${line}\x1b[K`);
      drawn = true;
    } else if (Date.now() - lastPlain >= PLAIN_EVERY_MS) {
      lastPlain = Date.now();
      err.write(`${line}\n`);
    }
  };
  try {
    const ref = await adminPull(socket, { image, ...auth }, draw);
    if (drawn) err.write('\n');
    out.write(`${ref}\n`);
    return 0;
  } catch (e) {
    if (drawn) err.write('\n');
    const why = (e as Error).message;
    const hint = e instanceof AdminCallError && e.code === 'UNAVAILABLE' ? ` (is vmlet serving on ${socket}?)` : '';
    err.write(`vmlet pull ${image}: ${why}${hint}\n`);
    return 1;
  }
}
