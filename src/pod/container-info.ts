// ContainerStatus verbose: what an operator debugging a VM pod wants in one place.
import type { PodManager } from './manager.js';
import type { ContainerRecord } from './records.js';
import { DomainState } from '../vm/libvirt.js';

export async function containerVerboseInfo(m: PodManager, c: ContainerRecord): Promise<Record<string, unknown>> {
  const lv = m.deps.libvirt;
  let domainXml: string | null = null;
  let libvirtState: string | null = null;
  try {
    domainXml = await lv.domainXML(c.domainName);
    libvirtState = DomainState[(await lv.domainInfo(c.domainName)).state] ?? null;
  } catch (err) {
    libvirtState = `unavailable: ${(err as Error).message}`;
  }
  return {
    domain: c.domainName,
    libvirtState,
    hypervisor: m.deps.accel.accel,
    consoleLog: c.consoleLog,
    settings: c.settingSources ?? {},
    files: c.files,
    domainXml,
  };
}
