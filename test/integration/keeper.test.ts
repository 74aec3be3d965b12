// node-install/keeper.sh, the restart policy it applies to libvirtd and vmlet on a node without
// systemd, with a stand-in daemon: a script that counts its runs and ends each as a plan says (a
// crash, a failure, a clean exit, or running until signalled). The stand-in is there because the
// policy needs a daemon to crash on cue, many times over; the real libvirtd under its keeper is
// killed -9 and comes back by itself in test/faults/libvirt-restart.test.ts, the real vmlet in
// test/integration/vmlet-service.test.ts.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const KEEPER = join(ROOT, 'node-install/keeper.sh');

/** A dir with the stand-in daemon and its plan: one word per run (segv, exit0, exit3, sleep, hup). */
function standIn(plan: string[]): { dir: string; runs: () => number; args: string[]; env: NodeJS.ProcessEnv } {
  const dir = tempDir('vmlet-keeper-');
  writeFileSync(join(dir, 'plan'), plan.join('\n') + '\n');
  writeFileSync(
    join(dir, 'libvirtd'),
    [
      '#!/bin/bash',
      `cd ${dir}`,
      'n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo $n > count',
      'case "$(sed -n "${n}p" plan)" in',
      '  segv) kill -SEGV $$ ;;',
      '  exit0) exit 0 ;;',
      '  exit3) exit 3 ;;',
      '  sleep) echo $$ > pid; exec sleep 60 ;;',
      "  hup) trap 'echo hup >> hups' HUP; echo $$ > pid; while :; do sleep 0.05; done ;;",
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(join(dir, 'libvirtd'), 0o755);
  const runs = () => (existsSync(join(dir, 'count')) ? Number(readFileSync(join(dir, 'count'), 'utf8')) : 0);
  // Restarts at once: the delays are the policy's, not what is tested here.
  return { dir, runs, args: [KEEPER, 'libvirtd', '--', join(dir, 'libvirtd')], env: { ...process.env, VMLET_KEEPER_MIN_DELAY: '0' } };
}

const keeper = (s: { args: string[]; env: NodeJS.ProcessEnv }) => spawnSync('bash', s.args, { env: s.env, encoding: 'utf8', timeout: 30_000 });

describe('keeper.sh', () => {
  it('starts libvirtd again after a crash and after a failure, and ends with a clean exit', () => {
    const s = standIn(['segv', 'exit3', 'exit0']);
    const r = keeper(s);
    expect(r.status).toBe(0);
    expect(s.runs()).toBe(3);
    expect(r.stderr).toMatch(/libvirtd killed by signal 11 after \d+s: starting it again in 0s/);
    expect(r.stderr).toMatch(/libvirtd exited with status 3 after \d+s: starting it again/);
    expect(r.stderr).toMatch(/libvirtd exited \(status 0\) after \d+s: stopped on purpose, not restarted/);
  });

  it('gives up after 5 deaths in a row within 10 s of their start (a libvirtd that cannot start)', () => {
    const s = standIn(Array.from({ length: 8 }, () => 'exit3'));
    const r = keeper(s);
    expect(r.status).toBe(1);
    expect(s.runs()).toBe(5);
    expect(r.stderr).toMatch(/the 5th time in a row within 10s of its start: giving up/);
  });

  it('on SIGTERM stops libvirtd and ends, without starting it again (stop-daemons.sh, tini forwarding a stop)', async () => {
    const s = standIn(['sleep', 'sleep']);
    const p = spawn('bash', s.args, { env: s.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const ended = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    await waitFor('the stand-in libvirtd to run', () => existsSync(join(s.dir, 'pid')), { timeoutMs: 10_000 });
    const pid = Number(readFileSync(join(s.dir, 'pid'), 'utf8'));
    p.kill('SIGTERM');
    expect(await ended).toBe(0);
    expect(s.runs()).toBe(1);
    expect(() => process.kill(pid, 0), 'the stand-in libvirtd is gone').toThrow();
    expect(stderr).toMatch(/stopped on purpose, not restarted/);
  });

  it("passes SIGHUP (libvirtd's reload) on to libvirtd and keeps running", async () => {
    const s = standIn(['hup', 'hup']);
    const p = spawn('bash', s.args, { env: s.env, stdio: 'ignore' });
    const ended = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    await waitFor('the stand-in libvirtd to run', () => existsSync(join(s.dir, 'pid')), { timeoutMs: 10_000 });
    p.kill('SIGHUP');
    await waitFor('the stand-in libvirtd to get the HUP', () => existsSync(join(s.dir, 'hups')), { timeoutMs: 10_000 });
    expect(p.exitCode).toBe(null);
    expect(s.runs()).toBe(1);
    p.kill('SIGTERM');
    expect(await ended).toBe(0);
    expect(s.runs()).toBe(1);
  });

  it('on SIGUSR1 restarts the daemon at once and keeps running (start-daemons.sh --restart-libvirtd)', async () => {
    const s = standIn(['sleep', 'sleep', 'sleep']);
    const p = spawn('bash', s.args, { env: { ...s.env, VMLET_KEEPER_MIN_DELAY: '30' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const ended = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    const ownPid = () => (existsSync(join(s.dir, 'pid')) ? readFileSync(join(s.dir, 'pid'), 'utf8').trim() : '');
    await waitFor('the first run', () => ownPid() !== '', { timeoutMs: 10_000 });
    const first = ownPid();
    p.kill('SIGUSR1');
    // At once: not after the restart delay (30 s here) a death would wait.
    await waitFor('the second run', () => s.runs() === 2 && ownPid() !== first, { timeoutMs: 10_000 });
    expect(() => process.kill(Number(first), 0), 'the first run is gone').toThrow();
    expect(p.exitCode).toBe(null);
    expect(stderr).toMatch(/libvirtd exited \(status 143\) after \d+s: restarted as asked \(SIGUSR1\)/);
    p.kill('SIGTERM');
    expect(await ended).toBe(0);
    expect(s.runs()).toBe(2);
  });

  it('writes each run\'s pid to --pidfile, the one running now after a restart', async () => {
    const s = standIn(['sleep', 'sleep', 'sleep']);
    const pidfile = join(s.dir, 'keeper-wrote.pid');
    const p = spawn('bash', [KEEPER, 'vmlet', '--pidfile', pidfile, '--', ...s.args.slice(3)], { env: s.env, stdio: 'ignore' });
    const ended = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    const ownPid = () => (existsSync(join(s.dir, 'pid')) ? readFileSync(join(s.dir, 'pid'), 'utf8').trim() : '');
    const written = () => (existsSync(pidfile) ? readFileSync(pidfile, 'utf8').trim() : '');
    await waitFor('the first run, its pid written by it and by the keeper', () => ownPid() !== '' && ownPid() === written(), { timeoutMs: 10_000 });
    const first = written();
    process.kill(Number(first), 'SIGKILL');
    await waitFor('the second run, its pid written by it and by the keeper', () => s.runs() === 2 && ownPid() !== first && ownPid() === written(), { timeoutMs: 10_000 });
    p.kill('SIGTERM');
    expect(await ended).toBe(0);
    expect(s.runs()).toBe(2);
  });

  it('refuses a command line without NAME -- CMD (exit 2, usage)', () => {
    for (const args of [[], ['vmlet'], ['vmlet', '--pidfile'], ['vmlet', '--bogus', '--', 'true'], ['vmlet', '--']]) {
      const r = spawnSync('bash', [KEEPER, ...args], { encoding: 'utf8', timeout: 10_000 });
      expect({ args, status: r.status, usage: r.stderr.includes('usage: keeper.sh NAME') }).toEqual({ args, status: 2, usage: true });
    }
  });
});
