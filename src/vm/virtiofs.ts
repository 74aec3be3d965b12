// virtiofs (docs/volumes.md): libvirt starts virtiofsd, as root, for each shared directory, and
// QEMU only passes the guest's requests to it, so a VM with shares runs QEMU unprivileged (9p is
// served by QEMU itself, which needs root for the host's owners). Found as libvirt finds it: the
// vhost-user descriptors of type "fs" (QEMU's firmware-style JSON), then the usual binary paths.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const DESCRIPTOR_DIRS = ['/etc/qemu/vhost-user', '/usr/share/qemu/vhost-user'];
/** Debian 12 ships QEMU's C virtiofsd with QEMU; Debian 13, Ubuntu and Fedora the Rust one as its own package. */
const BINARIES = ['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd', '/usr/lib/virtiofsd'];

/** The virtiofsd binary libvirt would run, or undefined where there is none (shares then use 9p). */
export function findVirtiofsd(descriptorDirs = DESCRIPTOR_DIRS, binaries = BINARIES): string | undefined {
  for (const dir of descriptorDirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      try {
        const d = JSON.parse(readFileSync(join(dir, n), 'utf8')) as { type?: unknown; binary?: unknown };
        if (d.type === 'fs' && typeof d.binary === 'string' && existsSync(d.binary)) return d.binary;
      } catch {
        // not a descriptor: the next one
      }
    }
  }
  return binaries.find((b) => existsSync(b));
}
