// Versions reported by the CRI Version call.
import { readFileSync } from 'node:fs';

/** CRI Version.version: the version of the kubelet-facing API vmlet implements. */
export const CRI_VERSION = '0.1.0';
export const RUNTIME_NAME = 'vmlet';
export const RUNTIME_API_VERSION = 'v1';

/** vmlet's own version, from package.json (one level above dist/ and src/). */
export const RUNTIME_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
