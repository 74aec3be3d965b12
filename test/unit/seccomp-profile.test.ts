// Which seccomp filter a sandboxed container gets from the CRI's fields.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seccompFor } from '../../src/guest/seccomp-profile.js';
import { tempDir } from '../helpers/vmlet.js';

const dir = tempDir('vmlet-seccomp-');
const good = join(dir, 'block-chmod.json');
writeFileSync(good, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }] }));
const notJson = join(dir, 'bad.json');
writeFileSync(notJson, '{nope');
const noAction = join(dir, 'empty.json');
writeFileSync(noAction, '{}');

describe('seccomp choice', () => {
  it('is unconfined by default and for privileged containers, the runtime default or a node profile when asked', async () => {
    expect(await seccompFor(null, false)).toEqual({ kind: 'unconfined' });
    expect(await seccompFor({ seccomp: { profile_type: 'RuntimeDefault' } }, true)).toEqual({ kind: 'unconfined' });
    expect(await seccompFor({ seccomp: { profile_type: 'RuntimeDefault' } }, false)).toEqual({ kind: 'runtime-default' });
    expect(await seccompFor({ seccomp_profile_path: 'runtime/default' }, false)).toEqual({ kind: 'runtime-default' });
    const local = await seccompFor({ seccomp: { profile_type: 'Localhost', localhost_ref: good } }, false);
    expect(local).toMatchObject({ kind: 'localhost', profile: { defaultAction: 'SCMP_ACT_ALLOW' } });
    expect(await seccompFor({ seccomp_profile_path: `localhost/${good}` }, false)).toEqual(local);
  });
  it('refuses what it cannot use, naming the field', async () => {
    await expect(seccompFor({ seccomp: { profile_type: 'Localhost', localhost_ref: 'rel.json' } }, false)).rejects.toThrow(/seccomp: the Localhost profile "rel.json" must be an absolute path/);
    await expect(seccompFor({ seccomp: { profile_type: 'Localhost', localhost_ref: join(dir, 'missing.json') } }, false)).rejects.toThrow(/cannot read the seccomp profile/);
    await expect(seccompFor({ seccomp: { profile_type: 'Localhost', localhost_ref: notJson } }, false)).rejects.toThrow(/is not JSON/);
    await expect(seccompFor({ seccomp: { profile_type: 'Localhost', localhost_ref: noAction } }, false)).rejects.toThrow(/has no defaultAction/);
    await expect(seccompFor({ seccomp_profile_path: 'sometimes' }, false)).rejects.toThrow(/seccomp_profile_path "sometimes": allowed/);
    await expect(seccompFor({ seccomp: { profile_type: 'Strict' } }, false)).rejects.toThrow(/profile_type "Strict"/);
  });
});
