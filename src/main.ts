#!/usr/bin/env node
// CLI entry: `vmlet serve`, `vmlet doctor`, `vmlet pull`, `vmlet vnc`, `vmlet version`.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type ConfigLayer } from './config.js';
import { createLogger } from './log.js';
import { doctorExitCode, formatCheck, runChecks } from './doctor.js';
import { serve } from './serve.js';
import { pullCommand } from './pull-cli.js';
import { RUNTIME_VERSION } from './version.js';
import { DEFAULT_LISTEN, runVnc, VncError } from './vnc.js';

const USAGE = `usage: vmlet <command> [flags]

commands:
  serve     run the CRI server on a unix socket
  doctor    check this node's prerequisites (exit 0 when vmlet can run VMs)
  pull IMAGE [--creds USER[:PASS]]
            pull an image into vmlet's store through the running server, with progress
  vnc POD   relay a VM-image pod's VNC display (annotation vmlet.io/vnc) to a local port;
            POD: pod id, id prefix, name or namespace/name (docs/vnc.md)
  version   print vmlet's version (also: vmlet --version)

flags (override VMLET_* env and the config file):
  --config PATH          config file (default /etc/vmlet/config.yaml)
  --socket PATH          CRI socket (default /run/vmlet/vmlet.sock)
  --state-dir DIR        state dir (default /var/lib/vmlet)
  --libvirt-uri URI      libvirt URI (default qemu:///system)
  --hypervisor MODE      auto | kvm | tcg
  --cgroup-driver D      auto | systemd | cgroupfs
  --cni-conf-dir DIR     CNI network config dir (default /etc/cni/net.d)
  --cni-bin-dir DIR      CNI plugin dir (repeatable; default /opt/cni/bin, /usr/lib/cni)
  --handler NAME         RuntimeClass handler served as VMs (repeatable; default vmlet)
  --downstream URI       CRI endpoint for pods of other handlers (e.g. unix:///run/containerd/containerd.sock)
  --log-level LEVEL      trace | debug | info | warn | error | fatal

vnc flags:
  --listen ADDR          HOST:PORT, [IPv6]:PORT or PORT to listen on (default ${DEFAULT_LISTEN}; port 0: any free one)
  --allow-remote         allow a --listen address that is not loopback (the display has no password)
`;

function flagsLayer(values: Record<string, string | string[] | boolean | undefined>): ConfigLayer & { config?: string } {
  const layer: ConfigLayer & { config?: string } = {
    config: values.config as string | undefined,
    socket: values.socket,
    stateDir: values['state-dir'],
    libvirtUri: values['libvirt-uri'],
    hypervisor: values.hypervisor,
    cgroupDriver: values['cgroup-driver'],
    logLevel: values['log-level'],
    handlers: values.handler,
    downstream: values.downstream,
  };
  const confDir = values['cni-conf-dir'];
  const binDirs = values['cni-bin-dir'];
  if (confDir !== undefined || binDirs !== undefined) layer.cni = { confDir, binDirs };
  return layer;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        'libvirt-uri': { type: 'string' },
        hypervisor: { type: 'string' },
        'cgroup-driver': { type: 'string' },
        'cni-conf-dir': { type: 'string' },
        'cni-bin-dir': { type: 'string', multiple: true },
        handler: { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        downstream: { type: 'string' },
        creds: { type: 'string' },
        listen: { type: 'string' },
        'allow-remote': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`vmlet: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.version && command === undefined) {
    process.stdout.write(`vmlet ${RUNTIME_VERSION}\n`);
    return 0;
  }
  if (parsed.values.help || command === 'help' || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && !parsed.values.help ? 2 : 0;
  }
  // vnc takes the pod, pull the image; the other commands take no argument.
  const [arg, ...extra] = command === 'vnc' || command === 'pull' ? rest : [undefined, ...rest];
  if (extra.length) {
    process.stderr.write(`vmlet: unexpected argument ${extra[0]}\n`);
    return 2;
  }
  if (command === 'vnc' && arg === undefined) {
    process.stderr.write(`vmlet vnc: which pod? usage: vmlet vnc POD [--listen ${DEFAULT_LISTEN}]\n`);
    return 2;
  }
  if (command === 'pull' && arg === undefined) {
    process.stderr.write(`vmlet pull: missing argument\n\n${USAGE}`);
    return 2;
  }
  if (command !== 'vnc' && (parsed.values.listen !== undefined || parsed.values['allow-remote'])) {
    process.stderr.write(`vmlet: --listen and --allow-remote are flags of vmlet vnc\n`);
    return 2;
  }
  if (command === 'version') {
    process.stdout.write(`vmlet ${RUNTIME_VERSION}\n`);
    return 0;
  }
  let loaded;
  try {
    loaded = loadConfig({ flags: flagsLayer(parsed.values) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`vmlet: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { config, file } = loaded;
  if (command === 'serve') {
    const log = createLogger(config.logLevel);
    const code = await serve(config, file, log);
    // Shutdown is complete (calls finished, socket gone): exit now rather than wait on idle
    // keep-alive sockets or timers. Logs are written synchronously, so nothing is lost.
    process.exit(code);
  }
  if (command === 'doctor') {
    // doctor talks to a person: keep the JSON log quiet unless asked.
    const log = createLogger(parsed.values['log-level'] ? config.logLevel : 'error');
    const results = await runChecks(config, log);
    for (const r of results) process.stdout.write(formatCheck(r) + '\n');
    const code = doctorExitCode(results);
    process.stdout.write(code === 0 ? 'vmlet can run VMs on this node.\n' : 'vmlet cannot run VMs on this node until the FAIL lines are fixed.\n');
    return code;
  }
  if (command === 'vnc') {
    // A person runs it: connection events at info only when asked for.
    const log = createLogger(parsed.values['log-level'] ? config.logLevel : 'warn');
    try {
      return await runVnc({ stateDir: config.stateDir, pod: arg!, listen: parsed.values.listen ?? DEFAULT_LISTEN, allowRemote: parsed.values['allow-remote'] ?? false }, log);
    } catch (err) {
      if (!(err instanceof VncError)) throw err;
      process.stderr.write(`vmlet vnc: ${err.message}\n`);
      return err.exitCode;
    }
  }
  if (command === 'pull') return pullCommand(config.socket, arg!, parsed.values.creds);
  process.stderr.write(`vmlet: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vmlet: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
