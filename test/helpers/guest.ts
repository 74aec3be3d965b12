// The project's test guest (built by test/images/build-kernel-guest.sh) and a minimal domain
// XML that boots it directly from kernel + initrd. vmlet's own domain XML comes from src/vm/
// once VM pods land; this one only proves the harness boots real guests.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './vmlet.js';

export const GUEST_DIR = process.env.VMLET_TEST_IMAGES ? join(process.env.VMLET_TEST_IMAGES, 'kernel-guest') : join(ROOT, '.cache/test-images/kernel-guest');
export const READY_MARKER = 'VMLET-READY';

export interface KernelGuest {
  kernel: string;
  initrd: string;
  cmdline: string;
}

export function kernelGuest(): KernelGuest {
  const kernel = join(GUEST_DIR, 'vmlinux');
  const initrd = join(GUEST_DIR, 'initrd.img');
  if (!existsSync(kernel) || !existsSync(initrd)) {
    throw new Error(`test guest missing in ${GUEST_DIR}: run test/images/build-kernel-guest.sh (npm test does)`);
  }
  return { kernel, initrd, cmdline: readFileSync(join(GUEST_DIR, 'cmdline'), 'utf8').trim() };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

export function kernelGuestXml(o: {
  name: string;
  guest: KernelGuest;
  domainType: 'kvm' | 'qemu';
  consoleLog: string;
  memoryMiB?: number;
  extraCmdline?: string;
}): string {
  const cmdline = [o.guest.cmdline, o.extraCmdline].filter(Boolean).join(' ');
  return `<domain type='${o.domainType}'>
  <name>${esc(o.name)}</name>
  <memory unit='MiB'>${o.memoryMiB ?? 256}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${esc(o.guest.kernel)}</kernel>
    <initrd>${esc(o.guest.initrd)}</initrd>
    <cmdline>${esc(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><log file='${esc(o.consoleLog)}' append='off'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>`;
}
