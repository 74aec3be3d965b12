// gzip -1 layers of this node's own files, as an image's are (many small files, ~3:1
// compressible): Python's library, gcc's, the C headers, docs and locales (~550 MB, ~25k
// entries on a Debian 12 node). For the benchmarks of what an image's size costs a sandboxed
// pod (rootfs-unpack.ts, first-container.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const NODE_FILE_DIRS = [['usr/lib/python3', 'usr/lib/python3.11', 'usr/share/perl'], ['usr/lib/gcc'], ['usr/include'], ['usr/share/doc', 'usr/share/locale']];

export interface FileLayer {
  path: string;
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
  /** Tar entries in it. */
  entries: number;
}

const sha256 = (cmd: string) => `sha256:${execFileSync('bash', ['-c', `${cmd} | sha256sum`]).toString().split(' ')[0]}`;

/** One layer per NODE_FILE_DIRS group that exists here, written to `dir`. */
export function nodeFileLayers(dir: string): FileLayer[] {
  return NODE_FILE_DIRS.map((dirs) => dirs.filter((d) => existsSync(`/${d}`)))
    .filter((dirs) => dirs.length > 0)
    .map((dirs, i) => {
      const path = join(dir, `node-files-${i}.tar.gz`);
      execFileSync('bash', ['-c', `tar -C / -cf - ${dirs.join(' ')} 2>/dev/null | gzip -1 > ${path}`]);
      return {
        path,
        digest: sha256(`cat ${path}`),
        diffId: sha256(`zcat ${path}`),
        size: statSync(path).size,
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        entries: Number(execFileSync('bash', ['-c', `tar -tzf ${path} | wc -l`]).toString()),
      };
    });
}
