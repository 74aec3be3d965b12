import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import {
  DATA_CHUNK,
} from '../../src/stream/spdy-conn.js';
import {
  FLAG_FIN, FrameReader, GOAWAY, HeaderCodec, PING, SETTINGS, SPDY3_DICTIONARY, SYN_REPLY, SYN_STREAM, WINDOW_UPDATE,
  buildStreamHeaders, buildSynStream, decodeHeaderBlock, encodeData, encodeGoAway, encodeHeaderBlock, encodePing,
  encodeSettings, encodeWindowUpdate, parseIdAndValue, parseSettings, parseStreamHeaders, parseSynStream,
  type ControlFrame, type DataFrame, type Frame,
} from '../../src/stream/spdy-frame.js';
import { ResizeDecoder, negotiateSpdyProtocol } from '../../src/stream/spdy-server.js';

function adler32(b: Buffer): number {
  let a = 1;
  let c = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    c = (c + a) % 65521;
  }
  return ((c << 16) | a) >>> 0;
}

const inflateWithDict = (b: Buffer) =>
  zlib.inflateSync(b, { dictionary: SPDY3_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });

describe('SPDY/3 header dictionary', () => {
  it('is the 1423-byte draft-3 dictionary (DICTID 0xe3c6a7c2)', () => {
    expect(SPDY3_DICTIONARY.length).toBe(1423);
    expect(adler32(SPDY3_DICTIONARY).toString(16)).toBe('e3c6a7c2');
    expect(SPDY3_DICTIONARY.subarray(0, 11)).toEqual(Buffer.from('\0\0\0\x07options', 'latin1'));
    expect(SPDY3_DICTIONARY.subarray(-7).toString()).toBe(',enq=0.');
  });

  it('decodes a header block written by Go compress/zlib (spdystream: streamtype=stdout)', () => {
    // SYN_STREAM header block as moby/spdystream (client-go) writes it: zlib level 9 (0x78f9).
    const block = Buffer.from('78f9e3c6a7c2626060600' + '4a7b392a2d4c45c6851c2565c92925f5a02000000ffff', 'hex');
    expect(decodeHeaderBlock(inflateWithDict(block))).toEqual(new Map([['streamtype', ['stdout']]]));
  });

  it("decodes a header block from Chromium's SPDY/3 framer (bar=foo, foo=bar)", () => {
    const block = Buffer.from('38eae3c6a7c202e50e50c24b4a04e50b6680004acbcf0708201095969f0fa200022829b108208000000000ffff', 'hex');
    expect(decodeHeaderBlock(inflateWithDict(block))).toEqual(new Map([['bar', ['foo']], ['foo', ['bar']]]));
  });
});

describe('SPDY framing', () => {
  it('round-trips control and data frames, split at any byte', () => {
    const wire = Buffer.concat([
      buildSynStream(1, FLAG_FIN, Buffer.from('hdrs'), 3, 0),
      encodeData(1, FLAG_FIN, Buffer.from('hello')),
      encodePing(7),
      encodeGoAway(5, 0),
      encodeWindowUpdate(3, 1000),
      encodeSettings([{ id: 7, value: 128 * 1024 }]),
      buildStreamHeaders(SYN_REPLY, 9, 0, Buffer.from('x')),
    ]);
    for (const step of [1, 3, 7, wire.length]) {
      const r = new FrameReader();
      const frames: Frame[] = [];
      for (let i = 0; i < wire.length; i += step) frames.push(...r.push(wire.subarray(i, i + step)));
      expect(frames).toHaveLength(7);
      const syn = frames[0] as ControlFrame;
      expect(syn).toMatchObject({ control: true, version: 3, type: SYN_STREAM, flags: FLAG_FIN });
      expect(parseSynStream(syn.payload)).toEqual({ streamId: 1, associatedId: 0, priority: 3, block: Buffer.from('hdrs') });
      expect(frames[1] as DataFrame).toEqual({ control: false, streamId: 1, flags: FLAG_FIN, data: Buffer.from('hello') });
      expect((frames[2] as ControlFrame).type).toBe(PING);
      expect((frames[2] as ControlFrame).payload.readUInt32BE(0)).toBe(7);
      expect((frames[3] as ControlFrame).type).toBe(GOAWAY);
      expect(parseIdAndValue((frames[3] as ControlFrame).payload)).toEqual([5, 0]);
      expect((frames[4] as ControlFrame).type).toBe(WINDOW_UPDATE);
      expect(parseIdAndValue((frames[4] as ControlFrame).payload)).toEqual([3, 1000]);
      expect((frames[5] as ControlFrame).type).toBe(SETTINGS);
      expect(parseSettings((frames[5] as ControlFrame).payload)).toEqual([{ flags: 0, id: 7, value: 131072 }]);
      expect(parseStreamHeaders((frames[6] as ControlFrame).payload)).toEqual({ streamId: 9, block: Buffer.from('x') });
    }
  });

  it('encodes the header block as count + length-prefixed names and NUL-joined values', () => {
    const b = encodeHeaderBlock({ StreamType: 'data', port: ['80', '81'] });
    expect(b.toString('latin1')).toBe('\0\0\0\x02\0\0\0\x0astreamtype\0\0\0\x04data\0\0\0\x04port\0\0\0\x0580\x0081');
    expect(decodeHeaderBlock(b)).toEqual(new Map([['streamtype', ['data']], ['port', ['80', '81']]]));
    expect(() => decodeHeaderBlock(b.subarray(0, 10))).toThrow(/truncated/);
  });

  it('refuses frames above the size limit', () => {
    expect(() => new FrameReader(10).push(encodeData(1, 0, Buffer.alloc(11)))).toThrow(/exceeds/);
    expect(DATA_CHUNK).toBeLessThanOrEqual(64 * 1024);
  });
});

describe('SPDY header compression', () => {
  it('shares one zlib context per direction across header blocks', async () => {
    const a = new HeaderCodec();
    const b = new HeaderCodec();
    const blocks: Buffer[] = [];
    for (let i = 0; i < 5; i++) blocks.push(await a.compress({ streamtype: 'data', port: '8080', requestid: String(i) }));
    // Later blocks reuse history: not decodable on their own, only in order on one context.
    expect(() => inflateWithDict(blocks[1]!)).toThrow();
    for (let i = 0; i < 5; i++) {
      expect(await b.decompress(blocks[i]!)).toEqual(new Map([['streamtype', ['data']], ['port', ['8080']], ['requestid', [String(i)]]]));
    }
    // The first block is a plain zlib stream with the SPDY dictionary.
    expect(blocks[0]!.subarray(2, 6).toString('hex')).toBe('e3c6a7c2');
    a.close();
    b.close();
  });

  it('rejects a block compressed against another dictionary', async () => {
    const c = new HeaderCodec();
    const bad = zlib.deflateSync(encodeHeaderBlock({ a: 'b' }), { dictionary: Buffer.from('not the spdy dictionary') });
    await expect(c.decompress(bad)).rejects.toThrow();
    c.close();
  });
});

describe('SPDY stream protocol helpers', () => {
  it('negotiates like the kubelet: first client protocol the server serves', () => {
    expect(negotiateSpdyProtocol('exec', ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'])).toBe('v4.channel.k8s.io');
    expect(negotiateSpdyProtocol('attach', ['channel.k8s.io'])).toBeUndefined();
    expect(negotiateSpdyProtocol('attach', [])).toBeUndefined();
    expect(negotiateSpdyProtocol('portforward', ['portforward.k8s.io'])).toBe('portforward.k8s.io');
    expect(negotiateSpdyProtocol('portforward', [])).toBe('');
    expect(negotiateSpdyProtocol('portforward', ['v4.channel.k8s.io'])).toBeUndefined();
  });

  it('splits the resize stream into sizes, across chunk boundaries', () => {
    const d = new ResizeDecoder();
    expect(d.push(Buffer.from('{"Width":80,"Height":24}\n{"Wid'))).toEqual([{ width: 80, height: 24 }]);
    expect(d.push(Buffer.from('th":120,"Height":40}\n'))).toEqual([{ width: 120, height: 40 }]);
    expect(d.push(Buffer.from('{"x":"}"}'))).toEqual([]);
  });
});
