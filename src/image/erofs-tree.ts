// An image's layers applied into one EROFS image file instead of a directory tree (rootfs.ts
// has the tree): the same rules, entry by entry (whiteouts, opaque dirs, hard links, entries
// through symlinks refused), on a tree kept in memory, layer after layer; each file's data went
// to the image when its layer was read (erofs-layer-read.ts). Nothing is created on the host
// but the one file: a 550 MB image of 25k files costs one write in order instead of 25k file
// creations (bench/rootfs-unpack.ts).
// A file replaced by a later layer leaves its blocks behind in the image (as in the layers).
import { readSync } from 'node:fs';
import { posix } from 'node:path';
import { BLOCK, S_IFDIR, S_IFMT, S_IFREG, writeErofsMeta, type ErofsNode } from './erofs-format.js';
import { BlockAllocator, type ErofsOp } from './erofs-layer-read.js';
import { chargeApparent, type LayerState } from './rootfs.js';
import { parentOf } from './layer-tar.js';
import { resolveWithin } from './users.js';

const dirNode = (mode = 0o755, mtimeMs = Date.now()): ErofsNode => ({ mode: S_IFDIR | mode, uid: 0, gid: 0, mtimeMs, children: new Map() });
const isDir = (n: ErofsNode | undefined): n is ErofsNode & { children: Map<string, ErofsNode> } => !!n?.children;

export class ErofsTree {
  readonly root = dirNode();
  readonly blocks = new BlockAllocator();

  constructor(private readonly fd: number) {}

  private lookup(path: string): ErofsNode | undefined {
    if (path === '') return this.root;
    let node: ErofsNode | undefined = this.root;
    for (const part of path.split('/')) {
      node = node?.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  /** A layer's ops (erofs-layer-read.ts), in order, as the tree's rules say (rootfs.ts's, the same). */
  apply(ops: ErofsOp[], s: LayerState): void {
    for (const op of ops) this.applyOne(op, s);
  }

  private applyOne(op: ErofsOp, s: LayerState): void {
    const { path } = op;
    const base = posix.basename(path);
    const dir = parentOf(path);
    if (op.kind === 'opaque') {
      this.parents(path, s, true);
      return this.prune(dir, s);
    }
    if (op.kind === 'whiteout') {
      this.parents(path, s, false);
      const victim = posix.join(dir, base.slice(4));
      // A whiteout hides lower layers only: this layer's own entries stay.
      if (s.keep.has(victim)) this.prune(victim, s);
      else this.remove(victim);
      return;
    }
    const parent = path === '' ? undefined : this.parents(path, s, true);
    s.added.add(path);
    for (let p = path; p !== ''; p = parentOf(p)) s.keep.add(p);
    s.keep.add('');
    const existing = this.lookup(path);
    if (existing && !(isDir(existing) && op.kind === 'dir')) this.remove(path);
    const put = (node: ErofsNode) => void parent!.children!.set(base, node);
    switch (op.kind) {
      case 'dir': {
        const node = isDir(existing) ? existing : dirNode();
        Object.assign(node, { mode: S_IFDIR | op.mode, uid: op.uid, gid: op.gid });
        if (op.mtimeMs !== undefined) node.mtimeMs = op.mtimeMs;
        if (path !== '' && node !== existing) put(node);
        return;
      }
      case 'node':
        return put(op.node);
      case 'link':
        return put(this.hardLink(op, s));
    }
  }

  private hardLink(op: Extract<ErofsOp, { kind: 'link' }>, s: LayerState): ErofsNode {
    this.parents(op.target, s, false);
    const node = this.lookup(op.target);
    if (!node) throw s.bad(`hard link ${JSON.stringify(op.raw)} to ${JSON.stringify(op.targetRaw)}, which is not in the image`);
    if (isDir(node)) throw s.bad(`hard link ${JSON.stringify(op.raw)} to directory ${JSON.stringify(op.targetRaw)}`);
    chargeApparent((node.mode & S_IFMT) === S_IFREG ? node.size ?? 0 : 0, s);
    // As containerd does, the link's header sets the owner and mode of the shared inode, unless it is a symlink.
    if (node.target === undefined) Object.assign(node, { uid: op.uid, gid: op.gid, mode: (node.mode & ~0o7777) | op.mode });
    return node;
  }

  /**
   * The directory above `path`, after checking that every directory on the way is a real one (a
   * symlink there is a hostile layer); `create` makes missing ones (0755, root), as containerd does.
   */
  private parents(path: string, s: LayerState, create: boolean): ErofsNode | undefined {
    const parts = path.split('/');
    let node: ErofsNode = this.root;
    let cur = '';
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur === '' ? parts[i]! : `${cur}/${parts[i]}`;
      let next = node.children!.get(parts[i]!);
      if (!next) {
        if (!create) return undefined;
        next = dirNode();
        node.children!.set(parts[i]!, next);
        s.keep.add(cur);
      } else if (next.target !== undefined) {
        throw s.bad(`entry ${JSON.stringify(path)} goes through symlink ${JSON.stringify(cur)}`);
      } else if (!isDir(next)) {
        throw s.bad(`entry ${JSON.stringify(path)} is below ${JSON.stringify(cur)}, which is not a directory`);
      }
      node = next;
    }
    return node;
  }

  /** Removes what lower layers put at or below `p`, keeping this layer's entries. */
  private prune(p: string, s: LayerState): void {
    const node = this.lookup(p);
    if (!isDir(node)) return;
    for (const name of [...node.children.keys()]) {
      const child = p === '' ? name : `${p}/${name}`;
      if (!s.keep.has(child)) node.children.delete(name);
      else this.prune(child, s);
    }
  }

  private remove(p: string): void {
    if (p === '') return;
    this.lookup(parentOf(p))?.children?.delete(posix.basename(p));
  }

  /** The node at in-image `path`, symlinks followed inside the image (users.ts resolveWithin, as for a tree on disk). */
  resolve(path: string): Promise<ErofsNode | undefined> {
    return resolveWithin<ErofsNode>(this.root, path, (dir, name) => {
      const node = dir.children?.get(name);
      return node && { node, ...(node.target !== undefined ? { target: node.target } : {}), dir: isDir(node) };
    });
  }

  /** A regular file's bytes, read back from the image. */
  read(node: ErofsNode): Buffer {
    const buf = Buffer.alloc(node.size ?? 0);
    for (let off = 0; off < buf.length; ) {
      const n = readSync(this.fd, buf, off, buf.length - off, node.blk! * BLOCK + off);
      if (n === 0) break;
      off += n;
    }
    return buf;
  }

  /** The directories and inodes after the data: the image is complete. Returns its size. */
  finish(): number {
    return writeErofsMeta(this.fd, this.root, this.blocks.next);
  }
}
