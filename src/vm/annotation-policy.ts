// Which pod and container annotations a runtime handler's pods may use (Kata's
// `enable_annotations`): those that take host resources the kubelet did not account for, or that
// the operator decides for the node, are refused unless config `allowedAnnotations.<handler>`
// allows them. The default (nothing allowed) is safe. docs/annotations-policy.md has the table.
// Pure: called after annotations.ts has parsed the values (a bad value is refused there first),
// at RunPodSandbox for the pod's annotations and at CreateContainer for the container's.
import { invalidArgument } from '../errors.js';
import { findAnnotation, type AnnotationSets, type Found } from './annotation-lookup.js';
import { ANNOTATIONS, CFS_DEFAULT_PERIOD, int64, NODE_DEFAULTS, VIRTLET_ALIASES, type ResourceLimits, type Resources, type SettingName } from './annotations.js';
import { parseQuantityBytes } from './quantity.js';

/**
 * Refused whatever their value (nothing the kubelet sends bounds them), with why. Everything else
 * vmlet reads is allowed by default; see the doc for the reasons of each.
 */
export const GATED: Partial<Record<SettingName, string>> = {
  hugepages: "it backs guest memory with the host's reserved hugepages, a pool shared by the node and outside the pod's memory limit",
  cpuModel: "it overrides the CPU the node's operator exposes to guests (a named model can ask for features the host lacks, emulated at the host's cost)",
  machine: 'it changes the device model QEMU emulates (pc brings legacy ISA/IDE devices, the usual place of guest-to-host escapes)',
  ioThreads: "it adds host threads (QEMU's I/O threads poll before they sleep) beyond the vCPUs the pod's CPU limit became",
  vnc: 'it adds an emulated VGA adapter the guest drives (emulated display devices are a known place of guest-to-host escapes, e.g. CVE-2016-3710 in QEMU\'s VGA)',
};

/**
 * Refused only above what the pod's resources give the VM without them (container limit, else
 * the sandbox's, else the node default): lowering is always allowed, raising needs the operator.
 */
export const BOUNDED = {
  vcpus: { by: 'vcpus', why: "vCPUs beyond the pod's CPU limit, which the scheduler placed the pod by" },
  memory: { by: 'memory', why: "guest memory beyond the pod's memory limit, which the scheduler placed the pod by" },
  // The guest is given max-memory and the balloon, which the guest's own driver inflates, holds it
  // lower: a guest without a balloon driver keeps it all. max-vcpus is not bounded: absent vCPUs
  // cost nothing and are plugged in only for a resize the kubelet asks for (podvm-boot.ts does the same).
  maxMemory: { by: 'memory', why: "guest memory beyond the pod's memory limit (the guest holds max-memory unless its balloon driver gives it back)" },
} as const satisfies Partial<Record<SettingName, { by: 'vcpus' | 'memory'; why: string }>>;

/** The config's patterns for one handler: names, 'prefix*' or '*'. */
export type AllowList = readonly string[];

export function allowListFor(allowed: Readonly<Record<string, readonly string[]>>, handler: string): AllowList {
  return allowed[handler] ?? [];
}

const matches = (pattern: string, name: string) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern);

/** Allowed when a pattern matches the annotation as written or its vmlet.io/ name (a Virtlet alias follows it). */
export function isAllowed(list: AllowList, setting: SettingName, key: string): boolean {
  return list.some((p) => matches(p, key) || matches(p, ANNOTATIONS[setting]));
}

const namesOf = (setting: SettingName): string[] => {
  const alias = VIRTLET_ALIASES[setting];
  return alias ? [ANNOTATIONS[setting], alias] : [ANNOTATIONS[setting]];
};

function refuse(f: Found, setting: SettingName, handler: string, what: string): never {
  const name = ANNOTATIONS[setting];
  const written = f.key === name ? f.key : `${f.key} (${name})`;
  throw invalidArgument(
    `${f.source.replace(f.key, written)} is not allowed for runtime handler ${JSON.stringify(handler)}: ${what}; ` +
      `the node's operator can allow it with config allowedAnnotations.${handler}: ["${name}"]`,
  );
}

const MiB = 1 << 20;

/**
 * What the resources give the VM without any annotation, by annotations.ts's order and rounding
 * (container limit, else the sandbox's, else the default; whole vCPUs and MiB), and where from.
 * A unit test holds it equal to parseVmSettings without annotations.
 */
export function givenByResources(r: Resources): { vcpus: number; memoryMiB: number; vcpusFrom: string; memoryFrom: string } {
  const scopes: Array<[ResourceLimits | null | undefined, string]> = [
    [r.containerResources, "the container's CPU limit"],
    [r.sandboxResources, "the pod's CPU limit"],
  ];
  let vcpus = r.defaults.vcpus;
  let vcpusFrom = 'the node default (no CPU limit)';
  for (const [res, what] of scopes) {
    const quota = int64(res?.cpu_quota);
    if (!quota) continue;
    vcpus = Math.ceil(quota / (int64(res?.cpu_period) || CFS_DEFAULT_PERIOD));
    vcpusFrom = what;
    break;
  }
  let memoryMiB = r.defaults.memoryMiB;
  let memoryFrom = 'the node default (no memory limit)';
  for (const [res, what] of scopes) {
    const bytes = int64(res?.memory_limit_in_bytes);
    if (!bytes) continue;
    memoryMiB = Math.ceil(bytes / MiB);
    memoryFrom = what.replace('CPU', 'memory');
    break;
  }
  return { vcpus, memoryMiB, vcpusFrom, memoryFrom };
}

/** A bounded annotation's value (already validated by annotations.ts) in vCPUs or MiB. */
const amount = (by: 'vcpus' | 'memory', f: Found) => (by === 'vcpus' ? Number(f.value) : Math.ceil(parseQuantityBytes(f.value) / MiB));

/**
 * The one check: `named` is the set whose gated annotations are judged by name (those the verb
 * brings: the pod's at RunPodSandbox, the container's at CreateContainer); the bounded ones are
 * judged where they win (either set) against the resources known at this verb.
 */
function check(list: AllowList, handler: string, sets: AnnotationSets, named: 'pod' | 'container', r: Resources): void {
  const scoped: AnnotationSets = named === 'pod' ? { container: {}, pod: sets.pod } : { container: sets.container, pod: {} };
  for (const [setting, why] of Object.entries(GATED) as Array<[SettingName, string]>) {
    const f = findAnnotation(scoped, namesOf(setting));
    if (f && !isAllowed(list, setting, f.key)) refuse(f, setting, handler, why);
  }
  const given = givenByResources(r);
  for (const [setting, { by, why }] of Object.entries(BOUNDED) as Array<[keyof typeof BOUNDED, (typeof BOUNDED)[keyof typeof BOUNDED]]>) {
    const f = findAnnotation(sets, namesOf(setting));
    if (!f || isAllowed(list, setting, f.key)) continue;
    const asked = amount(by, f);
    const limit = by === 'vcpus' ? given.vcpus : given.memoryMiB;
    if (asked <= limit) continue;
    const unit = by === 'vcpus' ? 'vCPUs' : 'MiB';
    refuse(f, setting, handler, `${JSON.stringify(f.value)} is ${asked} ${unit}, above the ${limit} ${unit} of ${by === 'vcpus' ? given.vcpusFrom : given.memoryFrom}: ${why}`);
  }
}

export interface PodPolicyInput {
  allowed: Readonly<Record<string, readonly string[]>>;
  handler: string;
  annotations: Record<string, string>;
  /** The pod's linux.resources (the kubelet sends the sum of its containers' limits). */
  sandboxResources: ResourceLimits | null | undefined;
}

/** RunPodSandbox: the pod's annotations, before anything is made; InvalidArgument names the annotation and the config key. */
export function checkPodAnnotations(i: PodPolicyInput): void {
  const r: Resources = { containerResources: null, sandboxResources: i.sandboxResources ?? null, defaults: NODE_DEFAULTS };
  check(allowListFor(i.allowed, i.handler), i.handler, { container: {}, pod: i.annotations }, 'pod', r);
}

export interface ContainerPolicyInput {
  allowed: Readonly<Record<string, readonly string[]>>;
  handler: string;
  podAnnotations: Record<string, string>;
  containerAnnotations: Record<string, string>;
  containerResources: ResourceLimits | null | undefined;
  sandboxResources: ResourceLimits | null | undefined;
}

/**
 * CreateContainer of a VM-image pod: the container's annotations by name, and vCPUs and memory
 * (from either set) against the container's limits, known only now.
 */
export function checkContainerAnnotations(i: ContainerPolicyInput): void {
  const r: Resources = { containerResources: i.containerResources ?? null, sandboxResources: i.sandboxResources ?? null, defaults: NODE_DEFAULTS };
  check(allowListFor(i.allowed, i.handler), i.handler, { container: i.containerAnnotations, pod: i.podAnnotations }, 'container', r);
}
