// Hostile containerDisks pushed to the loopback registry and pulled through vmlet's CRI socket:
// a qcow2 made by qemu-img with a backing file (relative, absolute host path, json:) is refused
// with InvalidArgument naming the file, and nothing of it stays in the store. The images are
// built here (one layer holding disk/disk.qcow2) and pushed with the registry's own HTTP API
// (oci-push.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { pushLayers, tarOf } from '../helpers/oci-push.js';
import type { PullImageResponse__Output } from '../../src/gen/runtime/v1/PullImageResponse.js';

let reg: TestRegistry;
let v: VmletProcess;
const work = tempDir('vmlet-hostile-images-');

beforeAll(async () => {
  reg = await startRegistry();
  v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\n` });
});

afterAll(async () => {
  await v?.stop();
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Pushes an OCI image whose one layer holds `disk/disk.qcow2` = `disk`; returns its reference. */
const pushContainerDisk = async (repo: string, disk: Buffer) => (await pushLayers(reg, repo, [tarOf([{ path: 'disk/disk.qcow2', mtime: new Date(0), data: disk }])])).reference;

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
const pull = (image: string) => call<object, PullImageResponse__Output>(v.image, 'PullImage', { image: { image } });
const disks = () => (existsSync(join(v.stateDir, 'images', 'disks')) ? readdirSync(join(v.stateDir, 'images', 'disks')) : []);
const tmp = () => readdirSync(join(v.stateDir, 'images', 'tmp'));

describe('a containerDisk with a backing file', () => {
  it.each<[string, string[], string]>([
    ['relative', ['-b', 'base.qcow2', '-F', 'qcow2'], 'base.qcow2'],
    ['absolute', ['-b', '/etc/shadow', '-F', 'raw', '-u'], '/etc/shadow'],
    ['json:', ['-b', 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}', '-F', 'raw', '-u'], 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}'],
  ])('is refused when the backing file is %s, naming it, and nothing stays in the store', async (kind, opts, named) => {
    if (!existsSync(join(work, 'base.qcow2'))) qemuImg('create', '-q', '-f', 'qcow2', 'base.qcow2', '1M');
    const file = `backed-${kind.replace(/\W/g, '')}.qcow2`;
    qemuImg('create', '-q', '-f', 'qcow2', ...opts, file, '1M');
    const ref = await pushContainerDisk(`vmlet/backed-${kind.replace(/\W/g, '')}`, readFileSync(join(work, file)));
    const before = disks();
    const err = await failure(pull(ref));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain(`refers to ${named}; a containerDisk must be self-contained`);
    expect(disks()).toEqual(before);
    expect(tmp()).toEqual([]);
  });

  it('while the same disk without one is pulled', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', 'plain.qcow2', '1M');
    const ref = await pushContainerDisk('vmlet/plain', readFileSync(join(work, 'plain.qcow2')));
    expect((await pull(ref)).image_ref).toMatch(/^sha256:/);
    expect(disks().some((d) => d.endsWith('.qcow2'))).toBe(true);
  });
});
