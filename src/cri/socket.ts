// Prepares the unix socket path: parent dir created, a stale socket from a crashed run removed,
// a live one (another vmlet answering) refused. Never deletes something that is not a socket.
import { VmletError } from '../errors.js';
import { connect } from 'node:net';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

function answers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (alive: boolean) => {
      s.destroy();
      resolve(alive);
    };
    s.setTimeout(timeoutMs, () => done(true)); // accepted but silent: someone holds it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export async function prepareSocketPath(path: string): Promise<{ replacedStale: boolean }> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { replacedStale: false };
    throw err;
  }
  if (!st.isSocket()) throw new VmletError('failed-precondition', `${path} exists and is not a socket; refusing to replace it`);
  if (await answers(path)) {
    throw new VmletError('failed-precondition', `another process is already serving on ${path} (is vmlet already running?); stop it first`);
  }
  await unlink(path);
  return { replacedStale: true };
}
