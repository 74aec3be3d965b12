// Unpacks an image's layers into a directory tree that guests use read-only as the lower dir
// of a container's overlay. Our own writer over node-tar's Parser (not tar.Unpack, whose
// protections we would have to trust): every entry is checked before anything is written.
//  - Paths: '..' is refused (HostileLayerError, as layer-scan does); absolute paths are
//    relative to the rootfs. Every parent of an entry (and of a hard-link target) must be a
//    real directory: an entry reached through a symlink is refused, whichever layer made it.
//    Files are created with O_EXCL after removing what was there, so no final symlink is
//    followed either; symlinks are stored as written and never followed on the host.
//  - Device nodes are refused like layer-scan refuses them (pull already rejects such images;
//    containers get /dev from the guest). FIFOs are made with mkfifo(1).
//  - Owner (we run as root), mode with setuid/setgid/sticky, and mtimes are kept; xattrs are not.
//  - Whiteouts: `.wh.<name>` removes lower-layer <name>; `.wh..wh..opq` empties its directory
//    of lower-layer content but keeps this layer's entries, before or after the marker.
//  - Limits (ScanLimits): each entry ≤ maxEntryBytes; uncompressed tar bytes ≤ maxImageBytes;
//    file bytes written ≤ writableBytes; and the apparent size (files plus every hard link at
//    its target's size) ≤ maxImageBytes, so hard links are no way around the size cap for
//    whoever copies or reads the tree.
// The tree is built in a temp dir under the store's tmp/ and renamed to `dest` when complete:
// a crash leaves only tmp/ behind (the store wipes it at start).
import {
  chmodSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, symlinkSync, writeSync,
} from 'node:fs';
import { chmod, mkdtemp, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ReadEntry } from 'tar';
import { HostileLayerError, normalizeEntryPath, parentOf, StoreFullError, type LayerRef, type ScanLimits } from './layer-tar.js';
import { eachLayerEntry } from './layer-entries.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

export interface Budget {
  imageBytes: number;
  apparentBytes: number;
  written: number;
}

/** Applies `layers` in order into the empty directory `root`: the tree, without the rename. */
export type TreeBuilder = (root: string, layers: LayerRef[], limits: ScanLimits) => Promise<void>;

export const buildTree: TreeBuilder = async (root, layers, limits) => {
  const tree = new Tree(root);
  const budget: Budget = { imageBytes: 0, apparentBytes: 0, written: 0 };
  for (const layer of layers) {
    await layer.ready;
    await applyLayer(tree, layer, limits, budget);
  }
  tree.finish();
};

/**
 * Applies `layers` in order into a new directory, then renames it to `dest` (which must not
 * exist). `build` makes the tree: here, or in the unpack's worker thread (rootfs-client.ts).
 */
export async function unpackRootfs(layers: LayerRef[], dest: string, tmpDir: string, limits: ScanLimits, build: TreeBuilder = buildTree): Promise<void> {
  const root = await mkdtemp(join(tmpDir, 'rootfs-'));
  try {
    await chmod(root, 0o755);
    await build(root, layers, limits);
    // Data first, then the rename that makes the tree visible: after a power loss, a present
    // dest is a complete one. syncfs(2) through sync(1) (Node has no binding for it).
    await run('sync', ['-f', root]).catch(() => undefined);
    await rename(root, dest);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

async function applyLayer(tree: Tree, layer: LayerRef, limits: ScanLimits, budget: Budget): Promise<void> {
  const state: LayerState = { bad: (why) => new HostileLayerError(layer.digest, why), full: (why) => new StoreFullError(layer.digest, why), limits, budget, added: new Set(), keep: new Set() };
  await eachLayerEntry(layer, limits, budget, 'unpacking', (entry) => tree.apply(entry, state));
}

/** What the size checks need of a layer's state. */
type Charges = Pick<LayerState, 'budget' | 'limits' | 'bad' | 'full'>;

/** A file's or hard link's bytes against the image's cap: hard links count at their target's size. */
export function chargeApparent(bytes: number, s: Charges): void {
  s.budget.apparentBytes += bytes;
  if (s.budget.apparentBytes > s.limits.maxImageBytes) {
    throw s.bad(`files total more than ${s.limits.maxImageBytes} bytes (hard links count at their target's size)`);
  }
}

/** A file about to be written: the store's free space, then its apparent bytes. */
export function chargeFile(bytes: number, s: Charges): void {
  s.budget.written += bytes;
  if (s.budget.written > s.limits.writableBytes) throw s.full(`needs more than the ${s.limits.writableBytes} bytes free in the image store`);
  chargeApparent(bytes, s);
}

/** A layer's state while it is applied (the EROFS tree, erofs-tree.ts, applies layers by the same rules). */
export interface LayerState {
  bad: (why: string) => Error;
  /** The store's free space is short (StoreFullError). */
  full: (why: string) => Error;
  limits: ScanLimits;
  budget: Budget;
  /** In-image paths this layer wrote (whiteouts never remove them). */
  added: Set<string>;
  /** `added` plus their parent directories: what an opaque whiteout keeps. */
  keep: Set<string>;
}

class Tree {
  /** In-image directories known to be real directories with real directories above them. */
  private dirs = new Set<string>(['']);
  /** Directory mtimes, set at the end (writing inside a directory changes its mtime). */
  private dirTimes = new Map<string, Date>();

  constructor(private readonly root: string) {}

  private host(p: string): string {
    return p === '' ? this.root : join(this.root, p);
  }

  async apply(entry: ReadEntry, s: LayerState): Promise<void> {
    const path = normalizeEntryPath(entry.path, s.bad);
    const base = posix.basename(path);
    const dir = parentOf(path);
    if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw s.bad(`device node ${JSON.stringify(entry.path)}`);
    if (entry.size > s.limits.maxEntryBytes) throw s.bad(`entry ${JSON.stringify(entry.path)} is ${entry.size} bytes (limit ${s.limits.maxEntryBytes})`);

    if (base === '.wh..wh..opq') {
      this.parents(path, s, true);
      await this.prune(dir, s);
      return void entry.resume();
    }
    if (base.startsWith('.wh..wh.')) return void entry.resume(); // aufs metadata: nothing to apply
    if (base.startsWith('.wh.')) {
      this.parents(path, s, false);
      const victim = posix.join(dir, base.slice(4));
      // A whiteout hides lower layers only: this layer's own entries stay.
      if (s.keep.has(victim)) await this.prune(victim, s);
      else await this.remove(victim);
      return void entry.resume();
    }

    if (path === '' && entry.type !== 'Directory') throw s.bad(`entry ${JSON.stringify(entry.path)} would replace the root directory`);
    if (path !== '') this.parents(path, s, true);
    s.added.add(path);
    for (let p = path; p !== ''; p = parentOf(p)) s.keep.add(p);
    s.keep.add('');
    const host = this.host(path);
    const existing = lstatSync(host, { throwIfNoEntry: false });
    if (existing && !(existing.isDirectory() && entry.type === 'Directory')) await this.remove(path);

    switch (entry.type) {
      case 'Directory':
        if (!existing?.isDirectory()) mkdirSync(host, { mode: 0o700 });
        this.dirs.add(path);
        this.owner(host, entry);
        chmodSync(host, entry.mode ?? 0o755);
        if (entry.mtime) this.dirTimes.set(path, entry.mtime);
        return void entry.resume();
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return this.file(host, entry, s);
      case 'SymbolicLink':
        symlinkSync(entry.linkpath ?? '', host);
        this.owner(host, entry);
        if (entry.mtime) lutimesSync(host, entry.atime ?? entry.mtime, entry.mtime);
        return void entry.resume();
      case 'Link':
        this.hardLink(host, entry, s);
        return void entry.resume();
      case 'FIFO':
        await run('mkfifo', ['-m', (entry.mode ?? 0o644).toString(8), host]);
        this.owner(host, entry);
        chmodSync(host, entry.mode ?? 0o644);
        if (entry.mtime) lutimesSync(host, entry.atime ?? entry.mtime, entry.mtime);
        return void entry.resume();
      default:
        // Other types (GNU dump dirs, sparse files of old tars…) are not in OCI layers.
        throw s.bad(`unsupported entry type ${entry.type} for ${JSON.stringify(entry.path)}`);
    }
  }

  private async file(host: string, entry: ReadEntry, s: LayerState): Promise<void> {
    chargeFile(entry.size, s);
    // O_EXCL: whatever was at the path was removed; never write through a link.
    const fd = openSync(host, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      let got = 0;
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        got += chunk.length;
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      }
      if (got !== entry.size) throw s.bad(`entry ${JSON.stringify(entry.path)} is truncated (${got} of ${entry.size} bytes)`);
      // chown before chmod: chown clears setuid/setgid.
      if (isRoot) fchownSync(fd, entry.uid ?? 0, entry.gid ?? 0);
      fchmodSync(fd, entry.mode ?? 0o644);
      if (entry.mtime) futimesSync(fd, entry.atime ?? entry.mtime, entry.mtime);
    } finally {
      closeSync(fd);
    }
  }

  private hardLink(host: string, entry: ReadEntry, s: LayerState): void {
    const target = normalizeEntryPath(entry.linkpath ?? '', s.bad);
    if (target === '') throw s.bad(`hard link ${JSON.stringify(entry.path)} to the root directory`);
    this.parents(target, s, false);
    const st = lstatSync(this.host(target), { throwIfNoEntry: false });
    if (!st) throw s.bad(`hard link ${JSON.stringify(entry.path)} to ${JSON.stringify(entry.linkpath)}, which is not in the image`);
    if (st.isDirectory()) throw s.bad(`hard link ${JSON.stringify(entry.path)} to directory ${JSON.stringify(entry.linkpath)}`);
    chargeApparent(st.isFile() ? st.size : 0, s);
    // link(2) does not follow a symlink target: the new name is that symlink. As containerd
    // does, the link's header sets the owner and mode of the (shared) inode, unless it is a symlink.
    linkSync(this.host(target), host);
    if (!st.isSymbolicLink()) {
      if (isRoot) lchownSync(host, entry.uid ?? 0, entry.gid ?? 0);
      chmodSync(host, entry.mode ?? 0o644);
    }
  }

  private owner(host: string, entry: ReadEntry): void {
    if (isRoot) lchownSync(host, entry.uid ?? 0, entry.gid ?? 0);
  }

  /**
   * Checks that every directory above `path` is a real directory (a symlink there is a hostile
   * layer); `create` makes missing ones (0755, root), as containerd does.
   */
  private parents(path: string, s: LayerState, create: boolean): void {
    const parts = path.split('/');
    let cur = '';
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur === '' ? parts[i]! : `${cur}/${parts[i]}`;
      if (this.dirs.has(cur)) continue;
      const st = lstatSync(this.host(cur), { throwIfNoEntry: false });
      if (!st) {
        if (!create) return; // nothing below a missing directory
        mkdirSync(this.host(cur));
        chmodSync(this.host(cur), 0o755); // whatever vmlet's umask: guests' users must get through
        s.keep.add(cur);
      } else if (st.isSymbolicLink()) {
        throw s.bad(`entry ${JSON.stringify(path)} goes through symlink ${JSON.stringify(cur)}`);
      } else if (!st.isDirectory()) {
        throw s.bad(`entry ${JSON.stringify(path)} is below ${JSON.stringify(cur)}, which is not a directory`);
      }
      this.dirs.add(cur);
    }
  }

  /** Removes what lower layers put at or below `p`, keeping this layer's entries. */
  private async prune(p: string, s: LayerState): Promise<void> {
    const st = lstatSync(this.host(p), { throwIfNoEntry: false });
    if (!st?.isDirectory()) return;
    for (const name of readdirSync(this.host(p))) {
      const child = p === '' ? name : `${p}/${name}`;
      if (!s.keep.has(child)) await this.remove(child);
      else await this.prune(child, s);
    }
  }

  private async remove(p: string): Promise<void> {
    if (p === '') return;
    const st = lstatSync(this.host(p), { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const set of [this.dirs, this.dirTimes]) {
        for (const k of set.keys()) if (k === p || k.startsWith(p + '/')) set.delete(k);
      }
    }
    // rm never follows symlinks: a symlink is removed, not what it points to.
    await rm(this.host(p), { recursive: true, force: true });
  }

  /** Directory mtimes, deepest first (lutimes: never through a symlink, though none is left in `dirTimes`). */
  finish(): void {
    const dirs = [...this.dirTimes].sort((a, b) => b[0].length - a[0].length);
    for (const [p, mtime] of dirs) lutimesSync(this.host(p), mtime, mtime);
  }
}
