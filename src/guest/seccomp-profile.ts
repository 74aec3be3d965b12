// Which seccomp filter a sandboxed container gets, from the CRI (the `seccomp` field, or the older
// `seccomp_profile_path`): none (unconfined, and always for a privileged container, as containerd
// does), the runtime's default (built by the agent from the container's capabilities), or a
// profile file on the node (Localhost), read here and handed to the agent as its JSON.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { invalidArgument, VmletError } from '../errors.js';

export type SeccompChoice = { kind: 'unconfined' } | { kind: 'runtime-default' } | { kind: 'localhost'; profile: Record<string, unknown> };

/** A profile file larger than this is refused (Docker's default profile is ~20 KiB). */
const MAX_PROFILE_BYTES = 1 << 20;

export interface SeccompFields {
  seccomp?: { profile_type?: string; localhost_ref?: string } | null;
  seccomp_profile_path?: string;
}

export async function seccompFor(sc: SeccompFields | null | undefined, privileged: boolean): Promise<SeccompChoice> {
  if (privileged || !sc) return { kind: 'unconfined' };
  let type = sc.seccomp?.profile_type ?? '';
  let ref = sc.seccomp?.localhost_ref ?? '';
  let field = 'config.linux.security_context.seccomp';
  if (!sc.seccomp && sc.seccomp_profile_path) {
    field = 'config.linux.security_context.seccomp_profile_path';
    const p = sc.seccomp_profile_path;
    if (p === 'runtime/default' || p === 'docker/default') type = 'RuntimeDefault';
    else if (p === 'unconfined') type = 'Unconfined';
    else if (p.startsWith('localhost/')) [type, ref] = ['Localhost', p.slice('localhost/'.length)];
    else throw invalidArgument(`${field} ${JSON.stringify(p)}: allowed runtime/default, docker/default, unconfined or localhost/<absolute path>`);
  }
  if (type === '' || type === 'Unconfined') return { kind: 'unconfined' };
  if (type === 'RuntimeDefault') return { kind: 'runtime-default' };
  if (type !== 'Localhost') throw invalidArgument(`${field}.profile_type ${JSON.stringify(type)}: allowed RuntimeDefault, Unconfined or Localhost`);
  if (!isAbsolute(ref)) throw invalidArgument(`${field}: the Localhost profile ${JSON.stringify(ref)} must be an absolute path on the node`);
  let text: string;
  try {
    if ((await stat(ref)).size > MAX_PROFILE_BYTES) throw invalidArgument(`${field}: profile ${ref} is larger than ${MAX_PROFILE_BYTES} bytes`);
    text = await readFile(ref, 'utf8');
  } catch (err) {
    if (err instanceof VmletError) throw err;
    throw invalidArgument(`${field}: cannot read the seccomp profile ${ref}: ${(err as Error).message}`);
  }
  let profile: unknown;
  try {
    profile = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${field}: seccomp profile ${ref} is not JSON: ${(err as Error).message}`);
  }
  if (typeof profile !== 'object' || profile === null || Array.isArray(profile) || typeof (profile as { defaultAction?: unknown }).defaultAction !== 'string') {
    throw invalidArgument(`${field}: seccomp profile ${ref} has no defaultAction (a Docker/OCI seccomp profile is expected)`);
  }
  return { kind: 'localhost', profile: profile as Record<string, unknown> };
}
