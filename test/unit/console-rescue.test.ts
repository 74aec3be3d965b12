// vmlet reading a console pipe nobody reads, as after virtlogd's death, with a real process in
// QEMU's place: bash holding the write end of an anonymous pipe whose reader has exited (SIGPIPE
// ignored, as QEMU does). The pipe is found among its fds, taken over, and what bash writes lands
// in the console file after a line saying output was lost, rotated at virtlogd's 2 MiB into .0,
// .1, … with no byte lost or doubled.
// Against real QEMU and a killed virtlogd: test/faults/virtlogd-kill.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import pino from 'pino';
import { ConsoleRescue, consoleLogPipe, LOST_MARK, virtlogdPipes } from '../../src/stream/console-rescue.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const LINE = `${'x'.repeat(1023)}\n`;
let writer: ChildProcess | undefined;
let rescue: ConsoleRescue | undefined;

afterEach(() => {
  rescue?.stop();
  // The bash, its subshell and their sleeps: one process group (detached), ended by its leader's pid.
  if (writer?.pid) process.kill(-writer.pid, 'SIGKILL');
});

/**
 * A bash subshell in QEMU's place: its fd 7 is the write end of a pipe whose reader (`true`) has
 * exited (every other fd it inherited closed, as libvirt starts QEMU); it writes its pid to `pid`, and once `go` exists, `n` lines of 1 KiB to fd 7, then makes `done`.
 */
function orphanWriter(dir: string, n: number): ChildProcess {
  const script = `( exec 7>&1 >/dev/null; trap '' PIPE; for f in /proc/$BASHPID/fd/*; do n=\${f##*/}; if [ $n -gt 2 ] && [ $n -ne 7 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; echo $BASHPID > ${dir}/pid; while [ ! -e ${dir}/go ]; do sleep 0.02; done; for ((i = 0; i < ${n}; i++)); do printf '%s\\n' '${LINE.trimEnd()}' >&7; done; touch ${dir}/done; sleep 60 ) | true; sleep 60`;
  return spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
}

describe('console rescue', () => {
  it('finds the pipe, reads it in place of the gone reader, and rotates the file as virtlogd does', async () => {
    const dir = tempDir('vmlet-rescue-');
    const consoleLog = join(dir, 'console.log');
    // virtlogd's last line cut short: the mark goes on it, so it cannot read as a whole line.
    const head = 'before\nVMLET-TICK 4';
    writeFileSync(consoleLog, head);
    const n = 2600; // 2.5 MiB: one rotation
    writer = orphanWriter(dir, n);
    const pid = await waitFor('the writer', () => (existsSync(join(dir, 'pid')) ? Number(readFileSync(join(dir, 'pid'), 'utf8')) || undefined : undefined), { timeoutMs: 10_000, intervalMs: 20 });
    const found = await waitFor('the write-only pipe', () => consoleLogPipe(pid), { timeoutMs: 10_000, intervalMs: 20 });
    expect(found.pipe).toMatch(/^pipe:\[\d+\]$/);
    expect(virtlogdPipes(Date.now() + 60_000)?.has(found.pipe)).toBe(false);
    rescue = new ConsoleRescue(consoleLog, () => pid, pino({ level: 'silent' }));
    rescue.start(50);
    await waitFor('the take-over', () => rescue!.rescuing || undefined, { timeoutMs: 10_000, intervalMs: 20 });
    writeFileSync(join(dir, 'go'), '');
    const marked = `${head} ${LOST_MARK}\n`;
    const total = marked.length + n * LINE.length;
    const size = () => [`${consoleLog}.1`, `${consoleLog}.0`, consoleLog].filter(existsSync).reduce((a, f) => a + readFileSync(f).length, 0);
    await waitFor('every byte in the console files', () => (existsSync(join(dir, 'done')) && size() === total) || undefined, { timeoutMs: 30_000, intervalMs: 50 });
    const rotated = readFileSync(`${consoleLog}.0`, 'utf8');
    const current = readFileSync(consoleLog, 'utf8');
    expect(rotated.length).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(rotated.startsWith(marked)).toBe(true);
    expect((rotated + current).slice(marked.length)).toBe(LINE.repeat(n));
  });

  it("leaves alone a VM started after virtlogd's pipes were last looked at: virtlogd holds its pipe", async () => {
    const dir = tempDir('vmlet-rescue-');
    const consoleLog = join(dir, 'console.log');
    writeFileSync(consoleLog, '');
    // The list every VM's check shares, read before this VM exists and still remembered when it starts.
    virtlogdPipes(Date.now() + 60_000, true);
    // A bash named virtlogd reads the pipe (its stdin) as virtlogd reads QEMU's; the subshell in QEMU's place writes it (fd 7).
    copyFileSync('/bin/bash', join(dir, 'virtlogd'));
    const script = `( exec 7>&1 >/dev/null; for f in /proc/$BASHPID/fd/*; do n=\${f##*/}; if [ $n -gt 2 ] && [ $n -ne 7 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; echo $BASHPID > ${dir}/pid; sleep 60 ) | ${dir}/virtlogd -c 'sleep 60; :'`;
    writer = spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
    const pid = await waitFor('the writer', () => (existsSync(join(dir, 'pid')) ? Number(readFileSync(join(dir, 'pid'), 'utf8')) || undefined : undefined), { timeoutMs: 10_000, intervalMs: 20 });
    const found = await waitFor('the write-only pipe', () => consoleLogPipe(pid), { timeoutMs: 10_000, intervalMs: 20 });
    // Read from /proc here, not through virtlogdPipes (that would refresh the remembered list).
    const readerHolds = () => readdirSync('/proc').some((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'virtlogd' && readlinkSync(`/proc/${p}/fd/0`) === found.pipe;
      } catch {
        return false;
      }
    });
    await waitFor('the reader named virtlogd', () => readerHolds() || undefined, { timeoutMs: 10_000, intervalMs: 20 });
    rescue = new ConsoleRescue(consoleLog, () => pid, pino({ level: 'silent' }));
    rescue.start(50); // checks at once
    expect(rescue.rescuing).toBe(false);
    expect(readFileSync(consoleLog, 'utf8')).toBe('');
    virtlogdPipes(Date.now(), true);
  });

  it("lists virtlogd's pipes again every 10 s while it lives, at once when it dies", async () => {
    const dir = tempDir('vmlet-rescue-');
    copyFileSync('/bin/bash', join(dir, 'virtlogd'));
    /** A bash named virtlogd reading a pipe (its stdin) that a subshell writes; its pipe and pid. */
    const fakeVirtlogd = async (tag: string) => {
      // The reader waits in bash's own `read`: a `sleep` child would be named virtlogd between its
      // fork and exec, and found as the reader in place of its parent (seen once under load).
      const script = `( echo $BASHPID > ${dir}/${tag}; sleep 60 ) | ${dir}/virtlogd -c 'read -t 60 || :'`;
      const group = spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
      const writerPid = await waitFor('the writer', () => (existsSync(join(dir, tag)) ? Number(readFileSync(join(dir, tag), 'utf8')) || undefined : undefined), { timeoutMs: 10_000, intervalMs: 20 });
      const pipe = readlinkSync(`/proc/${writerPid}/fd/1`);
      const reader = await waitFor('the reader named virtlogd', () => readdirSync('/proc').map(Number).find((p) => {
        try {
          return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'virtlogd' && readlinkSync(`/proc/${p}/fd/0`) === pipe;
        } catch {
          return false;
        }
      }), { timeoutMs: 10_000, intervalMs: 20 });
      return { group, pipe, reader };
    };
    const first = await fakeVirtlogd('a');
    writer = first.group;
    const t = Date.now() + 60_000;
    expect(virtlogdPipes(t, true)?.has(first.pipe)).toBe(true);
    // A pipe of a virtlogd that started since: not seen before 10 s unless asked with `fresh`.
    const second = await fakeVirtlogd('b');
    try {
      expect(virtlogdPipes(t + 1_500)?.has(second.pipe)).toBe(false);
      expect(virtlogdPipes(t + 10_500)?.has(second.pipe)).toBe(true);
      // The first one dies: seen a second later, well within the 10 s.
      process.kill(first.reader, 'SIGKILL');
      await waitFor('the killed virtlogd gone', () => !existsSync(`/proc/${first.reader}/fd/0`) || undefined, { timeoutMs: 10_000, intervalMs: 20 });
      const held = virtlogdPipes(t + 11_600);
      expect(held?.has(first.pipe)).toBe(false);
      expect(held?.has(second.pipe)).toBe(true);
    } finally {
      if (second.group.pid) process.kill(-second.group.pid, 'SIGKILL');
    }
    virtlogdPipes(Date.now(), true);
  });

  it('leaves a pipe alone when there is no such pipe (QEMU gone)', () => {
    expect(consoleLogPipe(2 ** 22 + 1)).toBeUndefined();
  });
});
