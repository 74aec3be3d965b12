// The uid, gid and groups a container runs as, from the image's USER, the CRI security context
// and the image's own /etc/passwd and /etc/group (as containerd and runc resolve them).
// The files are read from an unpacked rootfs that an image author controls: every symlink on
// the way is resolved inside the rootfs (an absolute target is relative to its root), the file
// is opened without following a final symlink and must be a small regular file.
import { constants } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { VmletError } from '../errors.js';

export interface UserRequest {
  /** config.User of the image: "", name, uid, name:group, uid:gid, uid:groupname. */
  imageUser: string;
  runAsUser?: number;
  runAsUsername?: string;
  runAsGroup?: number;
  supplementalGroups?: number[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** For setgroups: the primary gid first (as containerd adds it), then /etc/group memberships, then supplemental groups. */
  groups: number[];
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Largest /etc/passwd or /etc/group read from an image. */
export const MAX_ID_FILE_BYTES = 1024 * 1024;
const MAX_ID = 0xffffffff;

const idOf = (s: string | undefined): number | undefined => (s !== undefined && /^\d{1,10}$/.test(s) && Number(s) <= MAX_ID ? Number(s) : undefined);

const lines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

/** Entries with a malformed uid or gid are skipped (runc treats them as not matching anything useful). */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of lines(text)) {
    const [name, , uid, gid, , home, shell] = line.split(':');
    const u = idOf(uid);
    const g = idOf(gid);
    if (!name || u === undefined || g === undefined) continue;
    out.push({ name, uid: u, gid: g, home: home ?? '', shell: shell ?? '' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of lines(text)) {
    const [name, , gid, members] = line.split(':');
    const g = idOf(gid);
    if (!name || g === undefined) continue;
    out.push({ name, gid: g, members: (members ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

function checkId(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > MAX_ID) throw new VmletError('invalid-argument', `${what} ${v} is not a valid id (0 to ${MAX_ID})`);
  return v;
}

/**
 * Pure resolution over parsed files (undefined: the image has no such file).
 * Which user: run_as_username, else run_as_user, else the image's USER; run_as_group replaces
 * the group in every case (with no user override it applies to the image's user).
 */
export function resolveUserFrom(passwd: PasswdEntry[] | undefined, group: GroupEntry[] | undefined, req: UserRequest): ResolvedUser {
  let userPart: string;
  let groupPart: string | undefined;
  if (req.runAsUsername) {
    userPart = req.runAsUsername;
  } else if (req.runAsUser !== undefined) {
    userPart = String(checkId(req.runAsUser, 'run_as_user'));
  } else {
    const parts = req.imageUser.split(':');
    if (parts.length > 2) throw new VmletError('invalid-argument', `invalid USER value ${JSON.stringify(req.imageUser)} in the image`);
    userPart = parts[0] || '0';
    groupPart = parts[1] || undefined;
  }
  if (req.runAsGroup !== undefined) groupPart = String(checkId(req.runAsGroup, 'run_as_group'));

  let uid: number;
  let gid = 0;
  let entry: PasswdEntry | undefined;
  const numericUid = idOf(userPart);
  if (numericUid !== undefined) {
    uid = numericUid;
    // A uid the image does not list is fine: it runs with gid 0 (containerd's WithUserID).
    entry = passwd?.find((e) => e.uid === uid);
  } else {
    entry = passwd?.find((e) => e.name === userPart);
    if (!entry) throw new VmletError('invalid-argument', `unable to find user ${userPart}: no matching entries in passwd file`);
    uid = entry.uid;
  }
  if (entry) gid = entry.gid;
  if (groupPart !== undefined) {
    const numericGid = idOf(groupPart);
    if (numericGid !== undefined) {
      gid = numericGid;
    } else {
      const g = group?.find((e) => e.name === groupPart);
      if (!g) throw new VmletError('invalid-argument', `unable to find group ${groupPart}: no matching entries in group file`);
      gid = g.gid;
    }
  }
  const name = entry?.name;
  // Groups that list the user by name; a group named after the user is its primary one (containerd skips it here).
  const member = name === undefined ? [] : (group ?? []).filter((g) => g.name !== name && g.members.includes(name)).map((g) => g.gid);
  const supplemental = (req.supplementalGroups ?? []).map((g) => checkId(g, 'supplemental group'));
  return { uid, gid, groups: [...new Set([gid, ...member, ...supplemental])] };
}

/** One name looked up in a directory, for resolveWithin: its node, its target if it is a symlink, whether it is a directory. */
export interface Looked<N> {
  node: N;
  target?: string;
  dir: boolean;
}

/**
 * Resolves an in-image path from `root`, following symlinks inside the image only: an absolute
 * target starts again at the root, '..' is lexical and stops there. Undefined when a component
 * is missing, is not a directory, or links loop. `lookup` finds a name in a directory node:
 * on disk (resolveInRootfs) or in the EROFS builder's tree (erofs-tree.ts).
 */
export async function resolveWithin<N>(root: N, path: string, lookup: (dir: N, name: string) => Promise<Looked<N> | undefined> | Looked<N> | undefined, maxHops = 40): Promise<N | undefined> {
  let todo = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: N[] = []; // real directories only (and the last component), so '..' is lexical
  let hops = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const found = await lookup(done.at(-1) ?? root, part);
    if (!found) return undefined;
    if (found.target !== undefined) {
      if (++hops > maxHops) return undefined;
      if (found.target.startsWith('/')) done.length = 0;
      todo = [...found.target.split('/').filter((p) => p !== '' && p !== '.'), ...todo];
      continue;
    }
    if (todo.length > 0 && !found.dir) return undefined;
    done.push(found.node);
  }
  return done.at(-1) ?? root;
}

/** resolveWithin on a tree on disk: the host path of an in-image path under `root`. */
export function resolveInRootfs(root: string, path: string, maxHops = 40): Promise<string | undefined> {
  return resolveWithin(
    root,
    path,
    async (dir, name) => {
      const host = join(dir, name);
      const st = await lstat(host).catch(() => undefined);
      if (!st) return undefined;
      return st.isSymbolicLink() ? { node: host, target: await readlink(host), dir: false } : { node: host, dir: st.isDirectory() };
    },
    maxHops,
  );
}

/** A small regular file of the image (undefined when absent), read without leaving the rootfs. */
export async function readRootfsFile(root: string, path: string, maxBytes = MAX_ID_FILE_BYTES): Promise<Buffer | undefined> {
  const host = await resolveInRootfs(root, path);
  if (host === undefined) return undefined;
  let fh;
  try {
    // NOFOLLOW: the resolved path ends in no symlink; NONBLOCK: a FIFO there must not hang us.
    fh = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new VmletError('invalid-argument', `${path} in the image is not a regular file`);
    if (st.size > maxBytes) throw new VmletError('invalid-argument', `${path} in the image is ${st.size} bytes (at most ${maxBytes} are read)`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Resolves the container's user from the unpacked rootfs at `rootfsDir`. */
export async function resolveUser(rootfsDir: string, req: UserRequest): Promise<ResolvedUser> {
  const [passwd, group] = await Promise.all([readRootfsFile(rootfsDir, '/etc/passwd'), readRootfsFile(rootfsDir, '/etc/group')]);
  return resolveUserFrom(passwd && parsePasswd(passwd.toString('utf8')), group && parseGroup(group.toString('utf8')), req);
}
