// Image references, normalised the way Docker and containerd do: `busybox` →
// docker.io/library/busybox:latest, `host:5000/a/b@sha256:…`, `name:tag@sha256:…`.
import { invalidArgument } from '../errors.js';

export const DOCKER_HUB = 'docker.io';

export interface ImageRef {
  /** Registry as named in references: 'docker.io', '127.0.0.1:5000', 'quay.io'. */
  registry: string;
  /** Repository path within the registry: 'library/busybox'. */
  repository: string;
  /** Tag; 'latest' when neither tag nor digest is given. */
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/;

export function isDigest(s: string): boolean {
  return DIGEST.test(s);
}

/** Parses and normalises a reference; throws InvalidArgument naming what is wrong. */
export function parseReference(input: string): ImageRef {
  const bad = (why: string) => invalidArgument(`image reference ${JSON.stringify(input)} is invalid: ${why}`);
  if (!input || input !== input.trim()) throw bad('empty or surrounded by spaces');
  if (input.length > 4096) throw bad('longer than 4096 characters');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('digest must be sha256: followed by 64 lowercase hex digits');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad('tag may hold letters, digits, _ . - (up to 128, not starting with . or -)');
  }
  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    registry = first;
    parts.shift();
    if (!DOMAIN.test(registry)) throw bad(`registry host ${JSON.stringify(registry)} is not a valid host[:port]`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw bad('repository path components must be lowercase letters and digits separated by . _ __ or -');
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** `registry/repository` — the name part of a reference. */
export function repoName(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Fully qualified: docker.io/library/busybox:latest, or …@sha256:… when pinned by digest. */
export function formatReference(ref: ImageRef): string {
  return `${repoName(ref)}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The tag form kept in repo_tags (no digest), or undefined for digest-only references. */
export function tagReference(ref: ImageRef): string | undefined {
  return ref.tag ? `${repoName(ref)}:${ref.tag}` : undefined;
}
