// ContainerStatus: a container's record and, verbose, what an operator debugging a VM pod wants
// in one place: the domain, libvirt's state of it, the accelerator, where each VM setting came
// from, the files vmlet made, the domain XML.
import type { PodManager } from './manager.js';
import type { ContainerRecord } from './records.js';

export interface ContainerStatusResult {
  container: ContainerRecord;
  /** Verbose only: `info`, a JSON object; empty otherwise. */
  info: Record<string, string>;
}

export async function containerStatus(m: PodManager, id: string, verbose: boolean): Promise<ContainerStatusResult> {
  const c = m.mustContainer(id);
  const info: Record<string, string> = {};
  if (verbose) info.info = JSON.stringify(await containerVerboseInfo(m, c));
  return { container: c, info };
}

async function containerVerboseInfo(m: PodManager, c: ContainerRecord): Promise<Record<string, unknown>> {
  const vm = m.deps.vm;
  let domainXml: string | null = null;
  let libvirtState: string | null = null;
  try {
    domainXml = await vm.definition(c.domainName);
    libvirtState = (await vm.state(c.domainName)).toUpperCase();
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
