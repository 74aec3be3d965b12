// The CRI unix socket's path and permissions. The socket must never be reachable with wider
// permissions than mode 0660 and the configured group, so it is bound in a private directory next
// to its path (mode 0700: no one else can reach a socket inside), given its mode and group there,
// then renamed into place: rename(2) is atomic within a filesystem, so the path shows either the
// old state or the finished socket. (A umask around bind would not do: umask is process-wide and
// grpc-js binds after asynchronous steps, so other files made meanwhile would get it too, and it
// cannot set the group.) Node's net server unlinks the path it bound when it closes (libuv
// uv__pipe_close), which is then the private path, already gone: the published socket is removed
// by removeSocket, only while it is still the one this run published.
// Also: a stale socket from a crashed run is removed, a live one (another vmlet answering) refused,
// and nothing that is not a socket is ever deleted.
import { VmletError } from '../errors.js';
import { connect } from 'node:net';
import { chmod, chown, lstat, mkdir, readdir, readFile, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const SOCKET_MODE = 0o660;
/** Mode of the socket's directory when vmlet creates it: others may pass through, not list it. */
export const SOCKET_DIR_MODE = 0o711;
/** sun_path holds 108 bytes with the NUL; Node silently truncates a longer path instead of failing. */
const MAX_SOCKET_PATH = 107;

function answers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (alive: boolean) => {
      s.destroy();
      resolve(alive);
    };
    s.setTimeout(timeoutMs, () => done(true)); // accepted but silent: someone holds it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The private directory the socket is bound in before it is published. */
export function bindDirOf(path: string): string {
  return join(dirname(path), `.${basename(path)}.bind`);
}

export interface PreparedSocket {
  replacedStale: boolean;
  /** Where to bind: inside a fresh 0700 directory of this run. */
  bindPath: string;
  /** Set when the socket's directory lets other users replace the socket (writable by them, no sticky bit). */
  unsafeDir?: string;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return false;
    throw err;
  });
}

export async function prepareSocketPath(path: string): Promise<PreparedSocket> {
  const dir = dirname(path);
  const bindDir = bindDirOf(path);
  const bindPath = join(bindDir, 's');
  for (const p of [path, bindPath]) {
    if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
      throw new VmletError('invalid-argument', `socket path ${path} is too long: vmlet binds it as ${bindPath} (${Buffer.byteLength(bindPath)} bytes) and a unix socket path has at most ${MAX_SOCKET_PATH}; choose a shorter socket path`);
    }
  }
  let unsafeDir: string | undefined;
  if (!(await exists(dir))) {
    await mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE });
    await chmod(dir, SOCKET_DIR_MODE); // exactly, whatever the umask
  } else {
    const st = await stat(dir);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) unsafeDir = `${dir} is mode ${(st.mode & 0o7777).toString(8)}: other users may replace the socket`;
  }
  let replacedStale = false;
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (st) {
    if (!st.isSocket()) throw new VmletError('failed-precondition', `${path} exists and is not a socket; refusing to replace it`);
    if (await answers(path)) {
      throw new VmletError('failed-precondition', `another process is already serving on ${path} (is vmlet already running?); stop it first`);
    }
    await unlink(path);
    replacedStale = true;
  }
  await clearBindDir(bindDir);
  // Not recursive: this run made it (mode 0700 at creation), or the call fails.
  await mkdir(bindDir, { mode: 0o700 });
  return { replacedStale, bindPath, ...(unsafeDir ? { unsafeDir } : {}) };
}

/** Removes the bind directory a crashed run left (empty, or holding its dead socket); anything else there is refused. */
async function clearBindDir(bindDir: string): Promise<void> {
  let st;
  try {
    st = await lstat(bindDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const uid = process.getuid?.() ?? 0;
  const leftover = st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0;
  const inside = leftover ? await readdir(bindDir) : [];
  const onlySocket = inside.every((n) => n === 's') && (inside.length === 0 || (await lstat(join(bindDir, 's'))).isSocket());
  if (!leftover || !onlySocket) {
    throw new VmletError('failed-precondition', `${bindDir} exists and is not a bind directory left by vmlet; refusing to remove it`);
  }
  await rm(bindDir, { recursive: true });
}

/** The gid of a group name (from /etc/group) or a gid as given. */
export async function resolveGroup(group: string | number, groupFile = '/etc/group'): Promise<number> {
  if (typeof group === 'number') return group;
  let text = '';
  try {
    text = await readFile(groupFile, 'utf8');
  } catch (err) {
    throw new VmletError('failed-precondition', `config socketGroup ${JSON.stringify(group)}: cannot read ${groupFile}: ${(err as Error).message}`);
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new VmletError('failed-precondition', `config socketGroup ${JSON.stringify(group)} is not a group of this host (${groupFile}); create it or give a gid`);
}

export interface PublishedSocket {
  path: string;
  dev: number;
  ino: number;
}

/** Mode and group on the bound socket, then rename it to `path` and drop the private directory. */
export async function publishSocket(bindPath: string, path: string, gid: number): Promise<PublishedSocket> {
  await chmod(bindPath, SOCKET_MODE);
  const st = await stat(bindPath);
  if (st.gid !== gid) await chown(bindPath, st.uid, gid);
  await rename(bindPath, path);
  await rmdir(dirname(bindPath));
  return { path, dev: st.dev, ino: st.ino };
}

/** Removes the bind directory after a failed start (whatever it holds is this run's). */
export async function discardBindDir(bindPath: string): Promise<void> {
  await rm(dirname(bindPath), { recursive: true, force: true });
}

/** Removes the published socket unless another run has replaced it since. */
export async function removeSocket(s: PublishedSocket): Promise<void> {
  const st = await lstat(s.path).catch(() => undefined);
  if (st && st.dev === s.dev && st.ino === s.ino) await unlink(s.path).catch(() => undefined);
}
