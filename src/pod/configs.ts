// What the kubelet asks for, as pod/ reads and keeps it: vmlet's own types of the CRI data model
// (PodSandboxConfig, ContainerConfig, LinuxContainerResources), not the generated wire types,
// which stay in cri/. Field names and value shapes are the wire's (snake_case, int64 as decimal
// strings, enums by name), so cri/ hands the decoded request over as it is and echoes stored
// parts back unchanged, and the JSON records on disk are what they always were. Each type names
// the fields vmlet reads or echoes; the rest of what the kubelet sent travels along untouched.

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface ContainerMetadata {
  name: string;
  attempt: number;
}

export interface KeyValue {
  key: string;
  value: string;
}

/** LinuxContainerResources: int64 fields as decimal strings, '0' (or '') when unset. */
export interface LinuxContainerResources {
  cpu_period: string;
  cpu_quota: string;
  cpu_shares: string;
  memory_limit_in_bytes: string;
  oom_score_adj: string;
  cpuset_cpus: string;
  cpuset_mems: string;
  hugepage_limits: { page_size: string; limit: string }[];
  unified: Record<string, string>;
  memory_swap_limit_in_bytes: string;
}

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';

/** Which namespaces the pod shares with the node (hostNetwork is `network: 'NODE'`). */
export interface NamespaceOption {
  network: NamespaceMode;
  pid: NamespaceMode;
  ipc: NamespaceMode;
  target_id: string;
}

export interface PortMapping {
  protocol: 'TCP' | 'UDP' | 'SCTP';
  container_port: number;
  host_port: number;
  host_ip: string;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata | null;
  hostname: string;
  log_directory: string;
  dns_config: { servers: string[]; searches: string[]; options: string[] } | null;
  port_mappings: PortMapping[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  linux: {
    cgroup_parent: string;
    security_context: { namespace_options: NamespaceOption | null } | null;
    overhead: LinuxContainerResources | null;
    resources: LinuxContainerResources | null;
    sysctls: Record<string, string>;
  } | null;
}

/** A CRI mount, as ContainerStatus echoes it back. */
export interface Mount {
  container_path: string;
  host_path: string;
  readonly: boolean;
  selinux_relabel: boolean;
  propagation: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
  recursive_read_only: boolean;
  image_sub_path: string;
}

export interface ContainerConfig {
  metadata: ContainerMetadata | null;
  image: { image: string; annotations: Record<string, string> } | null;
  command: string[];
  args: string[];
  envs: KeyValue[];
  mounts: Mount[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  log_path: string;
  working_dir: string;
  stdin: boolean;
  stdin_once: boolean;
  tty: boolean;
  linux: { resources: LinuxContainerResources | null; security_context: LinuxContainerSecurityContext | null } | null;
}

/** The parts of LinuxContainerSecurityContext a sandboxed container honours (int64 as decimal strings). */
export interface LinuxContainerSecurityContext {
  run_as_user: { value: string } | null;
  run_as_group: { value: string } | null;
  run_as_username: string;
  supplemental_groups: string[];
  readonly_rootfs: boolean;
  privileged: boolean;
  namespace_options: NamespaceOption | null;
  capabilities: { add_capabilities: string[]; drop_capabilities: string[] } | null;
  no_new_privs: boolean;
  masked_paths: string[];
  readonly_paths: string[];
  seccomp: { profile_type: string; localhost_ref: string } | null;
  seccomp_profile_path: string;
}
