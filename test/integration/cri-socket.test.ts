// The CRI socket's permissions against other users of the node: the real `vmlet serve`, a watcher
// that stats the path as fast as it can from before vmlet starts (so it sees the socket's first
// state, not the one after start-up), and clients run as other users with setpriv (uid 65534,
// `nobody`, with and without the socket's group).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { call, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';
import { bindDirOf, resolveGroup } from '../../src/cri/socket.js';
import type { VersionResponse__Output } from '../../src/gen/runtime/v1/VersionResponse.js';

const NOGROUP = 65534; // /etc/group's nogroup: the configured socketGroup below
const OTHER_GID = 65533; // a gid no file here belongs to

// Prints {"ready":1} once it has seen the path absent, then stats it in a tight loop and prints
// the first state it finds, with every other entry it saw appear in the socket's directory.
const WATCHER = `
import os, sys, json, stat
path = sys.argv[1]; d = os.path.dirname(path)
seen = {}; misses = 0
while True:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        misses += 1
        if misses == 1: print(json.dumps({"ready": 1}), flush=True)
        try:
            for n in os.listdir(d):
                if n != os.path.basename(path) and n not in seen:
                    try: seen[n] = os.lstat(os.path.join(d, n)).st_mode
                    except FileNotFoundError: pass
        except FileNotFoundError: pass
        continue
    print(json.dumps({"mode": st.st_mode, "gid": st.st_gid, "uid": st.st_uid, "misses": misses, "seen": seen}), flush=True)
    break
`;

interface FirstSight {
  mode: number;
  gid: number;
  uid: number;
  misses: number;
  seen: Record<string, number>;
}

/** Connects to the socket as uid 65534 with the given gid and groups; the errno name, or 'connected' with what the server sent back. */
async function connectAs(socket: string, gid: number, groups: number[] = []): Promise<string> {
  // After connect, the HTTP/2 preface and an empty SETTINGS: gRPC's server answers with its SETTINGS (type 4).
  const py = `
import socket, sys, errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(errno.errorcode[e.errno]); sys.exit(0)
s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0,0,0,4,0,0,0,0,0]))
h = s.recv(9)
print("connected, frame type %d" % h[3])
`;
  const groupArgs = groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups'];
  // The system python: a python3 found on root's PATH may sit where uid 65534 cannot reach.
  const r = await execa('setpriv', ['--reuid=65534', `--regid=${gid}`, ...groupArgs, '/usr/bin/python3', '-c', py, socket], { reject: false });
  if (r.exitCode !== 0) throw new Error(`client failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('CRI socket permissions (socketGroup: nogroup)', () => {
  let v: VmletProcess;
  let first: FirstSight;
  let socket: string;

  beforeAll(async () => {
    const dir = tempDir('vmlet-sock-');
    chmodSync(dir, 0o711); // mkdtemp makes it 0700: let the other users reach what vmlet makes inside
    socket = join(dir, 'run', 'vmlet.sock');
    const watcher = spawn('python3', ['-c', WATCHER, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    watcher.stdout.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
    try {
      await waitFor('the watcher to see no socket yet', () => lines.length > 0, { timeoutMs: 10_000 });
      v = await startVmlet({ socket, config: 'socketGroup: nogroup\n' });
      first = JSON.parse(await waitFor('the watcher to see the socket', () => lines[1], { timeoutMs: 10_000 })) as FirstSight;
    } finally {
      watcher.kill();
    }
  });

  afterAll(async () => {
    await v?.stop();
  });

  it('the socket is mode 0660 and of the configured group from the moment it appears', () => {
    expect(first.misses).toBeGreaterThan(0); // the watcher was looking before it existed
    expect((first.mode & 0o170000) === 0o140000).toBe(true); // a socket
    expect((first.mode & 0o7777).toString(8)).toBe('660');
    expect(first.gid).toBe(NOGROUP);
    expect(first.uid).toBe(process.getuid!());
    const st = statSync(socket);
    expect([(st.mode & 0o7777).toString(8), st.gid]).toEqual(['660', NOGROUP]);
  });

  it('is bound in a private directory: whatever else appeared next to it was mode 0700, and is gone', () => {
    for (const [name, mode] of Object.entries(first.seen)) {
      expect(name).toBe('.vmlet.sock.bind');
      expect((mode & 0o7777).toString(8)).toBe('700');
    }
    expect(readdirSync(join(socket, '..'))).toEqual(['vmlet.sock']);
  });

  it('its directory, made by vmlet, is mode 0711: others pass through, cannot list it', () => {
    expect((statSync(join(socket, '..')).mode & 0o7777).toString(8)).toBe('711');
  });

  it('a process of another user, not in the group, cannot connect (EACCES)', async () => {
    expect(await connectAs(socket, OTHER_GID)).toBe('EACCES');
  });

  it('a process of another user in the group connects and gets gRPC answers (primary or supplementary group)', async () => {
    expect(await connectAs(socket, NOGROUP)).toBe('connected, frame type 4');
    expect(await connectAs(socket, OTHER_GID, [NOGROUP])).toBe('connected, frame type 4');
    const res = await call<object, VersionResponse__Output>(v.runtime, 'Version', {});
    expect(res.runtime_name).toBe('vmlet');
  });
});

describe('CRI socket: default group, leftovers, refusals', () => {
  it('is of group root (gid 0) by default, and only root connects', async () => {
    const dir = tempDir('vmlet-sock-');
    chmodSync(dir, 0o711);
    const v = await startVmlet({ socket: join(dir, 'run', 'vmlet.sock') });
    try {
      const st = statSync(v.socket);
      expect([(st.mode & 0o7777).toString(8), st.gid]).toEqual(['660', 0]);
      expect(await connectAs(v.socket, NOGROUP)).toBe('EACCES');
    } finally {
      await v.stop();
    }
  });

  it("removes the bind directory a crashed run left (its dead socket inside) and starts", async () => {
    const dir = tempDir('vmlet-sock-');
    const socket = join(dir, 'run', 'vmlet.sock');
    const left = bindDirOf(socket);
    mkdirSync(left, { recursive: true, mode: 0o700 });
    chmodSync(left, 0o700);
    // A dead socket, as a run killed between bind and rename leaves it.
    await execa('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', join(left, 's')]);
    expect(lstatSync(join(left, 's')).isSocket()).toBe(true);
    const v = await startVmlet({ socket });
    try {
      expect(existsSync(left)).toBe(false);
      expect((await call<object, VersionResponse__Output>(v.runtime, 'Version', {})).runtime_name).toBe('vmlet');
    } finally {
      await v.stop();
    }
    expect(readdirSync(join(dir, 'run'))).toEqual([]); // stop removed the socket, nothing else is left
  });

  it('refuses to start when the bind directory path holds something not its own, and leaves it', async () => {
    const dir = tempDir('vmlet-sock-');
    const socket = join(dir, 'run', 'vmlet.sock');
    mkdirSync(join(dir, 'run'));
    writeFileSync(bindDirOf(socket), 'not vmlet\'s');
    await expect(startVmlet({ socket })).rejects.toThrow(/\.vmlet\.sock\.bind exists and is not a bind directory left by vmlet; refusing to remove it/);
    expect(existsSync(bindDirOf(socket))).toBe(true);
    expect(existsSync(socket)).toBe(false);
  });

  it('refuses an unknown socketGroup, naming the key', async () => {
    await expect(startVmlet({ config: 'socketGroup: no-such-group-here\n' })).rejects.toThrow(/config socketGroup \\"no-such-group-here\\" is not a group of this host/);
  });

  it('refuses a socket path too long to bind (Node would truncate it silently)', async () => {
    const dir = tempDir('vmlet-sock-');
    const socket = join(dir, 'x'.repeat(100 - dir.length), 'vmlet.sock');
    await expect(startVmlet({ socket })).rejects.toThrow(/is too long: vmlet binds it as .* and a unix socket path has at most 107/);
  });

  it('resolves a group name from /etc/group, and takes a gid as it is', async () => {
    expect(await resolveGroup('nogroup')).toBe(NOGROUP);
    expect(await resolveGroup('root')).toBe(0);
    expect(await resolveGroup(4242)).toBe(4242);
    const file = join(tempDir('vmlet-group-'), 'group');
    writeFileSync(file, 'kube:x:991:alice\nbad line\n');
    expect(await resolveGroup('kube', file)).toBe(991);
    await expect(resolveGroup('kub', file)).rejects.toThrow(/socketGroup "kub" is not a group of this host/);
  });
});
