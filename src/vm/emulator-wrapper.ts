// QEMU born in its pod's cgroup (docs/pod-cgroup.md). A VM of a pod with a cgroup_parent gets
// this script as its domain's <emulator>: libvirt forks, puts the child in its own cgroups, drops
// to QEMU's user (vm/qemu-user.ts) and execs the emulator; the script then writes its pid into the
// birth leaf vmlet made in the pod cgroup for this start (one per hierarchy vmlet moves QEMU in,
// its cgroup.procs given to QEMU's user), and execs QEMU. So every page QEMU touches (the kernel
// and initrd copied into guest RAM, its start-up) is charged to the pod, not to libvirt's
// /machine. After the start vmlet renames the leaf to libvirt's name for the machine
// (vm/pod-cgroup.ts placeQemu). Which dirs are the domain's: vmlet lists them in <joinDir>/<domain>.
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { atomicWrite } from '../util/atomic-write.js';

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The script, pure: execs `qemu` after joining the dirs listed in `joinDir`/<the -name guest=…>. */
export function emulatorScript(qemu: string, joinDir: string): string {
  return `#!/bin/sh
# Written by vmlet: a pod's QEMU born in the pod's cgroup (docs/pod-cgroup.md). libvirt runs it
# as the domain's <emulator>, as QEMU's user, once the child is in libvirt's cgroups; vmlet lists
# the birth leaves it made in the pod's cgroup in ${joinDir}/<domain> while it starts the domain.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
name=
prev=
for a in "$@"; do
  if [ "$prev" = -name ]; then name=\${a#guest=}; name=\${name%%,*}; fi
  prev=$a
done
list=${shQuote(joinDir)}/"$name"
if [ -n "$name" ] && [ -f "$list" ]; then
  while IFS= read -r dir; do
    [ -n "$dir" ] || continue
    echo $$ > "$dir/cgroup.procs" || {
      echo "vmlet: QEMU cannot join the pod cgroup $dir" >&2
      exit 1
    }
  done < "$list"
fi
exec ${shQuote(qemu)} "$@"
`;
}

export class EmulatorWrapper {
  readonly joinDir: string;

  private constructor(readonly path: string, dir: string) {
    this.joinDir = join(dir, 'cgroup-join');
  }

  /** Writes the script under `dir`/bin unless it is there as is: libvirt probes an emulator anew whenever its file changes. */
  static async install(dir: string, qemu: string): Promise<EmulatorWrapper> {
    const w = new EmulatorWrapper(join(dir, 'bin', 'qemu-in-pod-cgroup'), dir);
    // QEMU's user runs the script and reads its list: root's files, readable, searchable dirs.
    await mkdir(dirname(w.path), { recursive: true, mode: 0o711 });
    await mkdir(w.joinDir, { recursive: true, mode: 0o711 });
    await chmod(dirname(w.path), 0o711);
    await chmod(w.joinDir, 0o711);
    const script = emulatorScript(qemu, w.joinDir);
    const current = await readFile(w.path, 'utf8').catch(() => '');
    if (current !== script) await atomicWrite(w.path, script, 0o755);
    else await chmod(w.path, 0o755);
    return w;
  }

  /** Lists the pod cgroup dirs the domain's QEMU joins at its next start. */
  async expect(domain: string, dirs: readonly string[]): Promise<void> {
    const list = join(this.joinDir, domain);
    await writeFile(list, dirs.map((d) => `${d}\n`).join(''), { mode: 0o644 });
    await chmod(list, 0o644); // one left by a crash may have another mode
  }

  /** After the start (or its failure): nothing joins on a later start unless listed again. */
  async done(domain: string): Promise<void> {
    await rm(join(this.joinDir, domain), { force: true });
  }
}
