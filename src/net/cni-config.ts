// Finds the node's CNI network the way libcni does: the lexically first *.conf, *.conflist or
// *.json in the config dir, and checks that every plugin it names exists in a plugin dir.
import { VmletError } from '../errors.js';
import { readFileSync, readdirSync } from 'node:fs';
import { findExecutable } from '../util/binaries.js';
import { join } from 'node:path';

export interface CniNetwork {
  file: string;
  name: string;
  cniVersion: string;
  /** Plugin types in chain order. */
  plugins: string[];
}

export type CniCheck =
  | { ok: true; network: CniNetwork; pluginPaths: Record<string, string> }
  | { ok: false; reason: 'NoCNIConfig' | 'InvalidCNIConfig' | 'CNIPluginMissing'; message: string; network?: CniNetwork };

/** The node's CNI config cannot be used: the pod network is not ready. */
const badConfig = (msg: string) => new VmletError('failed-precondition', msg);

const CONF_EXT = /\.(conf|conflist|json)$/;

/** Parses one CNI config file's text: a conflist, or a single-plugin .conf. */
export function parseCniConfig(file: string, text: string): CniNetwork {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw badConfig(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object') throw badConfig(`${file}: not a JSON object`);
  const name = typeof doc.name === 'string' ? doc.name : '';
  if (!name) throw badConfig(`${file}: missing "name"`);
  const cniVersion = typeof doc.cniVersion === 'string' ? doc.cniVersion : '';
  let plugins: string[];
  if (Array.isArray(doc.plugins)) {
    plugins = doc.plugins.map((p, i) => {
      const type = (p as { type?: unknown })?.type;
      if (typeof type !== 'string' || !type) throw badConfig(`${file}: plugins[${i}] has no "type"`);
      return type;
    });
    if (plugins.length === 0) throw badConfig(`${file}: "plugins" is empty`);
  } else if (typeof doc.type === 'string' && doc.type) {
    plugins = [doc.type];
  } else {
    throw badConfig(`${file}: neither "plugins" nor "type" is set`);
  }
  return { file, name, cniVersion, plugins };
}

export function findPlugin(type: string, binDirs: string[]): string | undefined {
  return findExecutable(type, binDirs);
}

export function checkCni(confDir: string, binDirs: string[]): CniCheck {
  let files: string[];
  try {
    files = readdirSync(confDir).filter((f) => CONF_EXT.test(f)).sort();
  } catch {
    files = [];
  }
  const first = files[0];
  if (first === undefined) {
    return { ok: false, reason: 'NoCNIConfig', message: `no CNI network config (*.conf, *.conflist, *.json) in ${confDir}` };
  }
  const file = join(confDir, first);
  let network: CniNetwork;
  try {
    network = parseCniConfig(file, readFileSync(file, 'utf8'));
  } catch (err) {
    return { ok: false, reason: 'InvalidCNIConfig', message: (err as Error).message };
  }
  const pluginPaths: Record<string, string> = {};
  const missing: string[] = [];
  for (const type of network.plugins) {
    const path = findPlugin(type, binDirs);
    if (path) pluginPaths[type] = path;
    else missing.push(type);
  }
  if (missing.length) {
    return {
      ok: false,
      reason: 'CNIPluginMissing',
      message: `CNI network "${network.name}" (${file}) needs plugin(s) ${missing.join(', ')}, not found in ${binDirs.join(', ')}`,
      network,
    };
  }
  return { ok: true, network, pluginPaths };
}
