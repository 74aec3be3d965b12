// QEMU born in its pod's cgroup (docs/pod-cgroup.md). A VM of a pod with a cgroup_parent gets
// this script as its domain's <emulator>: libvirt forks, puts the child in its own cgroups, and
// execs the emulator; the script then joins the pod's leaf (named as libvirt's own cgroup) in the
// hierarchies vmlet moves QEMU in, and execs QEMU. So every page QEMU touches (the kernel and
// initrd copied into guest RAM, its start-up) is charged to the pod, not to libvirt's /machine.
// Which pod is the domain's: vmlet lists the dirs in <joinDir>/<domain> for the start.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { atomicWrite } from '../util/atomic-write.js';

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The script, pure: execs `qemu` after joining the dirs listed in `joinDir`/<the -name guest=…>. */
export function emulatorScript(qemu: string, joinDir: string): string {
  return `#!/bin/sh
# Written by vmlet: a pod's QEMU born in the pod's cgroup (docs/pod-cgroup.md). libvirt runs it
# as the domain's <emulator> once the child is in libvirt's cgroups; vmlet lists the pod's
# cgroup dirs in ${joinDir}/<domain> while it starts the domain.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
name=
prev=
for a in "$@"; do
  if [ "$prev" = -name ]; then name=\${a#guest=}; name=\${name%%,*}; fi
  prev=$a
done
list=${shQuote(joinDir)}/"$name"
if [ -n "$name" ] && [ -f "$list" ]; then
  # libvirt's name for the machine's cgroup: the leaf takes it, so libvirt still knows QEMU's
  # cgroups after a libvirtd restart.
  leaf=
  while IFS=: read -r _ _ path; do
    last=\${path##*/}
    case $last in *.libvirt-qemu | machine-qemu*.scope) leaf=$last; break ;; esac
  done < /proc/self/cgroup
  [ -n "$leaf" ] || leaf=vmlet-qemu-$$
  while IFS= read -r dir; do
    [ -n "$dir" ] || continue
    { [ -d "$dir/$leaf" ] || mkdir "$dir/$leaf"; } && echo $$ > "$dir/$leaf/cgroup.procs" || {
      echo "vmlet: QEMU cannot join the pod cgroup $dir/$leaf" >&2
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
    await mkdir(dirname(w.path), { recursive: true, mode: 0o700 });
    await mkdir(w.joinDir, { recursive: true, mode: 0o700 });
    const script = emulatorScript(qemu, w.joinDir);
    const current = await readFile(w.path, 'utf8').catch(() => '');
    if (current !== script) await atomicWrite(w.path, script, 0o700);
    return w;
  }

  /** Lists the pod cgroup dirs the domain's QEMU joins at its next start. */
  async expect(domain: string, dirs: readonly string[]): Promise<void> {
    await writeFile(join(this.joinDir, domain), dirs.map((d) => `${d}\n`).join(''), { mode: 0o600 });
  }

  /** After the start (or its failure): nothing joins on a later start unless listed again. */
  async done(domain: string): Promise<void> {
    await rm(join(this.joinDir, domain), { force: true });
  }
}
