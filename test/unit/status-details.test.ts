// gRPC status messages are capped: one that echoes a huge request field must not pass the
// client's header size limit (the client would drop its whole connection).
import { describe, expect, it } from 'vitest';
import { capDetails, MAX_DETAILS_BYTES, toServiceError } from '../../src/cri/status.js';
import { notFound } from '../../src/errors.js';

describe('status details', () => {
  it('keeps short messages as they are', () => {
    expect(capDetails('container abc not found')).toBe('container abc not found');
  });
  it('cuts long ones on a character boundary and says how much was left out', () => {
    const id = '⬊é'.repeat(20_000); // 100 000 bytes of UTF-8
    const d = toServiceError(notFound(`container ${id} not found`)).details;
    expect(Buffer.byteLength(d)).toBeLessThanOrEqual(MAX_DETAILS_BYTES);
    expect(d).toMatch(/^container ⬊é⬊é/);
    expect(d).toMatch(/… \(\d+ more bytes\)$/);
    expect(d).not.toContain('\uFFFD');
  });
});
