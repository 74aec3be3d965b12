// Edits of vmlet's rendered domain XML for tests and benchmarks (never for a real domain).

/** vmlet's domain XML without its <qemu:capabilities>: libvirt's own check of the started CPU. */
export function withoutQemuCapabilities(xml: string): string {
  const out = xml.replace(/<qemu:capabilities>[\s\S]*<\/qemu:capabilities>/, '');
  if (out === xml) throw new Error("vmlet's domain XML has no <qemu:capabilities> to take out");
  return out;
}
