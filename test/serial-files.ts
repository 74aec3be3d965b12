// Which integration test files run alone. The others run two at a time (vitest.config.ts): on
// this project's 2-core machine that takes the suite from ~20 to ~15 minutes, since a test spends
// much of its time waiting on a guest, a DHCP lease or a timeout. A file runs alone when it looks
// at node-wide state another file changes meanwhile (every netns, every libvirt domain, every
// process), makes networks of its own on fixed bridges and subnets (hostPort rules, iptables,
// CNI leases), or runs a containerd on the helper's fixed bridge. NODE_WIDE is what marks such a
// file: test/unit/serial-files.test.ts fails when a file that matches it is not listed here.

export const SERIAL_FILES = [
  'test/integration/annotation-policy.test.ts',
  'test/integration/boot.test.ts',
  'test/integration/crash-consistency.test.ts',
  'test/integration/cri-fuzz.test.ts',
  'test/integration/libvirt-rpc.test.ts',
  'test/integration/net-matrix.test.ts',
  'test/integration/net-pod.test.ts',
  'test/integration/pod-cgroup-drivers.test.ts',
  'test/integration/pod-network.test.ts',
  'test/integration/pods.test.ts',
  'test/integration/proxy-images.test.ts',
  'test/integration/proxy.test.ts',
  'test/integration/stream-tls.test.ts',
  'test/integration/vmlet-service.test.ts',
  'test/integration/vnc.test.ts',
  'test/integration/volumes-vm.test.ts',
];

/** Source text that makes a test file node-wide (see above). */
export const NODE_WIDE = /\/run\/netns|listDomains\(\)|'list', '--all'|pgrep|host_port|hostPort|'ip', \[|execa\('ip'|spawnSync\('ip'|startContainerd|BRIDGE|subnet:|iptables|\/var\/lib\/cni/;
