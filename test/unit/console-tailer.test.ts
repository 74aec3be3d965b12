// The console copier against files rotated the way virtlogd rotates them (console.log renamed
// to .0, older backups shifted, a new console.log started): every line reaches the CRI log once,
// in order, whether the rotation happens between two copies or while vmlet is down.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConsoleTailer } from '../../src/stream/console-tailer.js';
import { waitFor } from '../helpers/wait.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';

const log = pino({ level: 'silent' });
let dir = '';

function setup() {
  dir = mkdtempSync(join(tmpdir(), 'vmlet-tailer-'));
  return { console: join(dir, 'console.log'), cri: join(dir, 'cri', 'vm.log'), offset: join(dir, 'console.offset') };
}

afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines = (cri: string) => (existsSync(cri) ? readFileSync(cri, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l).content) : []);
const numbered = (from: number, to: number, width = 0) => Array.from({ length: to - from }, (_, i) => `line ${from + i}${'.'.repeat(width)}`);
const write = (file: string, xs: string[]) => appendFileSync(file, xs.map((x) => x + '\n').join(''));

/** What virtlogd does at max_size: shift the backups up and start a new file. */
function rotate(file: string, backups = 3) {
  for (let i = backups - 1; i >= 0; i--) if (existsSync(`${file}.${i}`)) renameSync(`${file}.${i}`, `${file}.${i + 1}`);
  renameSync(file, `${file}.0`);
  writeFileSync(file, '');
}

describe('ConsoleTailer', () => {
  it('copies complete lines and resumes from the saved position without repeating any', async () => {
    const f = setup();
    write(f.console, numbered(0, 3));
    appendFileSync(f.console, 'partial');
    const a = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    await a.halt();
    expect(lines(f.cri)).toEqual(numbered(0, 3));
    const saved = await ConsoleTailer.savedPosition(f.offset, f.cri);
    expect(saved).toEqual({ offset: 21, ino: statSync(f.console).ino }); // the partial line is read again
    appendFileSync(f.console, ' line\n');
    const b = new ConsoleTailer(f.console, f.cri, f.offset, saved!, log);
    await b.halt();
    expect(lines(f.cri)).toEqual([...numbered(0, 3), 'partial line']);
  });

  it('finishes the rotated file before the new one, even when the new one is already longer', async () => {
    const f = setup();
    const t = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    write(f.console, numbered(0, 5));
    await t.drain();
    write(f.console, numbered(5, 8)); // written after the last copy, before virtlogd rotates
    rotate(f.console);
    write(f.console, numbered(8, 40, 20)); // the new file passes the old offset before the next copy
    await t.drain();
    expect(lines(f.cri)).toEqual([...numbered(0, 8), ...numbered(8, 40, 20)]);
  });

  it('catches up across several rotations that happened while vmlet was down', async () => {
    const f = setup();
    write(f.console, numbered(0, 4));
    const a = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    await a.halt();
    write(f.console, numbered(4, 6));
    rotate(f.console);
    write(f.console, numbered(6, 9));
    rotate(f.console);
    write(f.console, numbered(9, 12));
    const b = new ConsoleTailer(f.console, f.cri, f.offset, (await ConsoleTailer.savedPosition(f.offset, f.cri))!, log);
    await b.halt();
    expect(lines(f.cri)).toEqual(numbered(0, 12));
  });

  it('starts the new file from its beginning when the old one rotated past the backups, or was truncated', async () => {
    const f = setup();
    write(f.console, numbered(0, 2));
    const t = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    await t.drain();
    for (let i = 0; i < 4; i++) {
      rotate(f.console, 2); // only .0 and .1 are kept: the file we read is gone
      write(f.console, [`gen ${i}`]);
    }
    await t.drain();
    expect(lines(f.cri)).toEqual([...numbered(0, 2), 'gen 3']);
    writeFileSync(f.console, 'new\n'); // same inode, shorter: truncated in place
    await t.drain();
    expect(lines(f.cri).at(-1)).toBe('new');
  });

  it('reads a position saved as an offset alone (before inodes were kept)', async () => {
    const f = setup();
    writeFileSync(f.offset, '42\n');
    expect(await ConsoleTailer.savedPosition(f.offset, f.cri)).toEqual({ offset: 42 });
    writeFileSync(f.offset, 'junk\n');
    expect(await ConsoleTailer.savedPosition(f.offset, f.cri)).toBeUndefined();
  });

  // A kill -9 of vmlet can come at any point of a copy (test/faults/vmlet-kill.test.ts kills it
  // right after an append): what the offset file logged ahead and the CRI log's length decide.
  it.each([
    ['after the append', (_cri: string, _start: number) => undefined],
    ['before the append', (cri: string, start: number) => truncateSync(cri, start)],
    ['in the middle of the append', (cri: string, start: number) => truncateSync(cri, start + 7)],
  ])('resumes a copy cut short %s with every line once', async (_when, cut) => {
    const f = setup();
    write(f.console, numbered(0, 3));
    await new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log).drain();
    const start = statSync(f.cri).size;
    write(f.console, numbered(3, 6));
    await new ConsoleTailer(f.console, f.cri, f.offset, (await ConsoleTailer.savedPosition(f.offset, f.cri))!, log).drain();
    cut(f.cri, start); // the tailer is abandoned here, as by a kill: no halt, no position saved after
    const b = new ConsoleTailer(f.console, f.cri, f.offset, (await ConsoleTailer.savedPosition(f.offset, f.cri))!, log);
    write(f.console, numbered(6, 8));
    await b.halt();
    expect(lines(f.cri)).toEqual(numbered(0, 8));
  });

  it('copies nothing when the CRI log cannot be written, and everything once when it can again', async () => {
    const f = setup();
    mkdirSync(f.cri, { recursive: true }); // a directory where the log goes: every append fails
    write(f.console, numbered(0, 3));
    const t = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    await t.drain();
    expect(t.position).toEqual({ offset: 0 });
    rmSync(f.cri, { recursive: true });
    write(f.console, numbered(3, 5));
    await t.drain();
    expect(lines(f.cri)).toEqual(numbered(0, 5));
  });
  it('copies each write as inotify reports it, not on the next tick, and loses none written during a copy', async () => {
    const f = setup();
    const t = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    t.start(600_000); // a tick ten minutes away: only the watch can bring these lines
    try {
      write(f.console, numbered(0, 1)); // the file is created after the watch began
      await waitFor('the first line copied', () => lines(f.cri).length === 1, { timeoutMs: 10_000, intervalMs: 10 });
      // Writes land while copies run: each is either in that copy or brings one more.
      for (let i = 1; i < 200; i++) write(f.console, numbered(i, i + 1));
      await waitFor('every line copied', () => lines(f.cri).length >= 200, { timeoutMs: 10_000, intervalMs: 10 });
      expect(lines(f.cri)).toEqual(numbered(0, 200));
      rotate(f.console);
      write(f.console, numbered(200, 210));
      await waitFor('lines after a rotation copied', () => lines(f.cri).length >= 210, { timeoutMs: 10_000, intervalMs: 10 });
      expect(lines(f.cri)).toEqual(numbered(0, 210));
    } finally {
      await t.halt();
    }
  });

  it('copies the first write after a quiet spell at once; writes within the next 50 ms wait for the window to end', async () => {
    // setTimeout is the window's only clock: faked, a copy that waits for it cannot happen
    // until the test moves it on. The watch and the copies are real (inotify, files).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const f = setup();
    writeFileSync(f.console, '');
    const t = new ConsoleTailer(f.console, f.cri, f.offset, { offset: 0 }, log);
    const until = async (what: string, cond: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setImmediate(r));
      }
    };
    try {
      t.start(600_000);
      await until('the start-up copy', () => t.position.ino !== undefined);
      write(f.console, numbered(0, 1));
      await until('the first line, with no timer run', () => lines(f.cri).length === 1);
      write(f.console, numbered(1, 2));
      await until('the second write to be seen and its copy put off', () => vi.getTimerCount() > 0);
      expect(lines(f.cri)).toEqual(numbered(0, 1));
      vi.advanceTimersByTime(50);
      await until('the second line once the window ended', () => lines(f.cri).length === 2);
      expect(lines(f.cri)).toEqual(numbered(0, 2));
    } finally {
      await t.halt();
      vi.useRealTimers();
    }
  });
});
