// vmlet's stop signal (src/util/stop-signal.ts) in a real node process with an execa child in
// flight: execa's signal-exit, loaded then, raises a signal again when it sees no listener but its
// own, which ended `vmlet serve` by SIGINT in the middle of its stop (seen once in the landing CI).
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const SCRIPT = `
import { execa } from 'execa';
import { stopSignal } from ${JSON.stringify(join(ROOT, 'dist/util/stop-signal.js'))};
let child;
const log = { info: (o, msg) => {
  console.log(msg, o.signal);
  if (msg === 'already stopping') { child.kill('SIGKILL'); process.exit(0); }
} };
stopSignal(log).then((s) => console.log('stopping', s));
// Started after the stop signal's listeners, as vmlet's children are: signal-exit's come last.
child = execa('sleep', ['60']); // cleanup on (execa's default): signal-exit is loaded
child.catch(() => undefined);
console.log('ready');
setInterval(() => undefined, 1000); // the stop goes on until the second signal
`;

describe('stop signal', () => {
  it('SIGINT with an execa child running: handled, not fatal; a second signal is logged', async () => {
    const proc = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    try {
      await waitFor('the script to be ready', () => out.includes('ready\n') || undefined, { timeoutMs: 10_000, intervalMs: 10 });
      proc.kill('SIGINT');
      await waitFor('the stop to begin', () => out.includes('stopping SIGINT') || proc.exitCode !== null || proc.signalCode !== null || undefined, { timeoutMs: 10_000, intervalMs: 10 });
      expect(proc.signalCode, out).toBeNull();
      proc.kill('SIGTERM');
      expect(await exited, out).toEqual({ code: 0, signal: null });
      expect(out).toContain('already stopping SIGTERM');
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });
});
