// test/serial-files.ts: every integration test file that touches node-wide state runs alone.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/vmlet.js';
import { NODE_WIDE, SERIAL_FILES } from '../serial-files.js';

describe('test/serial-files.ts', () => {
  const files = readdirSync(join(ROOT, 'test/integration')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/integration/${f}`);

  it('lists every integration test file whose source looks at node-wide state', () => {
    const nodeWide = files.filter((f) => NODE_WIDE.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(nodeWide.length).toBeGreaterThan(0);
    expect(nodeWide.filter((f) => !SERIAL_FILES.includes(f))).toEqual([]);
  });

  it('lists only files that exist', () => {
    expect(SERIAL_FILES.filter((f) => !existsSync(join(ROOT, f)))).toEqual([]);
  });
});
