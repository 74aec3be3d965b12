// An image's layers applied into one EROFS image file instead of a directory tree (rootfs.ts
// has the tree): the same rules, entry by entry (whiteouts, opaque dirs, hard links, entries
// through symlinks refused), on a tree kept in memory, while each file's data goes to the image
// as it is read. Nothing is created on the host but the one file: a 550 MB image of 25k files
// costs one sequential write instead of 25k file creations (bench/first-container.ts).
// A file replaced by a later layer leaves its blocks behind in the image (as in the layers).
import { readSync } from 'node:fs';
import { posix } from 'node:path';
import type { ReadEntry } from 'tar';
import { BLOCK, S_IFDIR, S_IFMT, S_IFIFO, S_IFLNK, S_IFREG, blocksFor, writeAll, writeErofsMeta, type ErofsNode } from './erofs-format.js';
import { normalizeEntryPath } from './layer-tar.js';
import type { EntrySink, LayerState } from './rootfs.js';

const dirNode = (mode = 0o755, mtimeMs = Date.now()): ErofsNode => ({ mode: S_IFDIR | mode, uid: 0, gid: 0, mtimeMs, children: new Map() });
const isDir = (n: ErofsNode | undefined): n is ErofsNode & { children: Map<string, ErofsNode> } => !!n?.children;

/**
 * Files' data, in the order it is read, into one buffer written out a MiB at a time: the files
 * follow each other block after block, so the data area is written sequentially (the padding of
 * each file's last block written as zeros). One write(2) per file and chunk cost the
 * 550 MB image of bench/rootfs-unpack.ts over a second of system time.
 */
class DataWriter {
  private readonly buf = Buffer.alloc(1 << 20);
  /** Image offset of buf[0], and bytes held. */
  private start = 0;
  private len = 0;

  constructor(private readonly fd: number) {}

  write(chunk: Buffer, pos: number): void {
    const end = this.start + this.len;
    if (this.len > 0 && pos >= end && pos - end + chunk.length <= this.buf.length - this.len) {
      this.buf.fill(0, this.len, this.len + (pos - end));
      chunk.copy(this.buf, pos - this.start);
      this.len = pos - this.start + chunk.length;
      return;
    }
    this.flush();
    if (chunk.length >= this.buf.length) return writeAll(this.fd, chunk, pos);
    this.start = pos;
    chunk.copy(this.buf, 0);
    this.len = chunk.length;
  }

  flush(): void {
    if (this.len > 0) writeAll(this.fd, this.buf.subarray(0, this.len), this.start);
    this.len = 0;
  }
}

export class ErofsTree implements EntrySink {
  readonly root = dirNode();
  /** Next free data block (block 0 holds the superblock). */
  private nextBlk = 1;
  private readonly data: DataWriter;

  constructor(private readonly fd: number) {
    this.data = new DataWriter(fd);
  }

  private lookup(path: string): ErofsNode | undefined {
    if (path === '') return this.root;
    let node: ErofsNode | undefined = this.root;
    for (const part of path.split('/')) {
      node = node?.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  async apply(entry: ReadEntry, s: LayerState): Promise<void> {
    const path = normalizeEntryPath(entry.path, s.bad);
    const base = posix.basename(path);
    const dir = parentOf(path);
    if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw s.bad(`device node ${JSON.stringify(entry.path)}`);
    if (entry.size > s.limits.maxEntryBytes) throw s.bad(`entry ${JSON.stringify(entry.path)} is ${entry.size} bytes (limit ${s.limits.maxEntryBytes})`);

    if (base === '.wh..wh..opq') {
      this.parents(path, s, true);
      this.prune(dir, s);
      return void entry.resume();
    }
    if (base.startsWith('.wh..wh.')) return void entry.resume();
    if (base.startsWith('.wh.')) {
      this.parents(path, s, false);
      const victim = posix.join(dir, base.slice(4));
      if (s.keep.has(victim)) this.prune(victim, s);
      else this.remove(victim);
      return void entry.resume();
    }

    if (path === '' && entry.type !== 'Directory') throw s.bad(`entry ${JSON.stringify(entry.path)} would replace the root directory`);
    const parent = path === '' ? undefined : this.parents(path, s, true);
    s.added.add(path);
    for (let p = path; p !== ''; p = parentOf(p)) s.keep.add(p);
    s.keep.add('');
    const existing = this.lookup(path);
    if (existing && !(isDir(existing) && entry.type === 'Directory')) this.remove(path);
    const meta = { uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtimeMs: entry.mtime?.getTime() ?? 0 };
    const put = (node: ErofsNode) => void parent!.children!.set(base, node);

    switch (entry.type) {
      case 'Directory': {
        const node = isDir(existing) ? existing : dirNode();
        Object.assign(node, { mode: S_IFDIR | ((entry.mode ?? 0o755) & 0o7777), uid: meta.uid, gid: meta.gid });
        if (entry.mtime) node.mtimeMs = meta.mtimeMs;
        if (path !== '' && node !== existing) put(node);
        return void entry.resume();
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return put(await this.file(entry, s, meta));
      case 'SymbolicLink':
        put({ mode: S_IFLNK | 0o777, ...meta, target: entry.linkpath ?? '' });
        return void entry.resume();
      case 'Link':
        put(this.hardLink(entry, s));
        return void entry.resume();
      case 'FIFO':
        put({ mode: S_IFIFO | ((entry.mode ?? 0o644) & 0o7777), ...meta });
        return void entry.resume();
      default:
        throw s.bad(`unsupported entry type ${entry.type} for ${JSON.stringify(entry.path)}`);
    }
  }

  private async file(entry: ReadEntry, s: LayerState, meta: Pick<ErofsNode, 'uid' | 'gid' | 'mtimeMs'>): Promise<ErofsNode> {
    s.budget.written += entry.size;
    if (s.budget.written > s.limits.writableBytes) throw s.full(`needs more than the ${s.limits.writableBytes} bytes free in the image store`);
    charge(entry.size, s);
    const blk = this.nextBlk;
    this.nextBlk += blocksFor(entry.size);
    let got = 0;
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      this.data.write(chunk, blk * BLOCK + got);
      got += chunk.length;
    }
    if (got !== entry.size) throw s.bad(`entry ${JSON.stringify(entry.path)} is truncated (${got} of ${entry.size} bytes)`);
    return { mode: S_IFREG | ((entry.mode ?? 0o644) & 0o7777), ...meta, blk, size: entry.size };
  }

  private hardLink(entry: ReadEntry, s: LayerState): ErofsNode {
    const target = normalizeEntryPath(entry.linkpath ?? '', s.bad);
    if (target === '') throw s.bad(`hard link ${JSON.stringify(entry.path)} to the root directory`);
    this.parents(target, s, false);
    const node = this.lookup(target);
    if (!node) throw s.bad(`hard link ${JSON.stringify(entry.path)} to ${JSON.stringify(entry.linkpath)}, which is not in the image`);
    if (isDir(node)) throw s.bad(`hard link ${JSON.stringify(entry.path)} to directory ${JSON.stringify(entry.linkpath)}`);
    charge((node.mode & S_IFMT) === S_IFREG ? node.size ?? 0 : 0, s);
    // As containerd does, the link's header sets the owner and mode of the shared inode, unless it is a symlink.
    if (node.target === undefined) Object.assign(node, { uid: entry.uid ?? 0, gid: entry.gid ?? 0, mode: (node.mode & ~0o7777) | ((entry.mode ?? 0o644) & 0o7777) });
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

  /**
   * The node at in-image `path`, following symlinks inside the image only (an absolute target
   * starts again at its root, '..' stops there), as users.ts resolves /etc/passwd in a tree.
   */
  resolve(path: string, maxHops = 40): ErofsNode | undefined {
    let todo = path.split('/').filter((p) => p !== '' && p !== '.');
    const done: ErofsNode[] = [];
    let hops = 0;
    while (todo.length > 0) {
      const part = todo.shift()!;
      if (part === '..') {
        done.pop();
        continue;
      }
      const node = (done.at(-1) ?? this.root).children?.get(part);
      if (!node) return undefined;
      if (node.target !== undefined) {
        if (++hops > maxHops) return undefined;
        if (node.target.startsWith('/')) done.length = 0;
        todo = [...node.target.split('/').filter((p) => p !== '' && p !== '.'), ...todo];
        continue;
      }
      if (todo.length > 0 && !isDir(node)) return undefined;
      done.push(node);
    }
    return done.at(-1) ?? this.root;
  }

  /** A regular file's bytes, read back from the image. */
  read(node: ErofsNode): Buffer {
    this.data.flush();
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
    this.data.flush();
    return writeErofsMeta(this.fd, this.root, this.nextBlk);
  }
}

function charge(bytes: number, s: LayerState): void {
  s.budget.apparentBytes += bytes;
  if (s.budget.apparentBytes > s.limits.maxImageBytes) {
    throw s.bad(`files total more than ${s.limits.maxImageBytes} bytes (hard links count at their target's size)`);
  }
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}
