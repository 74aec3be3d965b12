// Test support: libvirt's own schema check of a domain XML. virt-xml-validate (Debian's
// libvirt-clients) is a shell script around xmllint (libxml2-utils) and the RelaxNG schemas under
// /usr/share/libvirt/schemas: all three must be there.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const SCHEMA = '/usr/share/libvirt/schemas/domain.rng';
const onPath = (bin: string) => (process.env.PATH ?? '/usr/bin').split(':').some((d) => existsSync(join(d, bin)));

/** Why schema validation cannot run here, or undefined when it can. */
export const virtXmlValidateMissing: string | undefined = !onPath('virt-xml-validate')
  ? 'virt-xml-validate is not installed (Debian: libvirt-clients)'
  : !onPath('xmllint')
    ? 'xmllint, which virt-xml-validate runs, is not installed (Debian: libxml2-utils)'
    : !existsSync(SCHEMA)
      ? `libvirt's domain schema ${SCHEMA} is missing`
      : undefined;

/** Validates a domain XML against libvirt's schema; throws with the tool's complaint and the XML. */
export function validateDomainXml(label: string, xml: string): void {
  try {
    execFileSync('virt-xml-validate', ['-', 'domain'], { input: xml, stdio: 'pipe' });
  } catch (err) {
    const e = err as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`virt-xml-validate rejected ${label}:\n${e.stderr?.toString() ?? ''}${e.stdout?.toString() ?? ''}\n${xml}`);
  }
}
