// User resolution for a container from the image's USER, the CRI security context and the
// image's /etc/passwd and /etc/group, and reading those files safely from a hostile rootfs.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseGroup, parsePasswd, readRootfsFile, resolveInRootfs, resolveUser, resolveUserFrom, type UserRequest } from '../../src/image/users.js';

const PASSWD = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1234:1234:app:/home/app:/bin/sh
web:x:33:33::/var/www:
broken:x:notanumber:1::/:
`;
const GROUP = `root:x:0:
daemon:x:1:
app:x:1234:app
web:x:33:
audio:x:29:app,web
video:x:44: web , app
staff:x:50:
`;
const passwd = parsePasswd(PASSWD);
const group = parseGroup(GROUP);
const resolve = (req: Partial<UserRequest>) => resolveUserFrom(passwd, group, { imageUser: '', ...req });

describe('parsing', () => {
  it('reads passwd and group entries, skipping comments and malformed ids', () => {
    expect(passwd.map((e) => e.name)).toEqual(['root', 'daemon', 'app', 'web']);
    expect(passwd[2]).toEqual({ name: 'app', uid: 1234, gid: 1234, home: '/home/app', shell: '/bin/sh' });
    expect(group.find((g) => g.name === 'video')).toEqual({ name: 'video', gid: 44, members: ['web', 'app'] });
  });
});

describe('resolveUserFrom', () => {
  it('runs as root when the image and the pod say nothing', () => {
    expect(resolve({})).toEqual({ uid: 0, gid: 0, groups: [0] });
  });
  it('takes the gid and groups of a user named by the image', () => {
    expect(resolve({ imageUser: 'app' })).toEqual({ uid: 1234, gid: 1234, groups: [1234, 29, 44] });
  });
  it('looks a numeric uid up for its gid; an unknown uid gets gid 0', () => {
    expect(resolve({ imageUser: '1234' })).toEqual({ uid: 1234, gid: 1234, groups: [1234, 29, 44] });
    expect(resolve({ imageUser: '4242' })).toEqual({ uid: 4242, gid: 0, groups: [0] });
  });
  it('accepts name:group, uid:gid and uid:groupname', () => {
    expect(resolve({ imageUser: 'app:staff' })).toEqual({ uid: 1234, gid: 50, groups: [50, 29, 44] });
    expect(resolve({ imageUser: '4242:4343' })).toEqual({ uid: 4242, gid: 4343, groups: [4343] });
    expect(resolve({ imageUser: '33:audio' })).toEqual({ uid: 33, gid: 29, groups: [29, 44] });
  });
  it('lets run_as_username, then run_as_user, override the image user; run_as_group overrides the group', () => {
    expect(resolve({ imageUser: 'app', runAsUser: 33 })).toEqual({ uid: 33, gid: 33, groups: [33, 29, 44] });
    expect(resolve({ imageUser: 'app', runAsUser: 0, runAsUsername: 'web' })).toEqual({ uid: 33, gid: 33, groups: [33, 29, 44] });
    expect(resolve({ imageUser: 'app:staff', runAsUser: 1234, runAsGroup: 7 })).toEqual({ uid: 1234, gid: 7, groups: [7, 29, 44] });
    expect(resolve({ imageUser: 'app', runAsGroup: 7 })).toEqual({ uid: 1234, gid: 7, groups: [7, 29, 44] });
  });
  it('adds supplemental groups, without duplicates', () => {
    expect(resolve({ imageUser: 'app', supplementalGroups: [44, 1000, 1234, 1000] })).toEqual({ uid: 1234, gid: 1234, groups: [1234, 29, 44, 1000] });
  });
  it('refuses unknown user and group names as containerd/runc do', () => {
    expect(() => resolve({ imageUser: 'nobody' })).toThrow('unable to find user nobody: no matching entries in passwd file');
    expect(() => resolve({ runAsUsername: 'ghost' })).toThrow('unable to find user ghost: no matching entries in passwd file');
    expect(() => resolve({ imageUser: 'app:nogroup' })).toThrow('unable to find group nogroup: no matching entries in group file');
    expect(() => resolveUserFrom(undefined, undefined, { imageUser: 'app' })).toThrow('unable to find user app');
    expect(() => resolve({ imageUser: 'a:b:c' })).toThrow('invalid USER value');
    expect(() => resolve({ runAsUser: -1 })).toThrow('run_as_user -1');
  });
  it('works with no passwd or group file for numeric ids', () => {
    expect(resolveUserFrom(undefined, undefined, { imageUser: '1000:1000', supplementalGroups: [5] })).toEqual({ uid: 1000, gid: 1000, groups: [1000, 5] });
  });
});

describe('reading /etc/passwd from a rootfs', () => {
  const dirs: string[] = [];
  const mk = () => {
    const d = mkdtempSync(join(tmpdir(), 'vmlet-users-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('reads the files of a plain rootfs', async () => {
    const root = mk();
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), PASSWD);
    writeFileSync(join(root, 'etc/group'), GROUP);
    expect(await resolveUser(root, { imageUser: 'app' })).toEqual({ uid: 1234, gid: 1234, groups: [1234, 29, 44] });
  });

  it('follows symlinks inside the rootfs only: absolute targets and ".." stop at its root', async () => {
    const outside = mk();
    writeFileSync(join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
    const root = mk();
    mkdirSync(join(root, 'real/etc'), { recursive: true });
    writeFileSync(join(root, 'real/etc/passwd'), PASSWD);
    symlinkSync('/real/etc', join(root, 'etc')); // absolute: relative to the rootfs
    expect(await resolveInRootfs(root, '/etc/passwd')).toBe(join(root, 'real/etc/passwd'));
    expect((await resolveUser(root, { imageUser: 'app' })).uid).toBe(1234);

    const hostile = mk();
    mkdirSync(join(hostile, 'etc'));
    // The host's own /etc/passwd (root exists there) and a file next to the rootfs.
    symlinkSync('/etc/passwd', join(hostile, 'etc/passwd'));
    symlinkSync(`../../../../../../../..${outside}/passwd`, join(hostile, 'etc/group'));
    expect(await resolveInRootfs(hostile, '/etc/passwd')).toBeUndefined();
    expect(await readRootfsFile(hostile, '/etc/passwd')).toBeUndefined();
    expect(await readRootfsFile(hostile, '/etc/group')).toBeUndefined();
    await expect(resolveUser(hostile, { imageUser: 'root' })).rejects.toThrow('unable to find user root');
    // A numeric user still works: gid 0, as for a uid the image does not list.
    expect(await resolveUser(hostile, { imageUser: '0' })).toEqual({ uid: 0, gid: 0, groups: [0] });
  });

  it('gives up on symlink loops, refuses non-regular and oversized files', async () => {
    const root = mk();
    mkdirSync(join(root, 'etc'));
    symlinkSync('group', join(root, 'etc/passwd'));
    symlinkSync('passwd', join(root, 'etc/group'));
    expect(await readRootfsFile(root, '/etc/passwd')).toBeUndefined();

    const fifo = mk();
    mkdirSync(join(fifo, 'etc'));
    execFileSync('mkfifo', [join(fifo, 'etc/passwd')]);
    await expect(readRootfsFile(fifo, '/etc/passwd')).rejects.toThrow('not a regular file');

    const big = mk();
    mkdirSync(join(big, 'etc'));
    writeFileSync(join(big, 'etc/passwd'), Buffer.alloc(1024 * 1024 + 1, 'a'));
    await expect(resolveUser(big, { imageUser: 'app' })).rejects.toThrow('at most 1048576 are read');
  });
});
