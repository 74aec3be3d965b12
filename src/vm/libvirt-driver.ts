// The VM driver (./driver.ts) over vmlet's libvirt client (./libvirt.ts, the only libvirt
// client): libvirt's errors become VmletErrors, its states and lifecycle events vmlet's, and the
// knowledge of QEMU's and libvirt's files lives here: the pid file, the QEMU log's stop reasons,
// the NVRAM element stripped before undefine, the console pty in the live XML.
import { readFileSync } from 'node:fs';
import { VmletError, type ErrorKind } from '../errors.js';
import { hotplugDiskXml, renderDomainXml, serialPtyPath, stripNvram } from './domain-xml.js';
import type { HotplugDisk, VmDriver, VmExitReason, VmSample, VmScheduler, VmState } from './driver.js';
import { DomainState, VirtError, type DomainSample, type Libvirt } from './libvirt.js';
import { AFFECT, LibvirtRpc, LibvirtRpcError } from './rpc/index.js';
import { diskTarget, type VmSpec } from './spec.js';
import { childElements, parseXml } from './xml.js';
import { lastStopReason, removeQemuLog, stopReasonOf } from './stop-reason.js';

/** Where libvirt's system QEMU driver keeps `<domain>.pid`. */
export const QEMU_RUN_DIR = '/run/libvirt/qemu';

const KINDS: Record<VirtError['kind'], ErrorKind> = { 'not-found': 'not-found', connection: 'unavailable', other: 'internal' };

/** A libvirt error as vmlet's (same message, the libvirt error as its cause); anything else unchanged. */
export function vmError(err: unknown): unknown {
  return err instanceof VirtError ? new VmletError(KINDS[err.kind], err.message, { cause: err }) : err;
}

async function wrap<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw vmError(err);
  }
}

const isNotFound = (err: unknown) => err instanceof VirtError && err.kind === 'not-found';

export const vmState = (s: DomainState): VmState => (DomainState[s]?.toLowerCase() as VmState | undefined) ?? 'nostate';

const vmSample = (d: DomainSample): VmSample => ({ ...d, state: vmState(d.state) });

export class LibvirtDriver implements VmDriver {
  constructor(
    private readonly lv: Libvirt,
    private readonly runDir = QEMU_RUN_DIR,
  ) {}

  async define(spec: VmSpec): Promise<void> {
    await wrap(this.lv.defineDomain(renderDomainXml(spec)));
  }

  start(name: string, o: { paused?: boolean } = {}): Promise<void> {
    return wrap(this.lv.startDomain(name, o.paused));
  }

  resume(name: string): Promise<void> {
    return wrap(this.lv.resumeDomain(name));
  }

  shutdown(name: string): Promise<void> {
    return wrap(this.lv.shutdownDomain(name));
  }

  async destroy(name: string): Promise<void> {
    await this.lv.destroyDomain(name).catch((err: unknown) => {
      if (isNotFound(err) || /not running/i.test((err as Error).message)) return;
      throw vmError(err);
    });
  }

  /** Undefines, gone or not; a domain with NVRAM is first redefined without it (see stripNvram). Then its QEMU log goes. */
  async remove(name: string): Promise<void> {
    try {
      const xml = await this.lv.domainXML(name);
      const withoutNvram = stripNvram(xml);
      if (withoutNvram !== xml) await this.lv.defineDomain(withoutNvram);
      await this.lv.undefineDomain(name).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    } catch (err) {
      if (!isNotFound(err)) throw vmError(err);
    }
    await removeQemuLog(name);
  }

  async state(name: string): Promise<VmState> {
    try {
      return vmState((await this.lv.domainInfo(name)).state);
    } catch (err) {
      if (isNotFound(err)) return 'absent';
      throw vmError(err);
    }
  }

  async sample(name: string): Promise<VmSample> {
    return vmSample(await wrap(this.lv.domainSample(name)));
  }

  async sampleActive(names?: ReadonlySet<string>): Promise<VmSample[]> {
    return (await wrap(this.lv.activeDomainInfo(names))).map(vmSample);
  }

  activeNames(names?: ReadonlySet<string>): Promise<Set<string>> {
    return wrap(this.lv.activeDomainNames(names));
  }

  async allNames(): Promise<string[]> {
    return (await wrap(this.lv.listDomains())).map((d) => d.name);
  }

  definition(name: string): Promise<string> {
    return wrap(this.lv.domainXML(name));
  }

  async consolePty(name: string): Promise<string | undefined> {
    return serialPtyPath(await this.definition(name));
  }

  qemuPid(name: string): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(`${this.runDir}/${name}.pid`, 'utf8'), 10);
      return Number.isInteger(pid) && pid > 1 ? pid : undefined;
    } catch {
      return undefined; // not running (libvirt removes the file when QEMU exits)
    }
  }

  exitReason(name: string): Promise<VmExitReason | undefined> {
    return lastStopReason(name);
  }

  vcpuCounts(name: string, live: boolean): Promise<{ current: number; max: number }> {
    return wrap(this.lv.vcpuCounts(name, live));
  }

  setVcpus(name: string, n: number, live: boolean): Promise<void> {
    return wrap(this.lv.setVcpus(name, n, live));
  }

  setMemory(name: string, kib: number, live: boolean): Promise<void> {
    return wrap(this.lv.setMemory(name, kib, live));
  }

  setScheduler(name: string, s: VmScheduler, live: boolean): Promise<void> {
    const p = {
      ...(s.shares !== undefined ? { shares: s.shares } : {}),
      ...(s.periodUs !== undefined ? { globalPeriod: s.periodUs } : {}),
      ...(s.quotaUs !== undefined ? { globalQuota: s.quotaUs } : {}),
    };
    return wrap(this.lv.setCpuScheduler(name, p, live));
  }

  pinCpus(name: string, vcpus: number, cpus: readonly number[], live: boolean): Promise<void> {
    return wrap(this.lv.pinCpus(name, vcpus, cpus, live));
  }

  /**
   * Hotplug goes over a connection of its own, opened for the call: it is rare (a CreateContainer
   * with a block volume in a sandboxed pod) and libvirt.ts's shared client has no device calls.
   * LIVE only: the disk belongs to this run of the VM, as the container using it does.
   */
  async attachDisk(name: string, disk: HotplugDisk): Promise<string> {
    return this.withRpc(`attach disk ${disk.serial} to ${name}`, async (rpc) => {
      const dom = await rpc.lookupDomain(name);
      const live = await rpc.getXMLDesc(dom);
      const used = new Set(liveDisks(live).map((d) => d.target));
      let target = '';
      for (let i = 0; !target || used.has(target); i++) target = diskTarget('virtio', i);
      const machine = /machine=['"]pc-i440fx|machine=['"]pc['"]/.test(live) ? 'pc' : 'q35';
      const xml = hotplugDiskXml({ path: disk.path, format: 'raw', bus: 'virtio', target, serial: disk.serial, block: true, ...(disk.readonly ? { readonly: true } : {}) }, machine);
      await rpc.attachDevice(dom, xml, AFFECT.LIVE);
      return target;
    });
  }

  async detachDisk(name: string, serial: string): Promise<void> {
    await this.withRpc(`detach disk ${serial} from ${name}`, async (rpc) => {
      let dom;
      try {
        dom = await rpc.lookupDomain(name);
      } catch (err) {
        if (err instanceof LibvirtRpcError && err.kind === 'not-found') return;
        throw err;
      }
      const disk = liveDisks(await rpc.getXMLDesc(dom)).find((d) => d.serial === serial);
      if (!disk) return;
      // libvirt finds the disk by its target; the rest of the element is not compared.
      await rpc.detachDevice(dom, `<disk type='block' device='disk'><target dev='${disk.target}' bus='virtio'/></disk>`, AFFECT.LIVE).catch((err: unknown) => {
        if (err instanceof LibvirtRpcError && /not running|no target device/i.test(err.message)) return;
        throw err;
      });
    });
  }

  private async withRpc<T>(what: string, fn: (rpc: LibvirtRpc) => Promise<T>): Promise<T> {
    const rpc = new LibvirtRpc({ uri: this.lv.uri });
    try {
      return await fn(rpc);
    } catch (err) {
      if (err instanceof LibvirtRpcError) throw new VmletError(err.kind === 'not-found' ? 'not-found' : err.kind === 'connection' ? 'unavailable' : 'internal', `${what}: ${err.message}`, { cause: err });
      throw err;
    } finally {
      await rpc.close().catch(() => undefined);
    }
  }

  onExit(listener: (name: string, reason: VmExitReason) => void): () => void {
    return this.lv.onLifecycle((e) => {
      const reason = stopReasonOf(e);
      if (reason !== undefined) listener(e.name, reason);
    });
  }

  onResync(listener: () => void): () => void {
    return this.lv.onReconnect(listener);
  }

  ready(): Promise<void> {
    return wrap(this.lv.eventsReady());
  }
}

/** The disks of a domain's XML: target and serial. */
function liveDisks(xml: string): Array<{ target: string; serial?: string }> {
  const out: Array<{ target: string; serial?: string }> = [];
  for (const domain of childElements(parseXml(xml), 'domain')) {
    for (const devices of childElements(domain, 'devices')) {
      for (const disk of childElements(devices, 'disk')) {
        const target = childElements(disk, 'target')[0]?.getAttribute('dev');
        const serial = childElements(disk, 'serial')[0]?.textContent ?? undefined;
        if (target) out.push({ target, ...(serial ? { serial } : {}) });
      }
    }
  }
  return out;
}
