import { describe, expect, it } from 'vitest';
import { openFilesLimit, parseOpenFilesLimit } from '../../src/util/open-files.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('parseOpenFilesLimit', () => {
  it('reads the soft and hard limits of open files', () => {
    expect(parseOpenFilesLimit(LIMITS)).toEqual({ soft: 1024, hard: 524288 });
  });
  it('reads unlimited as Infinity', () => {
    expect(parseOpenFilesLimit(LIMITS.replace('1024                 524288', 'unlimited            unlimited'))).toEqual({ soft: Infinity, hard: Infinity });
  });
  it('says nothing when the line is absent', () => {
    expect(parseOpenFilesLimit('Limit Soft Limit Hard Limit Units\nMax cpu time unlimited unlimited seconds\n')).toBeUndefined();
  });
  it('reads this process\'s own limit from /proc', () => {
    const l = openFilesLimit();
    expect(l).toBeDefined();
    expect(l!.soft).toBeGreaterThan(0);
    expect(l!.soft).toBeLessThanOrEqual(l!.hard);
  });
});
