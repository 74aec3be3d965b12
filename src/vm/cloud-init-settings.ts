// The cloud-init part of the VM's settings: the user-data, meta-data, SSH key and network-config
// annotations (vmlet.io/ names and Virtlet's), read under the one precedence rule of
// annotation-lookup.ts and validated here, so cloud-init.ts builds the seed from parsed values.
// User documents are parsed as YAML 1.1, the dialect cloud-init's PyYAML reads, and kept as
// editable documents: their comments, formats (0644 stays octal), anchors and tags survive.
import { Document, isMap, isScalar, isSeq, parseDocument, YAMLMap } from 'yaml';
import { invalidArgument } from '../errors.js';
import { findAnnotation, oneOf, winningSet, type AnnotationSets } from './annotation-lookup.js';

export const CLOUD_INIT_ANNOTATION = {
  /** A `#cloud-config` YAML document or a `#!` script. */
  userData: 'vmlet.io/user-data',
  /** A YAML mapping merged into meta-data (instance-id stays the pod uid). */
  metaData: 'vmlet.io/meta-data',
  /**
   * The pod's alone (its network is made at RunPodSandbox). `both` (default): the seed's
   * network-config and the pod's DHCP/RA server give the same addresses; `static`:
   * network-config only, no DHCP server for the pod; `dhcp`: DHCP/RA only.
   */
  networkConfig: 'vmlet.io/network-config',
  /** Newline-separated OpenSSH public keys for the image's default user. */
  sshAuthorizedKeys: 'vmlet.io/ssh-authorized-keys',
} as const;

export const CLOUD_INIT_ANNOTATIONS: readonly string[] = Object.values(CLOUD_INIT_ANNOTATION);

/** Virtlet's names, accepted so Virtlet pods move over unchanged. */
export const CLOUD_INIT_VIRTLET_ALIASES = {
  userData: 'VirtletCloudInitUserData', // cloud-config YAML, `#cloud-config` header optional
  userDataScript: 'VirtletCloudInitUserDataScript', // a `#!` script
  metaData: 'VirtletCloudInitMetaData',
  sshKeys: 'VirtletSSHKeys',
} as const;

export const NETWORK_MODES = ['both', 'static', 'dhcp'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** Per annotation, in UTF-8 bytes (Kubernetes allows 256 KiB for all annotations together). */
export const ANNOTATION_BYTES = 256 * 1024;

export const YAML_VERSION = '1.1' as const;

export interface CloudInitSettings {
  /** The user's cloud-config (a YAML mapping) and the annotation it came from. */
  config?: { doc: Document; key: string };
  /** The user's `#!` scripts, in order, each with its annotation. */
  scripts: Array<{ text: string; key: string }>;
  /** Keys to merge into meta-data (a YAML mapping) and the annotation they came from. */
  metaData?: { doc: Document; key: string };
  /** OpenSSH public keys, one a line as written. */
  sshAuthorizedKeys: string[];
  networkMode: NetworkMode;
}

const CLOUD_CONFIG = /^#cloud-config[ \t]*(?:\r?\n|$)/;
// Key types OpenSSH accepts (plain, certificates, FIDO), then base64: a line may start with options.
const SSH_KEY = /(?:^|\s)(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9-]+)(?:@openssh\.com)?\s+[A-Za-z0-9+/]+={0,3}(?:\s|$)/;
const EMPTY: Record<string, string> = {};

function checkSizes(sets: AnnotationSets): void {
  for (const annotations of [sets.container, sets.pod]) {
    for (const key of [...CLOUD_INIT_ANNOTATIONS, ...Object.values(CLOUD_INIT_VIRTLET_ALIASES)]) {
      const value = annotations[key];
      if (value === undefined) continue;
      const n = Buffer.byteLength(value);
      if (n > ANNOTATION_BYTES) {
        throw invalidArgument(`annotation ${key} is ${n} bytes: allowed at most ${ANNOTATION_BYTES / 1024} KiB (${ANNOTATION_BYTES} bytes)`);
      }
    }
  }
}

/** A YAML mapping from an annotation, as an editable document; blank → an empty mapping. */
function parseMapping(key: string, text: string, what: string): Document {
  const doc: Document = parseDocument(text, { version: YAML_VERSION, prettyErrors: true });
  const err = doc.errors[0];
  if (err) {
    const pos = err.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : 'unknown position';
    const msg = (err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw invalidArgument(`annotation ${key} is not valid YAML: ${where}: ${msg}`);
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    doc.contents = new YAMLMap();
  }
  if (!isMap(doc.contents)) {
    const got = isSeq(doc.contents) ? 'a list' : isScalar(doc.contents) ? `a scalar (${JSON.stringify(String(doc.contents.value)).slice(0, 40)})` : 'not a mapping';
    throw invalidArgument(`annotation ${key} must be ${what} (a YAML mapping of keys to values), but the document is ${got}`);
  }
  return doc;
}

/** The pod's mode; a container may repeat it but not change it: the pod network already exists. */
function networkMode(sets: AnnotationSets, sources: Record<string, string>): NetworkMode {
  const key = CLOUD_INIT_ANNOTATION.networkConfig;
  const onPod = findAnnotation({ container: EMPTY, pod: sets.pod }, [key]);
  const mode = onPod ? oneOf(onPod, NETWORK_MODES) : 'both';
  sources.networkConfig = onPod?.source ?? 'default';
  const onContainer = findAnnotation({ container: sets.container, pod: EMPTY }, [key]);
  if (onContainer && oneOf(onContainer, NETWORK_MODES) !== mode) {
    throw invalidArgument(
      `container annotation ${key}=${JSON.stringify(onContainer.value)} differs from the pod's ${JSON.stringify(mode)} (${sources.networkConfig}): the pod's network is made at RunPodSandbox from the pod's annotation; allowed: the pod's value, or set it on the pod`,
    );
  }
  return mode;
}

/** One user-data annotation: `#cloud-config` YAML, or a `#!` script; Virtlet's YAML may omit the header. */
function classify(out: CloudInitSettings, key: string, value: string, headerOptional: boolean): void {
  const text = value.trimStart();
  if (text === '') return;
  if (text.startsWith('#!')) {
    out.scripts.push({ text, key });
    return;
  }
  if (!CLOUD_CONFIG.test(text) && !headerOptional) {
    throw invalidArgument(
      `annotation ${key} must start with "#cloud-config" (a cloud-config YAML document) or "#!" (a script): other cloud-init user-data formats are not supported`,
    );
  }
  out.config = { doc: parseMapping(key, value, 'a cloud-config document'), key };
}

/** vmlet.io/user-data replaces both Virtlet user-data annotations of the same set; those two combine. */
function userData(out: CloudInitSettings, sets: AnnotationSets, sources: Record<string, string>): void {
  const { userData: own } = CLOUD_INIT_ANNOTATION;
  const { userData: vData, userDataScript: vScript } = CLOUD_INIT_VIRTLET_ALIASES;
  const set = winningSet(sets, [own, vData, vScript]);
  if (!set) return;
  const a = set.annotations;
  if (a[own] !== undefined) {
    sources.userData = `${set.scope} ${own}`;
    classify(out, own, a[own], false);
    return;
  }
  sources.userData = `${set.scope} ${[vData, vScript].filter((k) => a[k] !== undefined).join(' + ')}`;
  if (a[vData] !== undefined) classify(out, vData, a[vData], true);
  const script = a[vScript];
  if (script !== undefined && script.trim() !== '') {
    const text = script.trimStart();
    if (!text.startsWith('#!')) throw invalidArgument(`annotation ${vScript} must be a script starting with "#!" (e.g. #!/bin/sh)`);
    out.scripts.push({ text, key: vScript });
  }
}

function sshKeys(sets: AnnotationSets, sources: Record<string, string>): string[] {
  const src = findAnnotation(sets, [CLOUD_INIT_ANNOTATION.sshAuthorizedKeys, CLOUD_INIT_VIRTLET_ALIASES.sshKeys]);
  if (!src) return [];
  sources.sshKeys = src.source;
  const keys: string[] = [];
  src.value.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (/[\x00-\x1f\x7f]/.test(line) || !SSH_KEY.test(line)) {
      throw invalidArgument(
        `annotation ${src.key} line ${i + 1} is not an OpenSSH public key: allowed one key a line, "[options] <type> <base64> [comment]" with type ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, … (blank lines and # comments are skipped)`,
      );
    }
    keys.push(line);
  });
  return keys;
}

/** The cloud-init settings of a VM; each setting's source is added to `sources`. */
export function readCloudInit(sets: AnnotationSets, sources: Record<string, string>): CloudInitSettings {
  checkSizes(sets);
  const out: CloudInitSettings = { scripts: [], sshAuthorizedKeys: [], networkMode: networkMode(sets, sources) };
  const md = findAnnotation(sets, [CLOUD_INIT_ANNOTATION.metaData, CLOUD_INIT_VIRTLET_ALIASES.metaData]);
  if (md) {
    sources.metaData = md.source;
    out.metaData = { doc: parseMapping(md.key, md.value, 'cloud-init meta-data'), key: md.key };
  }
  userData(out, sets, sources);
  out.sshAuthorizedKeys = sshKeys(sets, sources);
  return out;
}
