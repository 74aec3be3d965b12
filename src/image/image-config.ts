// What an OCI image config says about running the image as a container, and the rules that
// merge it with a CRI container config the way containerd does (so pods behave the same
// whichever runtime runs them).
import { VmletError } from '../errors.js';

/** The parts of an OCI image config blob vmlet reads. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    User?: string;
    Labels?: Record<string, string> | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    StopSignal?: string;
    ExposedPorts?: Record<string, unknown> | null;
  };
  rootfs?: { diff_ids?: string[] };
}

export interface RunConfig {
  entrypoint: string[];
  cmd: string[];
  /** KEY=value, as written in the image. */
  env: string[];
  workingDir: string;
  user: string;
  stopSignal?: string;
  /** e.g. "80/tcp", sorted. */
  exposedPorts: string[];
}

/** containerd's default when neither the image nor the pod sets PATH (oci.populateDefaultUnixSpec). */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []);

export function runConfigOf(config: ImageConfig): RunConfig {
  const c = config.config ?? {};
  return {
    entrypoint: strings(c.Entrypoint),
    cmd: strings(c.Cmd),
    env: strings(c.Env),
    workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    user: typeof c.User === 'string' ? c.User : '',
    ...(typeof c.StopSignal === 'string' && c.StopSignal ? { stopSignal: c.StopSignal } : {}),
    exposedPorts: c.ExposedPorts && typeof c.ExposedPorts === 'object' ? Object.keys(c.ExposedPorts).sort() : [],
  };
}

/**
 * The process argv (containerd's CRI rule, which is Kubernetes' command/args rule):
 * command set → command + args (the image's Entrypoint and Cmd are ignored);
 * command unset → Entrypoint + (args if set, else Cmd). An Entrypoint of [""] means none.
 */
export function containerArgs(image: RunConfig, command: string[], args: string[]): string[] {
  let argv: string[];
  if (command.length > 0) {
    argv = [...command, ...args];
  } else {
    const entrypoint = image.entrypoint.length === 1 && image.entrypoint[0] === '' ? [] : image.entrypoint;
    argv = [...entrypoint, ...(args.length > 0 ? args : image.cmd)];
  }
  if (argv.length === 0) throw new VmletError('invalid-argument', 'no command specified');
  return argv;
}

/**
 * The process environment, as containerd builds it (oci.WithEnv over the default spec): start
 * from the default PATH, then apply the image's Env and then the CRI envs in order; a key
 * already present is replaced where it stands, a new key is appended, and an image entry
 * without '=' unsets the key.
 */
export function containerEnv(imageEnv: string[], criEnvs: ReadonlyArray<{ key?: string; value?: string }>): string[] {
  const result: Array<string | undefined> = [DEFAULT_PATH_ENV];
  const at = new Map<string, number>([['PATH', 0]]);
  const overrides = [...imageEnv, ...criEnvs.map((e) => `${e.key ?? ''}=${e.value ?? ''}`)];
  for (const kv of overrides) {
    const eq = kv.indexOf('=');
    const key = eq < 0 ? kv : kv.slice(0, eq);
    const i = at.get(key);
    if (eq < 0) {
      if (i !== undefined) result[i] = undefined;
    } else if (i !== undefined) {
      result[i] = kv;
    } else {
      at.set(key, result.length);
      result.push(kv);
    }
  }
  return result.filter((e): e is string => e !== undefined);
}
