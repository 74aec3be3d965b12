// Test support: XML read back as data in el()'s shape, so tests compare what libvirt reads
// (elements, attributes, text) whatever the quoting, attribute order and indentation.
import type { Element } from '@xmldom/xmldom';
import { childElements, parseXml, type XmlElement, type XmlNode } from '../../src/vm/xml.js';

/** The document element as data; whitespace-only text beside child elements (indentation) dropped. */
export function tree(xml: string): XmlElement {
  return toTree(parseXml(xml).documentElement!);
}

function toTree(e: Element): XmlElement {
  const attrs: Record<string, string> = {};
  for (let i = 0; i < e.attributes.length; i++) {
    const a = e.attributes.item(i)!;
    attrs[a.name] = a.value;
  }
  const hasElements = childElements(e).length > 0;
  const children: XmlNode[] = [];
  for (let n = e.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === n.ELEMENT_NODE) children.push(toTree(n as Element));
    else if ((n.nodeType === n.TEXT_NODE || n.nodeType === n.CDATA_SECTION_NODE) && !(hasElements && !n.nodeValue?.trim())) children.push(n.nodeValue ?? '');
  }
  return { name: e.tagName, attrs, children };
}

const elementsOf = (x: XmlElement) => x.children.filter((c): c is XmlElement => typeof c !== 'string');

/** The elements at a path of child names below `root` ('devices/disk'). */
export function at(root: XmlElement, path: string): XmlElement[] {
  return path.split('/').reduce((xs, name) => xs.flatMap((x) => elementsOf(x).filter((c) => c.name === name)), [root]);
}

/** The one element at a path; fails the test when there are none or several. */
export function one(root: XmlElement, path: string): XmlElement {
  const xs = at(root, path);
  if (xs.length !== 1) throw new Error(`expected one <${path}>, found ${xs.length}`);
  return xs[0]!;
}

/** Every element below `root` (root excluded), document order, optionally only those of a name. */
export function descendants(root: XmlElement, name?: string): XmlElement[] {
  return elementsOf(root).flatMap((c) => [...(name === undefined || c.name === name ? [c] : []), ...descendants(c, name)]);
}

/** The names of the child elements, in order. */
export const childNames = (x: XmlElement): string[] => elementsOf(x).map((c) => c.name);
