// A pull's progress, as an operator sees it: vmlet's log reports bytes, rate and ETA every few
// seconds, and `vmlet pull` draws it (a bar on a terminal, lines otherwise) and prints the image
// id. The registry sits behind a front that sends at ~3 MiB/s, as over a slow link, so the
// 16 MiB kernel-boot test image takes seconds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MAIN, startVmlet, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, testImages, type TestRegistry } from '../helpers/registry.js';
import { startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.js';

const RATE = 3 * 1024 * 1024;
let reg: TestRegistry;
let slow: SlowProxy;
/** In front of the same registry, it flips a byte of the containerdisk-raw layer. */
let bad: SlowProxy;
let v: VmletProcess;

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:v1');
  await pushImage(reg, 'containerdisk', 'vmlet/containerdisk:v1');
  await pushImage(reg, 'containerdisk-raw', 'vmlet/raw:v1'); // pulled by no other test here: its blobs are not in the store yet
  slow = await startSlowProxy(reg.url, RATE);
  const rawLayer = testImages()['containerdisk-raw'].layers[0]!.digest;
  bad = await startSlowProxy(reg.url, RATE * 4, { corrupt: (path) => path.endsWith(`/blobs/${rawLayer}`) });
  v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}", "${slow.host}", "${bad.host}"]\n  mirrors:\n    docker.io: ["${slow.url}"]\n` });
});

afterAll(async () => {
  await v?.stop();
  await slow?.stop();
  await bad?.stop();
  await reg?.stop();
});

const progressLogs = (image: string) =>
  v.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'pull progress' && e.image === image);

describe('pull progress', () => {
  it('vmlet pull without a terminal prints progress lines, the log reports bytes, rate and ETA, stdout the image id', async () => {
    const image = 'docker.io/vmlet/kernelboot:v1';
    const total = testImages().kernelboot.layers.reduce((a, l) => a + l.size, 0);
    const r = await execa('node', [MAIN, 'pull', '--socket', v.socket, image], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(testImages().kernelboot.configDigest);

    // The CLI: at least two bar lines, percentages that never go back, and the byte total.
    const bars = r.stderr.split('\n').filter((l) => l.startsWith('['));
    expect(bars.length, r.stderr).toBeGreaterThanOrEqual(2);
    const pcts = bars.map((l) => Number(/\]\s+(\d+)%/.exec(l)![1]));
    expect([...pcts].sort((a, b) => a - b)).toEqual(pcts);
    expect(bars.at(-1)).toMatch(/\/\d+\.\d MiB /);

    // The log: a line while the layer was still coming, with a rate near the link's and an ETA.
    const logs = progressLogs(image);
    expect(logs.length, v.logLines.slice(-20).join('\n')).toBeGreaterThanOrEqual(1);
    const mid = logs.find((e) => (e.bytesDone as number) < total);
    expect(mid).toBeDefined();
    expect(mid).toMatchObject({ phase: 'downloading', bytesTotal: total, layersTotal: 1 });
    expect(mid!.bytesPerSecond as number).toBeGreaterThan(RATE / 4);
    expect(mid!.bytesPerSecond as number).toBeLessThan(RATE * 2);
    expect(mid!.etaSeconds as number).toBeGreaterThan(0);
    const done = v.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'image pulled' && e.image === image);
    expect(done?.bytesPerSecond as number).toBeGreaterThan(0);
    // The layer was read (gunzip, tar walk, diff_id) as it came, not once more after it was stored.
    expect(done?.layersReadLive).toBe(1);
  });

  it('a layer corrupted on its way, read as it came: the pull fails on its digest, keeps nothing; the good one pulls after', async () => {
    const img = testImages()['containerdisk-raw'];
    const layer = img.layers[0]!.digest;
    const pull = (image: string) => new Promise<{ err?: Error; ref?: string }>((resolve) => v.image.PullImage({ image: { image } }, (e: Error | null, r?: { image_ref: string }) => resolve(e ? { err: e } : { ref: r!.image_ref })));
    const { err } = await pull(`${bad.host}/vmlet/raw:v1`);
    expect(err?.message).toContain(`blob ${layer}: content digest is sha256:`);
    expect(err?.message).toContain('corrupted or tampered');
    // Nothing half-written: no download or scan file left in the store's tmp dir.
    expect(readdirSync(join(v.stateDir, 'images', 'tmp'))).toEqual([]);
    expect(await pull(`${reg.host}/vmlet/raw:v1`)).toEqual({ ref: img.configDigest });
  });

  it('on a terminal, vmlet pull redraws one bar line in place', async () => {
    const image = 'docker.io/vmlet/containerdisk:v1';
    // script(1) gives the CLI a pseudo-terminal, as an operator's shell would.
    const cmd = ['node', MAIN, 'pull', '--socket', v.socket, image].map((a) => `'${a}'`).join(' ');
    const r = await execa('script', ['-qefc', cmd, '/dev/null'], { reject: false });
    expect(r.exitCode, r.stdout).toBe(0);
    const redraws = r.stdout.split('\r').filter((s) => s.startsWith('['));
    expect(redraws.length, r.stdout).toBeGreaterThanOrEqual(2);
    expect(r.stdout).toContain('\x1b[K');
    expect(r.stdout).toContain(testImages().containerdisk.configDigest);
  });

  it('refuses a bad reference with INVALID_ARGUMENT and says when no server answers', async () => {
    const bad = await execa('node', [MAIN, 'pull', '--socket', v.socket, 'Not A Reference'], { reject: false });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^vmlet pull Not A Reference: INVALID_ARGUMENT: /);
    const gone = await execa('node', [MAIN, 'pull', '--socket', `${v.dir}/nobody.sock`, 'docker.io/vmlet/kernelboot:v1'], { reject: false });
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toMatch(/UNAVAILABLE: .*\(is vmlet serving on .*nobody\.sock\?\)/);
    const none = await execa('node', [MAIN, 'pull', '--socket', v.socket], { reject: false });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain('vmlet pull: missing argument');
  });
});
