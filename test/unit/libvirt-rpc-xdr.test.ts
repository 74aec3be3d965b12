// The libvirt RPC client without libvirtd: XDR bytes, packet framing, structs, error kinds, the
// URI to socket mapping, CPU maps, and the connection's behaviour against a fake daemon that
// speaks the same framing (auth flows, out-of-order replies, keepalive, timeouts, drops).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { rpcRejection as rejection } from '../helpers/errors.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XdrError, XdrReader, XdrWriter } from '../../src/vm/rpc/xdr.js';
import {
  AuthType,
  decodeDomain,
  decodePacket,
  decodeRemoteError,
  decodeTypedParam,
  encodeDomain,
  encodePacket,
  encodeRemoteError,
  encodeTypedParam,
  KEEPALIVE_PROGRAM,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
  uuidFromString,
  uuidToString,
  type MessageHeader,
  type TypedParam,
} from '../../src/vm/rpc/protocol.js';
import { kindForCode } from '../../src/vm/rpc/errors.js';
import { cpuListFromMap, cpuListsFromMaps, cpumapFromList, cpumapLength } from '../../src/vm/rpc/cpumap.js';
import { daemonUri } from '../../src/vm/rpc/uri.js';
import { DOMAIN_STATS, GET_ALL_DOMAINS_STATS, LibvirtRpc, LibvirtRpcError, socketPathForUri, type RpcDomain } from '../../src/vm/rpc/index.js';
import { Libvirt, VirtError } from '../../src/vm/libvirt.js';
import { pino } from 'pino';
import { FakeDaemon, type Call, type Handler } from '../helpers/fake-libvirtd.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const w = () => new XdrWriter(4); // tiny initial size: every test also exercises growth

describe('XDR', () => {
  it('encodes ints big-endian, negatives in two’s complement', () => {
    expect(hex(w().int(1).bytes())).toBe('00000001');
    expect(hex(w().int(-2).bytes())).toBe('fffffffe');
    expect(hex(w().int(-0x8000_0000).bytes())).toBe('80000000');
    expect(hex(w().uint(0xffff_ffff).bytes())).toBe('ffffffff');
    expect(hex(w().bool(true).bool(false).bytes())).toBe('0000000100000000');
    const r = new XdrReader(w().int(-2).uint(0xffff_ffff).int(0x7fff_ffff).bytes());
    expect([r.int(), r.uint(), r.int()]).toEqual([-2, 0xffff_ffff, 0x7fff_ffff]);
    r.end();
  });

  it('refuses ints out of range or not integers', () => {
    expect(() => w().int(0x8000_0000)).toThrow(XdrError);
    expect(() => w().int(1.5)).toThrow(XdrError);
    expect(() => w().uint(-1)).toThrow(XdrError);
    expect(() => w().uint(2 ** 32)).toThrow(XdrError);
  });

  it('keeps hypers above 2^53 exact as bigint', () => {
    const big = (1n << 53n) + 1n;
    expect(hex(w().hyper(big).bytes())).toBe('0020000000000001');
    expect(hex(w().hyper(-1).bytes())).toBe('ffffffffffffffff');
    expect(hex(w().uhyper((1n << 64n) - 1n).bytes())).toBe('ffffffffffffffff');
    const r = new XdrReader(w().hyper(big).hyper(-5n).uhyper((1n << 64n) - 1n).bytes());
    expect(r.hyper()).toBe(big);
    expect(r.hyper()).toBe(-5n);
    expect(r.uhyper()).toBe(18446744073709551615n);
    // A number past 2^53 is already inexact: it must come as a bigint.
    expect(() => w().hyper(2 ** 53 + 2)).toThrow(/safe integer/);
    expect(() => w().uhyper(-1n)).toThrow(XdrError);
    expect(() => w().hyper(1n << 63n)).toThrow(XdrError);
  });

  it('pads strings and opaques to 4 bytes with zeros', () => {
    expect(hex(w().string('abc').bytes())).toBe('00000003' + '61626300');
    expect(hex(w().string('abcd').bytes())).toBe('00000004' + '61626364');
    expect(hex(w().string('').bytes())).toBe('00000000');
    expect(hex(w().string('é').bytes())).toBe('00000002' + 'c3a90000'); // UTF-8 byte length
    expect(hex(w().opaque(Buffer.from([1, 2, 3, 4, 5])).bytes())).toBe('00000005' + '0102030405000000');
    expect(hex(w().fixedOpaque(Buffer.from([9, 8, 7]), 3).bytes())).toBe('09080700');
    expect(() => w().fixedOpaque(Buffer.from([1]), 3)).toThrow(XdrError);
    expect(() => w().string('a\0b')).toThrow(/NUL/);
    expect(() => w().opaque(Buffer.alloc(5), 4)).toThrow(/limit/);
    const r = new XdrReader(w().string('abc').opaque(Buffer.from([1, 2, 3, 4, 5])).fixedOpaque(Buffer.from([9, 8, 7]), 3).int(7).bytes());
    expect(r.string()).toBe('abc');
    expect([...r.opaque()]).toEqual([1, 2, 3, 4, 5]);
    expect([...r.fixedOpaque(3)]).toEqual([9, 8, 7]);
    expect(r.int()).toBe(7); // the padding was skipped
    r.end();
  });

  it('encodes optionals as a presence flag and arrays with a count', () => {
    const str = (x: XdrWriter, s: string) => x.string(s);
    expect(hex(w().optional(null, str).bytes())).toBe('00000000');
    expect(hex(w().optional('x', str).bytes())).toBe('00000001' + '00000001' + '78000000');
    expect(hex(w().array([1, -1], (x, v) => x.int(v)).bytes())).toBe('00000002' + '00000001' + 'ffffffff');
    expect(hex(w().fixedArray([1, 2], 2, (x, v) => x.uint(v)).bytes())).toBe('0000000100000002');
    expect(hex(w().double(1.5).bytes())).toBe('3ff8000000000000');
    const r = new XdrReader(w().optional('x', str).optional(null, str).array([3, 4], (x, v) => x.int(v)).double(-0.25).bytes());
    expect(r.optional((x) => x.string())).toBe('x');
    expect(r.optional((x) => x.string())).toBeNull();
    expect(r.array((x) => x.int())).toEqual([3, 4]);
    expect(r.double()).toBe(-0.25);
    r.end();
  });

  it('refuses truncated or inconsistent input instead of reading garbage', () => {
    expect(() => new XdrReader(Buffer.from('000000', 'hex')).int()).toThrow(/truncated/);
    expect(() => new XdrReader(Buffer.from('0000000861', 'hex')).string()).toThrow(/truncated/);
    expect(() => new XdrReader(Buffer.from('00000002', 'hex')).bool()).toThrow(/bool/);
    expect(() => new XdrReader(Buffer.from('7fffffff', 'hex')).array((r) => r.int())).toThrow(/claims/);
    expect(() => new XdrReader(Buffer.from('0000000300000001', 'hex')).array((r) => r.int(), 2)).toThrow(/limit/);
    const r = new XdrReader(Buffer.from('0000000100000002', 'hex'));
    r.int();
    expect(() => r.end()).toThrow(/trailing/);
  });
});

describe('protocol structs', () => {
  it('round-trips remote_nonnull_domain with the uuid as 16 raw bytes', () => {
    const uuid = '8fed2cf1-1f9f-4766-8244-b8a8f1737e54';
    const bytes = w();
    encodeDomain(bytes, { name: 'vm', uuid: uuidFromString(uuid), id: -1 });
    expect(hex(bytes.bytes())).toBe('00000002' + '766d0000' + uuid.replace(/-/g, '') + 'ffffffff');
    const d = decodeDomain(new XdrReader(bytes.bytes()));
    expect(uuidToString(d.uuid)).toBe(uuid);
    expect(d).toMatchObject({ name: 'vm', id: -1 });
    expect(() => uuidFromString('not-a-uuid')).toThrow(XdrError);
  });

  it('encodes typed params as field, discriminant, value', () => {
    const one = (p: TypedParam) => {
      const x = w();
      encodeTypedParam(x, p);
      return hex(x.bytes());
    };
    const field = '00000001' + '61000000'; // "a"
    expect(one({ field: 'a', type: 'int', value: -1 })).toBe(field + '00000001' + 'ffffffff');
    expect(one({ field: 'a', type: 'uint', value: 7 })).toBe(field + '00000002' + '00000007');
    expect(one({ field: 'a', type: 'llong', value: -1 })).toBe(field + '00000003' + 'ffffffffffffffff');
    expect(one({ field: 'a', type: 'ullong', value: 1024n })).toBe(field + '00000004' + '0000000000000400');
    expect(one({ field: 'a', type: 'double', value: 1.5 })).toBe(field + '00000005' + '3ff8000000000000');
    expect(one({ field: 'a', type: 'boolean', value: true })).toBe(field + '00000006' + '00000001');
    expect(one({ field: 'a', type: 'string', value: 'xy' })).toBe(field + '00000007' + '00000002' + '78790000');
    expect(() => one({ field: 'a', type: 'ullong', value: 'x' })).toThrow(XdrError);
    expect(() => one({ field: 'a', type: 'uint', value: -1 })).toThrow(XdrError);
    expect(() => one({ field: 'a', type: 'string', value: 3 })).toThrow(XdrError);
  });

  it('decodes typed params, 64-bit values as number when safe and bigint past 2^53', () => {
    const params: TypedParam[] = [
      { field: 'cpu_shares', type: 'ullong', value: 1024 },
      { field: 'vcpu_quota', type: 'llong', value: -1 },
      { field: 'huge', type: 'ullong', value: (1n << 64n) - 1n },
      { field: 'b', type: 'boolean', value: false },
      { field: 's', type: 'string', value: 'posix' },
      { field: 'd', type: 'double', value: 0.5 },
      { field: 'i', type: 'int', value: -3 },
      { field: 'u', type: 'uint', value: 4_000_000_000 },
    ];
    const x = w().array(params, encodeTypedParam);
    expect(new XdrReader(x.bytes()).array(decodeTypedParam)).toEqual(params);
    // Unknown discriminant: refuse rather than misread the rest of the reply.
    expect(() => decodeTypedParam(new XdrReader(w().string('a').int(9).int(0).bytes()))).toThrow(/unknown type 9/);
  });

  it('frames packets: length word including itself, then the 24-byte header', () => {
    const h: MessageHeader = { prog: REMOTE_PROGRAM, vers: 1, proc: Proc.DOMAIN_PIN_VCPU_FLAGS, type: MessageType.CALL, serial: 7, status: MessageStatus.OK };
    const p = encodePacket(h, Buffer.from('00000001', 'hex'));
    expect(hex(p)).toBe('00000020' + '20008086' + '00000001' + '000000e1' + '00000000' + '00000007' + '00000000' + '00000001');
    const back = decodePacket(p);
    expect(back.header).toEqual(h);
    expect(hex(back.payload)).toBe('00000001');
    expect(hex(encodePacket({ ...h, proc: Proc.CONNECT_GET_LIB_VERSION }).subarray(0, 4))).toBe('0000001c'); // no payload: 28
    expect(() => decodePacket(p.subarray(0, 30))).toThrow(/length word/);
  });

  it('decodes remote_error with all its optional members', () => {
    // Written by hand, as libvirtd lays it out, not with our own encoder.
    const x = w().int(42).int(10).optional("Domain not found: no domain with matching name 'x'", (y, s) => y.string(s)).int(2);
    x.bool(true);
    encodeDomain(x, { name: 'x', uuid: Buffer.alloc(16), id: 3 });
    x.optional('s1', (y, s) => y.string(s)).optional(null, (y, s: string) => y.string(s)).optional('s3', (y, s) => y.string(s));
    x.int(5).int(-6).bool(true).string('net').fixedOpaque(Buffer.alloc(16), 16);
    const r = new XdrReader(x.bytes());
    expect(decodeRemoteError(r)).toEqual({
      code: 42,
      domain: 10,
      message: "Domain not found: no domain with matching name 'x'",
      level: 2,
      str1: 's1',
      str2: null,
      str3: 's3',
      int1: 5,
      int2: -6,
    });
    r.end();
    const y = w();
    encodeRemoteError(y, { code: 8, domain: 10, message: null });
    expect(decodeRemoteError(new XdrReader(y.bytes()))).toMatchObject({ code: 8, domain: 10, message: null });
  });

  it('maps libvirt error codes to kinds', () => {
    expect(kindForCode(42)).toBe('not-found'); // VIR_ERR_NO_DOMAIN
    for (const c of [8, 55, 67, 74]) expect(kindForCode(c)).toBe('invalid'); // INVALID_ARG, OPERATION_INVALID, CONFIG_UNSUPPORTED, ARGUMENT_UNSUPPORTED
    for (const c of [1, 9, 38, 39]) expect(kindForCode(c)).toBe('other');
  });
});

describe('socketPathForUri', () => {
  const only = (...paths: string[]) => (p: string) => paths.includes(p);

  it('picks the system daemon socket, virtqemud when only that exists, ?socket= over both', () => {
    expect(socketPathForUri('qemu:///system', only('/run/libvirt/libvirt-sock'))).toBe('/run/libvirt/libvirt-sock');
    expect(socketPathForUri('qemu:///system', only('/run/libvirt/virtqemud-sock'))).toBe('/run/libvirt/virtqemud-sock');
    expect(socketPathForUri('qemu:///system', only('/run/libvirt/libvirt-sock', '/run/libvirt/virtqemud-sock'))).toBe('/run/libvirt/libvirt-sock');
    expect(socketPathForUri('qemu:///system', only())).toBe('/run/libvirt/libvirt-sock'); // the error then names libvirtd's
    expect(socketPathForUri('qemu:///system?socket=/tmp/x.sock', only('/run/libvirt/libvirt-sock'))).toBe('/tmp/x.sock');
    expect(socketPathForUri('qemu+unix:///system?socket=/tmp/y.sock', only())).toBe('/tmp/y.sock');
  });

  it('refuses session and remote URIs, saying only local system sockets are supported', () => {
    for (const uri of ['qemu:///session', 'qemu+ssh://root@host/system', 'qemu+tcp://host:16509/system', 'qemu://host/system', 'qemu+tls://h/system', 'not a uri']) {
      let err: unknown;
      try {
        socketPathForUri(uri, only('/run/libvirt/libvirt-sock'));
      } catch (e) {
        err = e;
      }
      expect(err, uri).toBeInstanceOf(LibvirtRpcError);
      expect((err as LibvirtRpcError).kind).toBe('other');
      expect((err as LibvirtRpcError).message).toMatch(/only local system sockets are supported/);
    }
  });

  it('opens the daemon with the URI minus the client-side parts', () => {
    expect(daemonUri('qemu:///system')).toBe('qemu:///system');
    expect(daemonUri('qemu+unix:///system?socket=/tmp/x')).toBe('qemu:///system');
  });
});

describe('CPU maps', () => {
  it('sets CPU n at bit n%8 of byte n/8, as small as the highest CPU allows', () => {
    expect(hex(cpumapFromList([0]))).toBe('01');
    expect(hex(cpumapFromList([7]))).toBe('80');
    expect(hex(cpumapFromList([8]))).toBe('0001');
    expect(hex(cpumapFromList([0, 9, 3]))).toBe('0902');
    expect(hex(cpumapFromList([1, 1]))).toBe('02');
    expect(() => cpumapFromList([])).toThrow(/empty/);
    expect(() => cpumapFromList([-1])).toThrow(XdrError);
    expect(() => cpumapFromList([2048])).toThrow(/beyond/); // REMOTE_CPUMAP_MAX is 256 bytes
    expect(cpumapFromList([2047]).length).toBe(256);
  });

  it('reads maps back, dropping CPUs past the host', () => {
    expect(cpumapLength(1)).toBe(1);
    expect(cpumapLength(8)).toBe(1);
    expect(cpumapLength(9)).toBe(2);
    expect(cpuListFromMap(cpumapFromList([0, 9, 3]))).toEqual([0, 3, 9]);
    expect(cpuListFromMap(Buffer.from([0xff]), 2)).toEqual([0, 1]);
    // Two vCPUs, maplen 2: vcpu0 -> 0,8; vcpu1 -> 15
    expect(cpuListsFromMaps(Buffer.from([0x01, 0x01, 0x00, 0x80]), 2, 2)).toEqual([[0, 8], [15]]);
    expect(cpuListsFromMaps(Buffer.from([0x03, 0x00]), 1, 2, 1)).toEqual([[0]]);
    expect(() => cpuListsFromMaps(Buffer.from([1]), 2, 1)).toThrow(XdrError);
  });
});

// ------------------------------------------------------------------- fake daemon

const dir = mkdtempSync(join(tmpdir(), 'vmlet-rpc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const version = (n: bigint) => new XdrWriter().uhyper(n).bytes();
const fakes: FakeDaemon[] = [];
const clients: LibvirtRpc[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function fake(handlers: Partial<Record<number, Handler>>, auth?: number[]): Promise<FakeDaemon> {
  const f = await new FakeDaemon(dir, handlers, auth).listen();
  fakes.push(f);
  return f;
}

function client(f: FakeDaemon, callTimeoutMs?: number): LibvirtRpc {
  const c = new LibvirtRpc({ uri: `qemu:///system?socket=${f.path}`, ...(callTimeoutMs ? { callTimeoutMs } : {}) });
  clients.push(c);
  return c;
}


const procs = (f: FakeDaemon) => f.calls.map((c) => c.header.proc);

describe('connection against a fake daemon', () => {
  it('connects lazily: AUTH_LIST, CONNECT_OPEN with the bare URI, then the call', async () => {
    const f = await fake({ [Proc.CONNECT_GET_LIB_VERSION]: (c, d) => d.reply(c, version(9_000_000n)) });
    const c = client(f);
    expect(f.connections).toBe(0);
    expect(await c.libVersion()).toBe(9_000_000);
    expect(procs(f)).toEqual([Proc.AUTH_LIST, Proc.CONNECT_OPEN, Proc.CONNECT_GET_LIB_VERSION]);
    const open = new XdrReader(f.calls[1]!.payload);
    expect(open.optional((r) => r.string())).toBe('qemu:///system'); // ?socket= is ours, not the daemon's
    expect(open.uint()).toBe(0);
    expect(f.calls.map((x) => x.header.serial)).toEqual([1, 2, 3]);
    await c.connect(); // idempotent: no second handshake
    expect(f.connections).toBe(1);
  });

  it('goes on with an empty auth list, does polkit when asked, refuses SASL with the reason', async () => {
    const empty = await fake({}, []);
    await client(empty).connect();
    expect(procs(empty)).toEqual([Proc.AUTH_LIST, Proc.CONNECT_OPEN]);

    const polkit = await fake({}, [AuthType.POLKIT]);
    await client(polkit).connect();
    expect(procs(polkit)).toEqual([Proc.AUTH_LIST, Proc.AUTH_POLKIT, Proc.CONNECT_OPEN]);

    const sasl = await fake({}, [AuthType.SASL]);
    const err = await rejection(client(sasl).connect());
    expect(err.message).toMatch(/SASL authentication is not supported/);
    expect(err.kind).toBe('other');
    expect(procs(sasl)).toEqual([Proc.AUTH_LIST]);
  });

  it('matches replies by serial when the daemon answers out of order, ignoring keepalive and events', async () => {
    const held: Call[] = [];
    const f = await fake({
      [Proc.CONNECT_GET_LIB_VERSION]: (call) => {
        held.push(call);
        if (held.length < 3) return;
        // A keepalive PING and a domain event first: neither answers anything.
        call.socket.write(encodePacket({ prog: KEEPALIVE_PROGRAM, vers: 1, proc: 1, type: MessageType.MESSAGE, serial: held[0]!.header.serial, status: 0 }));
        call.socket.write(encodePacket({ prog: REMOTE_PROGRAM, vers: 1, proc: 107, type: MessageType.MESSAGE, serial: held[0]!.header.serial, status: 0 }, Buffer.alloc(8)));
        // Replies in reverse order, all in one write so framing must split them.
        const packets = held.reverse().map((h, i) => encodePacket({ ...h.header, type: MessageType.REPLY, status: 0 }, version(BigInt(h.header.serial * 100 + i))));
        call.socket.write(Buffer.concat(packets));
      },
    });
    const c = client(f);
    await c.connect();
    const got = await Promise.all([c.libVersion(), c.libVersion(), c.libVersion()]);
    // Serials 3, 4, 5 answered in reverse: each promise still gets its own serial's value.
    expect(got).toEqual([302, 401, 500]);
  });

  it('turns a remote_error into LibvirtRpcError with libvirt’s code, domain, message and kind', async () => {
    const f = await fake({ [Proc.DOMAIN_LOOKUP_BY_NAME]: (c, d) => d.fail(c, 42, "Domain not found: no domain with matching name 'gone'") });
    const err = await rejection(client(f).lookupDomain('gone'));
    expect(err).toMatchObject({ code: 42, domain: 10, kind: 'not-found', op: 'lookupDomain', message: "Domain not found: no domain with matching name 'gone'" });
    const args = new XdrReader(f.calls.at(-1)!.payload);
    expect(args.string()).toBe('gone');
    args.end();
  });

  it('refuses bad arguments before sending them', async () => {
    const f = await fake({});
    const c = client(f);
    const dom = { name: 'x', uuid: '8fed2cf1-1f9f-4766-8244-b8a8f1737e54', id: 1 };
    expect((await rejection(c.pinVcpu(dom, 0, [], 1))).kind).toBe('invalid');
    expect((await rejection(c.setVcpus(dom, -1, 1))).kind).toBe('invalid');
    expect((await rejection(c.setMemory({ ...dom, uuid: 'nope' }, 1, 1))).kind).toBe('invalid');
    expect(f.connections).toBe(0);
  });

  it('times a call out with kind connection and keeps the connection for the next call', async () => {
    let n = 0;
    const f = await fake({ [Proc.CONNECT_GET_LIB_VERSION]: (c, d) => (++n === 1 ? undefined : d.reply(c, version(1n))) });
    const c = client(f, 200);
    const t0 = Date.now();
    const err = await rejection(c.libVersion());
    expect(err.kind).toBe('connection');
    expect(err.message).toMatch(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(await c.libVersion()).toBe(1);
    expect(f.connections).toBe(1);
  });

  it('rejects every call in flight when the daemon drops the socket, and reconnects on the next call', async () => {
    let dropped = false;
    const f = await fake({
      [Proc.CONNECT_GET_LIB_VERSION]: (c, d) => {
        if (dropped) return d.reply(c, version(2n));
        if (f.calls.filter((x) => x.header.proc === Proc.CONNECT_GET_LIB_VERSION).length === 2) {
          dropped = true;
          c.socket.destroy();
        }
      },
    });
    const c = client(f);
    await c.connect();
    const errs = await Promise.all([rejection(c.libVersion()), rejection(c.libVersion())]);
    expect(errs.map((e) => e.kind)).toEqual(['connection', 'connection']);
    expect(await c.libVersion()).toBe(2);
    expect(f.connections).toBe(2);
  });

  it('fails with kind connection when nothing listens on the socket', async () => {
    const missing = new LibvirtRpc({ uri: 'qemu:///system', socketPath: join(dir, 'nobody-home.sock') });
    const e1 = await rejection(missing.libVersion());
    expect(e1).toMatchObject({ kind: 'connection', op: 'libVersion' });
    expect(e1.message).toMatch(/nobody-home\.sock/);
    const file = join(dir, 'plain-file');
    writeFileSync(file, '');
    const e2 = await rejection(new LibvirtRpc({ uri: `qemu:///system?socket=${file}` }).connect());
    expect(e2.kind).toBe('connection');
  });

  it('refuses a session URI before touching any socket', async () => {
    const err = await rejection(new LibvirtRpc({ uri: 'qemu:///session' }).libVersion());
    expect(err.kind).toBe('other');
    expect(err.message).toMatch(/only local system sockets are supported/);
  });
});

// ------------------------------------------------------------------- bulk stats and getInfo

const UUID_A = '8fed2cf1-1f9f-4766-8244-b8a8f1737e54';
const UUID_B = '0b5e6a3c-2d4f-4e1a-9c7b-5a6d7e8f9012';
const domA: RpcDomain = { name: 'vm-a', uuid: UUID_A, id: 3 };
const domB: RpcDomain = { name: 'vm-b', uuid: UUID_B, id: 4 };

/** remote_connect_get_all_domain_stats_ret as libvirtd writes it, from records of typed params. */
function statsReply(records: Array<{ dom: RpcDomain; params: TypedParam[] }>): Buffer {
  const x = new XdrWriter();
  x.uint(records.length);
  for (const r of records) {
    encodeDomain(x, { name: r.dom.name, uuid: uuidFromString(r.dom.uuid), id: r.dom.id });
    x.array(r.params, encodeTypedParam);
  }
  return x.bytes();
}

/** remote_domain_get_info_ret: state is an unsigned char and nrVirtCpu an unsigned short, each a whole XDR word. */
function infoReply(i: { state: number; maxMem: bigint; memory: bigint; vcpus: number; cpuTime: bigint }): Buffer {
  return new XdrWriter().uint(i.state).uhyper(i.maxMem).uhyper(i.memory).uint(i.vcpus).uhyper(i.cpuTime).bytes();
}

/** The arguments of a CONNECT_GET_ALL_DOMAIN_STATS call, decoded as libvirtd would. */
function statsArgs(call: Call): { doms: Array<{ name: string; uuid: string; id: number }>; stats: number; flags: number } {
  const r = new XdrReader(call.payload);
  const doms = r.array(decodeDomain).map((d) => ({ name: d.name, uuid: uuidToString(d.uuid), id: d.id }));
  const stats = r.uint();
  const flags = r.uint();
  r.end();
  return { doms, stats, flags };
}

describe('getAllDomainStats and getInfo against a fake daemon', () => {
  it('has libvirt’s group bits and flags', () => {
    expect(DOMAIN_STATS).toMatchObject({ STATE: 1, CPU_TOTAL: 2, BALLOON: 4, VCPU: 8, INTERFACE: 16, BLOCK: 32, PERF: 64, IOTHREAD: 128, MEMORY: 256, DIRTYRATE: 512, VM: 1024 });
    expect(GET_ALL_DOMAINS_STATS).toMatchObject({ ACTIVE: 1, INACTIVE: 2, PERSISTENT: 4, TRANSIENT: 8, RUNNING: 16, PAUSED: 32, SHUTOFF: 64, OTHER: 128 });
    expect(GET_ALL_DOMAINS_STATS.NOWAIT).toBe(0x2000_0000);
    expect(GET_ALL_DOMAINS_STATS.BACKING).toBe(0x4000_0000);
    expect(GET_ALL_DOMAINS_STATS.ENFORCE_STATS).toBe(0x8000_0000);
  });

  it('sends an empty domain list, the groups and the flags; decodes each record’s domain and typed params', async () => {
    const f = await fake({
      [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) =>
        d.reply(
          c,
          statsReply([
            {
              dom: domA,
              params: [
                { field: 'state.state', type: 'int', value: 1 },
                { field: 'cpu.time', type: 'ullong', value: 123_456_789_012 },
                { field: 'balloon.current', type: 'ullong', value: 262_144 },
                { field: 'vcpu.current', type: 'uint', value: 2 },
                { field: 'huge', type: 'ullong', value: (1n << 63n) + 5n },
                { field: 'block.0.name', type: 'string', value: 'vda' },
                { field: 'flag', type: 'boolean', value: true },
                { field: 'ratio', type: 'double', value: 0.25 },
                { field: '__proto__', type: 'int', value: 7 },
              ],
            },
            { dom: { ...domB, id: -1 }, params: [] },
          ]),
        ),
    });
    const got = await client(f).getAllDomainStats(DOMAIN_STATS.STATE | DOMAIN_STATS.CPU_TOTAL, GET_ALL_DOMAINS_STATS.ACTIVE);
    const call = f.calls.at(-1)!;
    expect(call.header.proc).toBe(344);
    expect(hex(call.payload)).toBe('00000000' + '00000003' + '00000001'); // doms<> empty, stats, flags
    expect(got).toHaveLength(2);
    expect(got[0]!.dom).toEqual(domA);
    expect(got[0]!.params).toEqual({
      'state.state': 1,
      'cpu.time': 123_456_789_012,
      'balloon.current': 262_144,
      'vcpu.current': 2,
      huge: (1n << 63n) + 5n, // past 2^53: exact, as bigint
      'block.0.name': 'vda',
      flag: true,
      ratio: 0.25,
      ['__proto__']: 7,
    });
    expect(Object.getPrototypeOf(got[0]!.params)).toBe(Object.prototype); // a field named __proto__ stays a key
    expect(got[1]).toEqual({ dom: { ...domB, id: -1 }, params: {} });
  });

  it('sends the domains when given (libvirt looks them up by UUID); takes a set bit 31 as `|` makes it', async () => {
    const f = await fake({ [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) => d.reply(c, statsReply([])) });
    const c = client(f);
    const flags = GET_ALL_DOMAINS_STATS.ACTIVE | GET_ALL_DOMAINS_STATS.ENFORCE_STATS;
    expect(flags).toBeLessThan(0); // JavaScript's | is signed
    expect(await c.getAllDomainStats(DOMAIN_STATS.BALLOON, flags, [domA, domB])).toEqual([]);
    expect(statsArgs(f.calls.at(-1)!)).toEqual({ doms: [domA, domB], stats: 4, flags: 0x8000_0001 });
    const raw = f.calls.at(-1)!.payload;
    expect(hex(raw.subarray(0, 8))).toBe('00000002' + '00000004'); // count, then "vm-a"'s length
    expect(hex(raw.subarray(-8))).toBe('00000004' + '80000001');
  });

  it('refuses flags that are not 32 bits, and a domain list past REMOTE_DOMAIN_LIST_MAX, before sending', async () => {
    const f = await fake({});
    const c = client(f);
    for (const bad of [2 ** 32, -(2 ** 31) - 1, 1.5, Number.NaN]) {
      expect((await rejection(c.getAllDomainStats(1, bad))).kind).toBe('invalid');
      expect((await rejection(c.getAllDomainStats(bad, 0))).kind).toBe('invalid');
    }
    const many = Array.from({ length: 16_385 }, () => domA);
    const err = await rejection(c.getAllDomainStats(1, 0, many));
    expect(err).toMatchObject({ kind: 'invalid', op: 'getAllDomainStats' });
    expect(err.message).toMatch(/16385 items exceeds its limit of 16384/);
    expect(f.connections).toBe(0);
  });

  it('refuses a reply whose record has more params than REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX', async () => {
    const x = new XdrWriter().uint(1);
    encodeDomain(x, { name: 'vm-a', uuid: uuidFromString(UUID_A), id: 3 });
    x.uint(4097);
    for (let i = 0; i < 4097; i++) encodeTypedParam(x, { field: 'f', type: 'int', value: i });
    const f = await fake({ [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) => d.reply(c, x.bytes()) });
    const err = await rejection(client(f).getAllDomainStats(1, 0));
    expect(err).toMatchObject({ kind: 'other', op: 'getAllDomainStats' });
    expect(err.message).toMatch(/reply does not decode: array of 4097 items exceeds its limit of 4096/);
  });

  it('decodes getInfo, the unsigned char and short as whole words', async () => {
    const f = await fake({
      [Proc.DOMAIN_GET_INFO]: (c, d) => d.reply(c, infoReply({ state: 1, maxMem: 524_288n, memory: 262_144n, vcpus: 2, cpuTime: 98_760_000_000n })),
    });
    expect(await client(f).getInfo(domA)).toEqual({ state: 1, maxMemKiB: 524_288, memoryKiB: 262_144, vcpus: 2, cpuTimeNs: 98_760_000_000 });
    const call = f.calls.at(-1)!;
    expect(call.header.proc).toBe(16);
    const args = new XdrReader(call.payload);
    expect(uuidToString(decodeDomain(args).uuid)).toBe(UUID_A);
    args.end();
  });
});

describe('Libvirt wrapper: active domains over the RPC client', () => {
  const silent = pino({ level: 'silent' });
  const wrappers: Libvirt[] = [];
  afterEach(async () => {
    await Promise.all(wrappers.splice(0).map((l) => l.close()));
  });
  // activeDomainNames and activeDomainInfo use vmlet's RPC client only, never the binding.
  const wrapper = (f: FakeDaemon) => {
    const l = new Libvirt(`qemu:///system?socket=${f.path}`, silent);
    wrappers.push(l);
    return l;
  };
  const state = (dom: RpcDomain) => ({ dom, params: [{ field: 'state.state', type: 'int' as const, value: 1 }, { field: 'state.reason', type: 'int' as const, value: 1 }] });
  const domC: RpcDomain = { name: 'not-ours', uuid: '11111111-2222-3333-4444-555555555555', id: 9 };

  it('activeDomainNames: one STATE call for the running domains, nothing else', async () => {
    const f = await fake({ [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) => d.reply(c, statsReply([state(domA), state(domB), state(domC)])) });
    const lv = wrapper(f);
    expect(await lv.activeDomainNames()).toEqual(new Set(['vm-a', 'vm-b', 'not-ours']));
    expect(await lv.activeDomainNames(new Set(['vm-b', 'vm-gone']))).toEqual(new Set(['vm-b']));
    const calls = f.calls.filter((c) => c.header.proc === Proc.CONNECT_GET_ALL_DOMAIN_STATS);
    expect(calls.map(statsArgs)).toEqual([
      { doms: [], stats: DOMAIN_STATS.STATE, flags: GET_ALL_DOMAINS_STATS.ACTIVE },
      { doms: [], stats: DOMAIN_STATS.STATE, flags: GET_ALL_DOMAINS_STATS.ACTIVE },
    ]);
    expect(procs(f).filter((p) => p !== Proc.AUTH_LIST && p !== Proc.CONNECT_OPEN)).toEqual([344, 344]);
  });

  it('activeDomainInfo: the STATE call, then getInfo for the wanted domains only; one gone meanwhile is left out', async () => {
    const infos = new Map([
      [UUID_A, infoReply({ state: 1, maxMem: 524_288n, memory: 262_144n, vcpus: 2, cpuTime: 5_000_000_000n })],
      [UUID_B, undefined], // destroyed between the list and its getInfo
    ]);
    const f = await fake({
      [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) => d.reply(c, statsReply([state(domA), state(domB), state(domC)])),
      [Proc.DOMAIN_GET_INFO]: (c, d) => {
        const uuid = uuidToString(decodeDomain(new XdrReader(c.payload)).uuid);
        const r = infos.get(uuid);
        if (r) d.reply(c, r);
        else d.fail(c, 42, `Domain not found: no domain with matching uuid '${uuid}'`);
      },
    });
    const t0 = performance.timeOrigin + performance.now();
    const got = await wrapper(f).activeDomainInfo(new Set(['vm-a', 'vm-b']));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ name: 'vm-a', state: 1, maxMemKiB: 524_288, memoryKiB: 262_144, vcpus: 2, cpuTimeNs: 5_000_000_000 });
    expect(got[0]!.sampledAtMs).toBeGreaterThanOrEqual(t0);
    // getInfo went to vm-a and vm-b (sent together), never to the domain that is not ours.
    const asked = f.calls.filter((c) => c.header.proc === Proc.DOMAIN_GET_INFO).map((c) => decodeDomain(new XdrReader(c.payload)).name);
    expect(asked.sort()).toEqual(['vm-a', 'vm-b']);
  });

  it('retries once after a lost connection; reports libvirt’s other errors as VirtError', async () => {
    let n = 0;
    const f = await fake({
      [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c, d) => {
        if (++n === 1) return c.socket.destroy(); // libvirtd restarting
        if (n === 2) return d.reply(c, statsReply([state(domA)]));
        d.fail(c, 1, 'internal error: something broke');
      },
    });
    const lv = wrapper(f);
    expect(await lv.activeDomainNames()).toEqual(new Set(['vm-a']));
    expect(f.connections).toBe(2);
    const err = await lv.activeDomainNames().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VirtError);
    expect(err).toMatchObject({ kind: 'other', op: 'active domains', message: 'active domains: internal error: something broke' });
  });

  it('gives up with kind connection after the retry fails too', async () => {
    const f = await fake({ [Proc.CONNECT_GET_ALL_DOMAIN_STATS]: (c) => c.socket.destroy() });
    const err = await wrapper(f).activeDomainInfo().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VirtError);
    expect((err as VirtError).kind).toBe('connection');
    expect(f.connections).toBe(2);
  });
});
