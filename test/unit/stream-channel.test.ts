import { describe, expect, it } from 'vitest';
import {
  decodeFrame, encodeFrame, errorStatus, exitStatus, parsePorts, parseResize, portPrefix, successStatus,
} from '../../src/stream/channel.js';
import { serialPtyPath } from '../../src/vm/domain-xml.js';

describe('channel framing', () => {
  it('prefixes binary messages with the channel byte', () => {
    const f = encodeFrame(1, Buffer.from('hi')) as Buffer;
    expect([...f]).toEqual([1, 0x68, 0x69]);
    expect(decodeFrame(f)).toEqual({ channel: 1, data: Buffer.from('hi') });
    expect([...(encodeFrame(3, new Uint8Array(0)) as Buffer)]).toEqual([3]);
  });

  it('decodes the v5 close message and ignores empty messages', () => {
    expect(decodeFrame(Buffer.from([255, 0]))).toEqual({ channel: 255, data: Buffer.from([0]) });
    expect(decodeFrame(Buffer.alloc(0))).toBeUndefined();
  });

  it('round-trips the base64 variant (ASCII channel digit + base64 payload)', () => {
    const bytes = Buffer.from([0, 1, 2, 255, 10]);
    const f = encodeFrame(2, bytes, true);
    expect(f).toBe('2' + bytes.toString('base64'));
    expect(decodeFrame(f as string, true)).toEqual({ channel: 2, data: bytes });
    expect(() => encodeFrame(255, bytes, true)).toThrow(/base64/);
    expect(() => decodeFrame('xAAAA', true)).toThrow(/channel/);
  });

  it('encodes data that is a view into a larger buffer', () => {
    const big = Buffer.from('xxhelloxx');
    const view = big.subarray(2, 7);
    expect((encodeFrame(1, view) as Buffer).subarray(1).toString()).toBe('hello');
    expect((encodeFrame(1, view, true) as string).slice(1)).toBe(Buffer.from('hello').toString('base64'));
  });

  it('parses resize messages', () => {
    expect(parseResize(Buffer.from('{"Width":120,"Height":40}'))).toEqual({ width: 120, height: 40 });
    expect(parseResize(Buffer.from('{"Width":-1,"Height":40}'))).toBeUndefined();
    expect(parseResize(Buffer.from('nope'))).toBeUndefined();
  });

  it('builds the statuses client-go reads exit codes from', () => {
    expect(successStatus()).toEqual({ metadata: {}, status: 'Success' });
    expect(exitStatus(0).status).toBe('Success');
    const s = exitStatus(3);
    expect(s.reason).toBe('NonZeroExitCode');
    expect(s.details?.causes).toEqual([{ reason: 'ExitCode', message: '3' }]);
    expect(errorStatus('boom')).toMatchObject({ status: 'Failure', message: 'boom' });
  });

  it('writes the port-forward port prefix little-endian and parses ?port= values', () => {
    expect([...portPrefix(8080)]).toEqual([0x90, 0x1f]);
    expect(parsePorts(['80', '8080,9090'])).toEqual([80, 8080, 9090]);
    expect(() => parsePorts(['0'])).toThrow(/invalid port/);
    expect(() => parsePorts(['70000'])).toThrow(/invalid port/);
    expect(() => parsePorts(['8a'])).toThrow(/invalid port/);
  });
});

describe('serialPtyPath', () => {
  it('finds the pty of the serial in a live domain XML', () => {
    const xml = `<domain><devices>
      <serial type='file'><source path='/tmp/x'/><target port='1'/></serial>
      <serial type='pty'>
        <source path='/dev/pts/7'/>
        <log file='/var/lib/vmlet/console.log' append='on'/>
        <target type='isa-serial' port='0'><model name='isa-serial'/></target>
        <alias name='serial0'/>
      </serial>
      <console type='pty' tty='/dev/pts/7'><source path='/dev/pts/7'/><target type='serial' port='0'/></console>
    </devices></domain>`;
    expect(serialPtyPath(xml)).toBe('/dev/pts/7');
  });

  it('is undefined for an inactive domain (no source yet)', () => {
    expect(serialPtyPath("<domain><devices><serial type='pty'><target port='0'/></serial></devices></domain>")).toBeUndefined();
  });
});
