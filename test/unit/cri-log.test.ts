import { describe, expect, it } from 'vitest';
import { CriLogFormatter, MAX_PIECE, criTimestamp, parseCriLogLine, utf8Cut } from '../../src/stream/cri-log.js';

const now = new Date('2026-11-25T13:18:34.573Z');
const TS = '2026-11-25T13:18:34.573000000Z';

/** Splits formatter output (bytes) into its records, each parsed. */
function records(out: Buffer) {
  const recs = [];
  let rest = out;
  for (let nl = rest.indexOf(0x0a); nl !== -1; nl = rest.indexOf(0x0a)) {
    recs.push(parseCriLogLine(rest.subarray(0, nl + 1)));
    rest = rest.subarray(nl + 1);
  }
  expect(rest.length).toBe(0); // output is always whole records
  return recs;
}

describe('criTimestamp', () => {
  it('is RFC3339 with 9 fraction digits in UTC', () => {
    expect(criTimestamp(now)).toBe(TS);
    expect(criTimestamp(new Date('2026-01-02T03:04:05Z'))).toBe('2026-01-02T03:04:05.000000000Z');
  });
});

describe('CriLogFormatter', () => {
  it('turns complete lines into F records and keeps the partial tail', () => {
    const f = new CriLogFormatter();
    expect(f.push(Buffer.from('hello\nwor'), now)).toBe(`${TS} stdout F hello\n`);
    expect(f.pendingBytes).toBe(3);
    expect(f.push(Buffer.from('ld\n\n'), now)).toBe(`${TS} stdout F world\n${TS} stdout F \n`);
    expect(f.pendingBytes).toBe(0);
    expect(f.flush(now)).toBe('');
  });

  it('strips the \\r of \\r\\n (also \\r\\r\\n), keeps other \\r', () => {
    const f = new CriLogFormatter();
    expect(f.push(Buffer.from('a\r\nb\r\r\nc\rd\n'), now)).toBe(`${TS} stdout F a\n${TS} stdout F b\n${TS} stdout F c\rd\n`);
  });

  it('handles \\r\\n split across chunks', () => {
    const f = new CriLogFormatter();
    expect(f.push(Buffer.from('line\r'), now)).toBe('');
    expect(f.push(Buffer.from('\nnext'), now)).toBe(`${TS} stdout F line\n`);
  });

  it('flush writes the partial line as P (dropping a lone trailing \\r); a later newline ends it with F', () => {
    const f = new CriLogFormatter();
    f.push(Buffer.from('login: \r'), now);
    expect(f.flush(now)).toBe(`${TS} stdout P login: \n`);
    expect(f.pendingBytes).toBe(0);
    expect(f.push(Buffer.from('root\n'), now)).toBe(`${TS} stdout F root\n`);
  });

  it('uses the time given, or now', () => {
    const f = new CriLogFormatter();
    const before = Date.now();
    const [rec] = records(f.pushBytes(Buffer.from('x\n')));
    expect(rec!.time.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(rec!.time.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('cuts a line longer than 16 KiB into P pieces and a final F', () => {
    const f = new CriLogFormatter();
    const line = 'x'.repeat(MAX_PIECE * 2 + 10);
    const recs = records(f.pushBytes(Buffer.from(line + '\n'), now));
    expect(recs.map((r) => [r.tag, r.bytes.length])).toEqual([['P', MAX_PIECE], ['P', MAX_PIECE], ['F', 10]]);
    expect(recs.map((r) => r.content).join('')).toBe(line);
  });

  it('a line of exactly 16 KiB is one F record', () => {
    const recs = records(new CriLogFormatter().pushBytes(Buffer.from('y'.repeat(MAX_PIECE) + '\n'), now));
    expect(recs.map((r) => r.tag)).toEqual(['F']);
  });

  it('writes full pieces of a long unterminated line at once and keeps less than a piece', () => {
    const f = new CriLogFormatter();
    const out = f.pushBytes(Buffer.from('z'.repeat(MAX_PIECE + 100)), now);
    expect(records(out).map((r) => [r.tag, r.bytes.length])).toEqual([['P', MAX_PIECE]]);
    expect(f.pendingBytes).toBe(100);
    expect(records(f.pushBytes(Buffer.from('\n'), now)).map((r) => [r.tag, r.bytes.length])).toEqual([['F', 100]]);
  });

  it('never splits a UTF-8 character across pieces', () => {
    const f = new CriLogFormatter();
    // 'é' is 2 bytes, '€' 3, '😀' 4: shift them so a character straddles the 16 KiB mark.
    for (const [pad, ch] of [[1, 'é'], [1, '€'], [2, '€'], [1, '😀'], [3, '😀']] as const) {
      const line = 'a'.repeat(MAX_PIECE - pad) + ch.repeat(3);
      const recs = records(f.pushBytes(Buffer.from(line + '\n'), now));
      expect(recs.map((r) => r.tag)).toEqual(['P', 'F']);
      expect(recs[0]!.bytes.length).toBe(MAX_PIECE - pad);
      expect(recs.map((r) => r.content).join('')).toBe(line);
      for (const r of recs) expect(r.content).not.toContain('\ufffd');
    }
  });

  it('passes invalid bytes through unchanged on the byte API', () => {
    const f = new CriLogFormatter();
    const junk = Buffer.from([0x41, 0xff, 0xfe, 0x80, 0xc3, 0x42]);
    const out = f.pushBytes(Buffer.concat([junk, Buffer.from('\n')]), now);
    expect(out).toEqual(Buffer.concat([Buffer.from(`${TS} stdout F `), junk, Buffer.from('\n')]));
    // A run of stray continuation bytes at the cut: cut at 16 KiB exactly.
    const cont = Buffer.alloc(MAX_PIECE + 5, 0x80);
    const recs = records(f.pushBytes(Buffer.concat([cont, Buffer.from('\n')]), now));
    expect(recs.map((r) => r.bytes.length)).toEqual([MAX_PIECE, 5]);
    expect(Buffer.concat(recs.map((r) => r.bytes))).toEqual(cont);
  });

  it('does not depend on how the input is chunked', () => {
    const text = Buffer.from('boot ok\r\n' + 'ü'.repeat(10_000) + '\r\nlast line\r\npartial');
    const whole = new CriLogFormatter();
    const expected = Buffer.concat([whole.pushBytes(text, now), whole.flushBytes(now)]);
    for (const size of [1, 3, 7, 4096]) {
      const f = new CriLogFormatter();
      const parts: Buffer[] = [];
      for (let i = 0; i < text.length; i += size) parts.push(f.pushBytes(text.subarray(i, i + size), now));
      parts.push(f.flushBytes(now));
      // Long lines may be cut at different places, but the joined content must match.
      const join = (b: Buffer) => records(b).map((r) => (r.partial ? r.content : r.content + '\n')).join('');
      expect(join(Buffer.concat(parts))).toBe(join(expected));
    }
  });

  it('copies the pending bytes, so a reused read buffer cannot corrupt them', () => {
    const f = new CriLogFormatter();
    const buf = Buffer.from('abc');
    f.push(buf, now);
    buf.write('XYZ');
    expect(f.push(Buffer.from('\n'), now)).toBe(`${TS} stdout F abc\n`);
  });

  it('can write stderr', () => {
    expect(new CriLogFormatter('stderr').push(Buffer.from('e\n'), now)).toBe(`${TS} stderr F e\n`);
  });
});

describe('utf8Cut', () => {
  it('moves back only over a character that really starts before the cut', () => {
    expect(utf8Cut(Buffer.from('abcdef'), 3)).toBe(3);
    expect(utf8Cut(Buffer.from('ab€'), 3)).toBe(2); // e2 82 ac: cut inside → before e2
    expect(utf8Cut(Buffer.from('a€'), 2)).toBe(1);
    expect(utf8Cut(Buffer.from('é€'), 2)).toBe(2); // é complete, € starts at 2
    expect(utf8Cut(Buffer.from([0x41, 0x41, 0x80, 0x80]), 3)).toBe(3); // stray continuations
    expect(utf8Cut(Buffer.from('ab'), 5)).toBe(2);
  });
});

describe('parseCriLogLine', () => {
  it('parses what the formatter writes', () => {
    expect(parseCriLogLine(`${TS} stdout F hello world\n`)).toMatchObject({ timestamp: TS, stream: 'stdout', tag: 'F', partial: false, content: 'hello world' });
    expect(parseCriLogLine(`${TS} stdout F hello world\n`).time.toISOString()).toBe('2026-11-25T13:18:34.573Z');
    expect(parseCriLogLine(`${TS} stdout P `)).toMatchObject({ tag: 'P', partial: true, content: '' });
  });
  it('accepts Go-trimmed timestamps, offsets, stderr and extra tags', () => {
    expect(parseCriLogLine('2026-11-25T13:18:34.5Z stderr F x')).toMatchObject({ stream: 'stderr', content: 'x' });
    expect(parseCriLogLine('2026-11-25T13:18:34+01:00 stdout P:foo y').tag).toBe('P');
    expect(parseCriLogLine('2026-11-25T13:18:34+01:00 stdout F y').time.toISOString()).toBe('2026-11-25T12:18:34.000Z');
  });
  it('rejects lines that are not CRI log lines', () => {
    expect(() => parseCriLogLine('hello')).toThrow(/not a CRI log line/);
    expect(() => parseCriLogLine(`${TS} stdin F x`)).toThrow(/not a CRI log line/);
    expect(() => parseCriLogLine('2026-13-45T99:99:99Z stdout F x')).toThrow(/bad CRI log timestamp/);
  });
});
