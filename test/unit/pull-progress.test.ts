// PullProgress (rate over the last seconds, ETA, layers done, what subscribers hear) and the
// progress line `vmlet pull` draws, on a clock the test moves.
import { describe, expect, it } from 'vitest';
import { PullProgress, formatBytes, formatEta, progressLine, type PullSnapshot } from '../../src/image/pull-progress.js';
import { parseCreds } from '../../src/pull-cli.js';

function clocked() {
  let t = 1_000;
  const p = new PullProgress('docker.io/library/x:1', () => t);
  return { p, tick: (ms: number) => (t += ms) };
}

describe('PullProgress', () => {
  it('sums the layers and counts finished ones', () => {
    const { p, tick } = clocked();
    expect(p.snapshot()).toMatchObject({ phase: 'resolving', bytesTotal: 0, layersTotal: 0, rate: 0 });
    p.setLayers([{ digest: 'a', size: 100 }, { digest: 'b', size: 300 }]);
    tick(200);
    p.layer('a', 100);
    p.layer('b', 50);
    expect(p.snapshot()).toMatchObject({ phase: 'downloading', bytesDone: 150, bytesTotal: 400, layersDone: 1, layersTotal: 2 });
    p.layer('b', 40); // a smaller count (a retried stream) never takes progress back
    p.layer('b', 10_000); // nor does a count past the size push it over
    expect(p.snapshot()).toMatchObject({ bytesDone: 400, layersDone: 2 });
    p.layer('unknown', 5);
    expect(p.snapshot().bytesDone).toBe(400);
  });

  it('takes the rate over the last five seconds and the ETA from it', () => {
    const { p, tick } = clocked();
    p.setLayers([{ digest: 'a', size: 100_000_000 }]);
    // 10 s at 1 MB/s, then 5 s at 4 MB/s: the rate follows the recent speed, not the average.
    let done = 0;
    for (let i = 0; i < 100; i++) {
      tick(100);
      p.layer('a', (done += 100_000));
    }
    for (let i = 0; i < 50; i++) {
      tick(100);
      p.layer('a', (done += 400_000));
    }
    const s = p.snapshot();
    expect(s.rate).toBeGreaterThan(3_500_000);
    expect(s.rate).toBeLessThanOrEqual(4_100_000);
    expect(s.etaSeconds!).toBeCloseTo((100_000_000 - done) / s.rate, 5);
    expect(s.elapsedMs).toBe(15_000);
  });

  it('has no rate or ETA before a second sample, and no ETA when nothing is left', () => {
    const { p, tick } = clocked();
    p.setLayers([{ digest: 'a', size: 10 }]);
    expect(p.snapshot().etaSeconds).toBeUndefined();
    tick(1000);
    p.layer('a', 10);
    expect(p.snapshot().rate).toBeGreaterThan(0);
    expect(p.snapshot().etaSeconds).toBeUndefined();
  });

  it('tells subscribers of each phase and at most one sample per 100 ms, until they leave', () => {
    const { p, tick } = clocked();
    const heard: PullSnapshot[] = [];
    const off = p.subscribe((s) => heard.push(s));
    p.setLayers([{ digest: 'a', size: 1000 }]);
    for (let i = 1; i <= 10; i++) {
      tick(10);
      p.layer('a', i * 10); // 100 ms in all: one more sample
    }
    p.setPhase('preparing');
    expect(heard.map((s) => s.phase)).toEqual(['downloading', 'downloading', 'preparing']);
    off();
    p.setPhase('done');
    expect(heard).toHaveLength(3);
  });
});

describe('the progress line', () => {
  const base: PullSnapshot = { image: 'x', phase: 'downloading', bytesDone: 0, bytesTotal: 0, layersDone: 0, layersTotal: 1, rate: 0, elapsedMs: 0 };
  it('draws a bar, percent, bytes, rate and ETA', () => {
    const line = progressLine({ ...base, bytesDone: 3 * 1024 * 1024, bytesTotal: 12 * 1024 * 1024, rate: 1.5 * 1024 * 1024, etaSeconds: 6 }, 20);
    expect(line).toBe('[#####...............]  25% 3.0 MiB/12.0 MiB 1.5 MiB/s ETA 6s');
  });
  it('says resolving before the manifest and preparing after the download', () => {
    expect(progressLine({ ...base, phase: 'resolving' })).toBe('x: resolving');
    expect(progressLine({ ...base, phase: 'preparing', bytesDone: 10, bytesTotal: 10 }, 4)).toBe('[####] 100% 10 B/10 B preparing');
  });
  it('formats sizes and times', () => {
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatEta(undefined)).toBe('--');
    expect(formatEta(58.2)).toBe('59s');
    expect(formatEta(59.2)).toBe('1m00s');
    expect(formatEta(61)).toBe('1m01s');
    expect(formatEta(3 * 3600 + 120)).toBe('3h02m');
  });
  it('reads --creds as crictl does', () => {
    expect(parseCreds(undefined)).toEqual({});
    expect(parseCreds('u:p:q')).toEqual({ username: 'u', password: 'p:q' });
    expect(parseCreds('u')).toEqual({ username: 'u' });
    expect(() => parseCreds(':p')).toThrow('--creds must be USER[:PASSWORD]');
  });
});
