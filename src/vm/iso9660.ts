// An ISO 9660 image of one flat directory, built in memory: what a NoCloud seed needs, in the
// shape genisoimage gives it with `-joliet -rational-rock` (the flags cloud-utils' cloud-localds
// uses), so guests read it the same way: 8.3 names in the primary tree with Rock Ridge (RRIP
// 1.09: real names, r--r--r-- root files), and a Joliet tree (UCS-2 names) for Windows.
// Built here rather than by spawning genisoimage: that was CreateContainer's longest step
// (~30 ms of a pod's start), and every date can be fixed, so the same files give the same bytes.
// ECMA-119 (ISO 9660), the Joliet specification and RRIP/SUSP 1.09 define every field below.

const SECTOR = 2048;
/** genisoimage's default padding (its -pad): 150 zero sectors after the data, for CD readers' read-ahead. */
const PAD_SECTORS = 150;

export interface IsoFile {
  name: string;
  data: Buffer;
}

// -------------------------------------------------------------------------------- encodings

function both16(b: Buffer, at: number, v: number): void {
  b.writeUInt16LE(v, at);
  b.writeUInt16BE(v, at + 2);
}

function both32(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v, at);
  b.writeUInt32BE(v, at + 4);
}

/** A field of `len` bytes: `s` then spaces (a- and d-characters). */
function ascii(s: string, len: number): Buffer {
  return Buffer.from(s.padEnd(len, ' ').slice(0, len), 'latin1');
}

/** A Joliet field of `len` bytes: UCS-2 big-endian, padded with UCS-2 spaces. */
function ucs2(s: string, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i + 1 < len; i += 2) b.writeUInt16BE(i / 2 < s.length ? s.charCodeAt(i / 2) : 0x20, i);
  if (len % 2) b[len - 1] = 0x20;
  return b;
}

/** 7-byte directory record date (also RRIP TF's short form), UTC. */
function shortDate(epochSeconds: number): Buffer {
  const d = new Date(epochSeconds * 1000);
  return Buffer.from([d.getUTCFullYear() - 1900, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), 0]);
}

/** 17-byte volume descriptor date, UTC. */
function longDate(epochSeconds: number): Buffer {
  const d = new Date(epochSeconds * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return Buffer.concat([Buffer.from(`${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}00`, 'latin1'), Buffer.from([0])]);
}

// -------------------------------------------------------------------------------- names

/** 8.3 identifiers (ISO 9660 level 1, as genisoimage makes them: `meta-data` → `META_DAT.;1`), unique. */
export function isoNames(names: string[]): string[] {
  const used = new Set<string>();
  return names.map((n) => {
    const dot = n.lastIndexOf('.');
    const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
    let base = clean(dot > 0 ? n.slice(0, dot) : n).slice(0, 8);
    const ext = dot > 0 ? clean(n.slice(dot + 1)).slice(0, 3) : '';
    for (let i = 0; used.has(`${base}.${ext}`); i++) base = `${base.slice(0, 5)}${String(i).padStart(3, '0')}`;
    used.add(`${base}.${ext}`);
    return `${base}.${ext};1`;
  });
}

// -------------------------------------------------------------------------------- records

interface Entry {
  /** File identifier bytes: 0x00 (.), 0x01 (..) or the name. */
  id: Buffer;
  lba: number;
  size: number;
  dir: boolean;
  /** System use area (Rock Ridge entries), primary tree only. */
  su?: Buffer;
}

function dirRecord(e: Entry, date: Buffer): Buffer {
  const pad = e.id.length % 2 === 0 ? 1 : 0;
  const su = e.su ?? Buffer.alloc(0);
  const len = 33 + e.id.length + pad + su.length;
  if (len > 255) throw new RangeError(`ISO 9660 directory record for ${e.id.toString('latin1')} is ${len} bytes (255 at most)`);
  const r = Buffer.alloc(len + (len % 2));
  r[0] = r.length;
  both32(r, 2, e.lba);
  both32(r, 10, e.size);
  date.copy(r, 18);
  r[25] = e.dir ? 0x02 : 0;
  both16(r, 28, 1); // volume sequence number
  r[32] = e.id.length;
  e.id.copy(r, 33);
  su.copy(r, 33 + e.id.length + pad);
  return r;
}

/** Records packed into sectors (a record never crosses one). */
function dirExtent(records: Buffer[]): Buffer {
  const sectors: Buffer[] = [];
  let cur = Buffer.alloc(SECTOR);
  let at = 0;
  for (const r of records) {
    if (at + r.length > SECTOR) {
      sectors.push(cur);
      cur = Buffer.alloc(SECTOR);
      at = 0;
    }
    r.copy(cur, at);
    at += r.length;
  }
  sectors.push(cur);
  return Buffer.concat(sectors);
}

function susp(sig: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(sig, 'latin1'), Buffer.from([4 + body.length, 1]), body]);
}

/** RRIP PX: mode, links, uid 0, gid 0 (each both-endian 32). */
function px(mode: number, links: number): Buffer {
  const b = Buffer.alloc(32);
  both32(b, 0, mode);
  both32(b, 8, links);
  return susp('PX', b);
}

/** RRIP TF: modification, access and attribute-change dates (genisoimage's set). */
function tf(date: Buffer): Buffer {
  return susp('TF', Buffer.concat([Buffer.from([0x0e]), date, date, date]));
}

/** RRIP RR (1.09): which RRIP entries the record carries. */
const RR_PX = 0x01;
const RR_NM = 0x08;
const RR_TF = 0x80;
const rr = (flags: number) => susp('RR', Buffer.from([flags]));

const ER_ID = 'RRIP_1991A';
const ER_DES = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const ER_SRC = 'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

/** SUSP ER naming RRIP 1.09: too long for the root's record, so it sits in a continuation area. */
function er(): Buffer {
  return susp('ER', Buffer.concat([Buffer.from([ER_ID.length, ER_DES.length, ER_SRC.length, 1]), Buffer.from(ER_ID + ER_DES + ER_SRC, 'latin1')]));
}

function ce(lba: number, length: number): Buffer {
  const b = Buffer.alloc(24);
  both32(b, 0, lba);
  both32(b, 8, 0);
  both32(b, 16, length);
  return susp('CE', b);
}

// -------------------------------------------------------------------------------- image

function pathTable(rootLba: number, bigEndian: boolean): Buffer {
  const t = Buffer.alloc(SECTOR);
  t[0] = 1; // identifier length (the root's is one 0x00 byte)
  if (bigEndian) {
    t.writeUInt32BE(rootLba, 2);
    t.writeUInt16BE(1, 6);
  } else {
    t.writeUInt32LE(rootLba, 2);
    t.writeUInt16LE(1, 6);
  }
  return t;
}

function volumeDescriptor(o: { joliet: boolean; volumeId: string; sectors: number; ptL: number; ptM: number; root: Buffer; date: Buffer }): Buffer {
  const v = Buffer.alloc(SECTOR);
  const text = o.joliet ? ucs2 : ascii;
  v[0] = o.joliet ? 2 : 1;
  v.write('CD001', 1, 'latin1');
  v[6] = 1;
  text('LINUX', 32).copy(v, 8);
  text(o.volumeId, 32).copy(v, 40);
  both32(v, 80, o.sectors);
  if (o.joliet) v.write('%/E', 88, 'latin1'); // UCS-2 level 3
  both16(v, 120, 1); // volume set size
  both16(v, 124, 1); // volume sequence number
  both16(v, 128, SECTOR);
  both32(v, 132, 10); // path table size: the root's entry
  v.writeUInt32LE(o.ptL, 140);
  v.writeUInt32BE(o.ptM, 148);
  o.root.copy(v, 156);
  for (const [at, len] of [[190, 128], [318, 128], [446, 128], [574, 128]] as const) text('', len).copy(v, at);
  for (const at of [702, 739, 776]) text('', 37).copy(v, at);
  for (const at of [813, 830, 864]) o.date.copy(v, at); // creation, modification, effective
  v.write('0000000000000000', 847, 'latin1'); // expiration: none (its 17th byte stays 0)
  v[881] = 1; // file structure version
  return v;
}

/**
 * The image: sectors 0-15 empty, the primary and Joliet volume descriptors and the terminator,
 * four path tables, the Rock Ridge continuation area, the two root directories, the files (one
 * extent each, shared by both trees), then genisoimage's padding. Every date is `epochSeconds`.
 */
export function buildIso9660(volumeId: string, files: IsoFile[], epochSeconds: number): Buffer {
  const sd = shortDate(epochSeconds);
  const ld = longDate(epochSeconds);
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const names = isoNames(sorted.map((f) => f.name));
  // Fixed sectors: 16-18 descriptors, 19-22 path tables, 23 the continuation area (ER).
  const ceLba = 23;
  const erEntry = er();
  const rootRr = (dot: boolean) => Buffer.concat([...(dot ? [susp('SP', Buffer.from([0xbe, 0xef, 0]))] : []), rr(RR_PX | RR_TF), px(0o40555, 2), tf(sd), ...(dot ? [ce(ceLba, erEntry.length)] : [])]);
  const fileRr = (name: string) => Buffer.concat([rr(RR_PX | RR_NM | RR_TF), susp('NM', Buffer.concat([Buffer.from([0]), Buffer.from(name, 'latin1')])), px(0o100444, 1), tf(sd)]);

  // The directories' sizes do not depend on where things go: lay them out with placeholders first.
  const primary = (rootLba: number, rootSize: number, fileLbas: number[]) =>
    dirExtent([
      dirRecord({ id: Buffer.from([0]), lba: rootLba, size: rootSize, dir: true, su: rootRr(true) }, sd),
      dirRecord({ id: Buffer.from([1]), lba: rootLba, size: rootSize, dir: true, su: rootRr(false) }, sd),
      ...sorted.map((f, i) => dirRecord({ id: Buffer.from(names[i]!, 'latin1'), lba: fileLbas[i]!, size: f.data.length, dir: false, su: fileRr(f.name) }, sd)),
    ]);
  const joliet = (rootLba: number, rootSize: number, fileLbas: number[]) =>
    dirExtent([
      dirRecord({ id: Buffer.from([0]), lba: rootLba, size: rootSize, dir: true }, sd),
      dirRecord({ id: Buffer.from([1]), lba: rootLba, size: rootSize, dir: true }, sd),
      ...sorted.map((f, i) => dirRecord({ id: Buffer.from(f.name, 'utf16le').swap16(), lba: fileLbas[i]!, size: f.data.length, dir: false }, sd)),
    ]);
  const zeros = sorted.map(() => 0);
  const pSize = primary(0, 0, zeros).length;
  const jSize = joliet(0, 0, zeros).length;
  const pLba = ceLba + 1;
  const jLba = pLba + pSize / SECTOR;
  let next = jLba + jSize / SECTOR;
  const fileLbas = sorted.map((f) => {
    const at = next;
    next += Math.max(1, Math.ceil(f.data.length / SECTOR));
    return at;
  });
  const total = next + PAD_SECTORS;

  const img = Buffer.alloc(total * SECTOR);
  const put = (lba: number, b: Buffer) => b.copy(img, lba * SECTOR);
  const rootOf = (lba: number, size: number) => dirRecord({ id: Buffer.from([0]), lba, size, dir: true }, sd);
  put(16, volumeDescriptor({ joliet: false, volumeId, sectors: total, ptL: 19, ptM: 20, root: rootOf(pLba, pSize), date: ld }));
  put(17, volumeDescriptor({ joliet: true, volumeId, sectors: total, ptL: 21, ptM: 22, root: rootOf(jLba, jSize), date: ld }));
  const term = Buffer.alloc(SECTOR);
  term[0] = 255;
  term.write('CD001', 1, 'latin1');
  term[6] = 1;
  put(18, term);
  put(19, pathTable(pLba, false));
  put(20, pathTable(pLba, true));
  put(21, pathTable(jLba, false));
  put(22, pathTable(jLba, true));
  put(ceLba, erEntry);
  put(pLba, primary(pLba, pSize, fileLbas));
  put(jLba, joliet(jLba, jSize, fileLbas));
  sorted.forEach((f, i) => put(fileLbas[i]!, f.data));
  return img;
}
