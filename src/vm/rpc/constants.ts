// libvirt's public enums and flag bits that vmlet passes or reads (include/libvirt/libvirt-domain.h,
// libvirt 9.0). Like the procedure numbers they are ABI: libvirt never renumbers them.

/** virDomainState: what getInfo, getState and the bulk stats' state.state report. */
export enum DomainState {
  NOSTATE = 0,
  RUNNING = 1,
  BLOCKED = 2,
  PAUSED = 3,
  SHUTDOWN = 4,
  SHUTOFF = 5,
  CRASHED = 6,
  PMSUSPENDED = 7,
}

/** virDomainModificationImpact (VIR_DOMAIN_AFFECT_*): which definition a change applies to. */
export const AFFECT = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
/** VIR_DOMAIN_VCPU_MAXIMUM / VIR_DOMAIN_MEM_MAXIMUM: the maximum rather than the current value. */
export const VCPU_MAXIMUM = 4;
export const MEM_MAXIMUM = 4;

/**
 * virDomainStatsTypes (VIR_DOMAIN_STATS_*): the groups getAllDomainStats reports; 0 asks for
 * every group the driver has. The QEMU driver (libvirt 9.0, QEMU 7.2) answers STATE, INTERFACE,
 * PERF and MEMORY from its own records and the host; for CPU_TOTAL, VCPU and BALLOON it takes a
 * query job on each domain in turn and asks its QEMU over the monitor (query-stats; query-balloon
 * and qom-get), which costs ~1-2 ms per domain and group under TCG and waits for a busy or stuck
 * domain (see NOWAIT). Only the monitor's share is left out when the job cannot be had: cpu.time,
 * vcpu.current and balloon.current/maximum come from libvirtd's records either way.
 */
export const DOMAIN_STATS = {
  STATE: 1 << 0,
  CPU_TOTAL: 1 << 1,
  BALLOON: 1 << 2,
  VCPU: 1 << 3,
  INTERFACE: 1 << 4,
  BLOCK: 1 << 5,
  PERF: 1 << 6,
  IOTHREAD: 1 << 7,
  MEMORY: 1 << 8,
  DIRTYRATE: 1 << 9,
  VM: 1 << 10,
} as const;

/**
 * virConnectListAllDomainsFlags (VIR_CONNECT_LIST_DOMAINS_*): the filters of listAllDomains;
 * 0 lists every domain, like ACTIVE | INACTIVE.
 */
export const LIST_DOMAINS = {
  ACTIVE: 1 << 0,
  INACTIVE: 1 << 1,
  PERSISTENT: 1 << 2,
  TRANSIENT: 1 << 3,
  RUNNING: 1 << 4,
  PAUSED: 1 << 5,
  SHUTOFF: 1 << 6,
  OTHER: 1 << 7,
} as const;

/**
 * virConnectGetAllDomainStatsFlags (VIR_CONNECT_GET_ALL_DOMAINS_STATS_*): the list filters are
 * VIR_CONNECT_LIST_DOMAINS_*'s. ENFORCE_STATS is bit 31: `x | ENFORCE_STATS` is a negative
 * number in JavaScript, which getAllDomainStats takes as the same 32 bits.
 */
export const GET_ALL_DOMAINS_STATS = {
  ...LIST_DOMAINS,
  /**
   * Skip (rather than wait up to 30 s for) the stats that need a domain's job while another job
   * holds it. A free job is still taken: a stuck QEMU still stalls the call.
   */
  NOWAIT: 1 << 29,
  BACKING: 1 << 30,
  /** Fail, rather than leave a group out, when the driver cannot report a requested group. */
  ENFORCE_STATS: 0x8000_0000,
} as const;

/**
 * virDomainUndefineFlagsValues (VIR_DOMAIN_UNDEFINE_*). Without MANAGED_SAVE, *_METADATA or one of
 * the NVRAM pair, libvirt refuses to undefine a domain that has a managed save image, snapshots,
 * checkpoints or an NVRAM file; KEEP_NVRAM leaves the file for its owner to delete.
 */
export const UNDEFINE = {
  MANAGED_SAVE: 1 << 0,
  SNAPSHOTS_METADATA: 1 << 1,
  NVRAM: 1 << 2,
  KEEP_NVRAM: 1 << 3,
  CHECKPOINTS_METADATA: 1 << 4,
  TPM: 1 << 5,
  KEEP_TPM: 1 << 6,
} as const;

/** virDomainCreateFlags (VIR_DOMAIN_START_*). */
export const START = { PAUSED: 1 << 0 } as const;

/** virDomainEventID: which kind of event a callback registration asks for. */
export const EVENT_ID = { LIFECYCLE: 0 } as const;

/** virDomainEventType: the `event` of a lifecycle event, by number. */
export const LIFECYCLE_EVENTS = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'] as const;
export type LifecycleEventName = (typeof LIFECYCLE_EVENTS)[number];

/** virDomainEventStoppedDetailType: the `detail` of a 'stopped' event. */
export const STOPPED_DETAIL = { SHUTDOWN: 0, DESTROYED: 1, CRASHED: 2, MIGRATED: 3, SAVED: 4, FAILED: 5, FROM_SNAPSHOT: 6 } as const;
