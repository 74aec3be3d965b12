// XML through one library, @xmldom/xmldom (the W3C DOM's DOMParser and XMLSerializer; see
// docs/design.md, "Domain XML"). XML is written as plain data (el()) and serialised by the library,
// which does all the escaping; it is read with the library's namespace-aware parser, strictly: a
// document that is not well-formed is an error, never half read.
import { DOMImplementation, DOMParser, XMLSerializer, type Document, type Element } from '@xmldom/xmldom';
import { VmletError } from '../errors.js';

/** An element as data: qualified name, attributes in order, children (elements and text). */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}
export type XmlNode = XmlElement | string;

const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';
// XML 1.0's Char production leaves out most C0 controls, U+FFFE, U+FFFF and unpaired surrogates.
// eslint-disable-next-line no-control-regex -- the characters XML 1.0 cannot carry
const NOT_XML_CHAR = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** An element; attributes given as undefined and children given as undefined or false are left out. */
export function el(name: string, attrs: Record<string, string | undefined> = {}, ...children: (XmlNode | undefined | false)[]): XmlElement {
  const set: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) set[k] = v;
  return { name, attrs: set, children: children.filter((c): c is XmlNode => c !== undefined && c !== false) };
}

/**
 * The element as an XML document (no declaration, no trailing newline), indented two spaces a
 * level where an element holds only elements. A prefixed name needs its `xmlns:prefix` attribute
 * on the element or an ancestor. A value XML cannot carry (a control character) is refused.
 */
export function renderXml(root: XmlElement): string {
  const doc = new DOMImplementation().createDocument(null, '', null);
  doc.appendChild(toDom(doc, root, new Map(), 0));
  return new XMLSerializer().serializeToString(doc, { requireWellFormed: true });
}

function toDom(doc: Document, x: XmlElement, scope: ReadonlyMap<string, string>, depth: number): Element {
  const ns = new Map(scope);
  for (const [k, v] of Object.entries(x.attrs)) if (k.startsWith('xmlns:')) ns.set(k.slice('xmlns:'.length), v);
  const colon = x.name.indexOf(':');
  let e: Element;
  if (colon < 0) {
    e = doc.createElement(x.name);
  } else {
    const uri = ns.get(x.name.slice(0, colon));
    if (uri === undefined) throw new VmletError('internal', `XML element <${x.name}> has no xmlns:${x.name.slice(0, colon)} declaration in scope`);
    e = doc.createElementNS(uri, x.name);
  }
  for (const [k, v] of Object.entries(x.attrs)) {
    if (k.startsWith('xmlns:')) e.setAttributeNS(XMLNS_NS, k, representable(v));
    else e.setAttribute(k, representable(v));
  }
  const indent = x.children.length > 0 && x.children.every((c) => typeof c !== 'string');
  for (const c of x.children) {
    if (indent) e.appendChild(doc.createTextNode('\n' + '  '.repeat(depth + 1)));
    e.appendChild(typeof c === 'string' ? doc.createTextNode(representable(c)) : toDom(doc, c, ns, depth + 1));
  }
  if (indent) e.appendChild(doc.createTextNode('\n' + '  '.repeat(depth)));
  return e;
}

function representable(s: string): string {
  if (NOT_XML_CHAR.test(s)) throw new VmletError('internal', `value not representable in XML: ${JSON.stringify(s)}`);
  return s;
}

/** Parses a whole XML document; anything not well-formed (even a warning of the parser's) is an error. */
export function parseXml(text: string): Document {
  let first: string | undefined;
  try {
    return new DOMParser({
      // XML 1.0 (section 2.11): only CR LF and a lone CR end a line. The library's default also turns
      // U+0085, U+2028 and U+2029 into LF (XML 1.1's rule), which would change JSON in <metadata>.
      normalizeLineEndings: (s) => s.replace(/\r\n?/g, '\n'),
      onError: (level, message) => {
        first ??= `${level}: ${message}`;
        throw new VmletError('internal', first);
      },
    }).parseFromString(text, 'text/xml');
  } catch (err) {
    throw new VmletError('internal', `not well-formed XML: ${first ?? (err as Error).message}`, { cause: err });
  }
}

/** The element children of a node, optionally only those with a local name. */
export function childElements(parent: Element | Document, localName?: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === n.ELEMENT_NODE && (localName === undefined || (n as Element).localName === localName)) out.push(n as Element);
  }
  return out;
}

/** Serialises a parsed document back (what the parser kept: declaration, comments, CDATA, text). */
export function serializeXml(doc: Document): string {
  return new XMLSerializer().serializeToString(doc);
}
