import { describe, expect, it } from 'vitest';
import { formatReference, parseReference, tagReference } from '../../src/image/reference.js';

const D = 'sha256:' + 'ab'.repeat(32);

describe('image references', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['kubevirt/fedora-cloud-container-disk-demo', 'docker.io/kubevirt/fedora-cloud-container-disk-demo:latest'],
    ['quay.io/containerdisks/fedora:39', 'quay.io/containerdisks/fedora:39'],
    ['127.0.0.1:5000/vmlet/disk', '127.0.0.1:5000/vmlet/disk:latest'],
    ['localhost/a/b/c:v1.0-rc_1', 'localhost/a/b/c:v1.0-rc_1'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`127.0.0.1:5000/x:tag@${D}`, `127.0.0.1:5000/x:tag@${D}`],
  ])('%s → %s', (input, expected) => {
    expect(formatReference(parseReference(input))).toBe(expected);
  });

  it('keeps digest-only references out of repo tags', () => {
    expect(tagReference(parseReference(`busybox@${D}`))).toBeUndefined();
    expect(tagReference(parseReference('busybox'))).toBe('docker.io/library/busybox:latest');
  });

  it.each([
    ['', /empty/],
    [' busybox', /spaces/],
    ['Busybox', /lowercase/],
    ['busybox:', /tag/],
    ['busybox:-x', /tag/],
    ['busybox@sha256:abc', /digest/],
    ['busybox@md5:' + 'a'.repeat(32), /digest/],
    ['a//b', /repository path/],
    ['bad_host!:5000/x', /registry host|lowercase/],
  ])('rejects %j naming the problem', (input, why) => {
    expect(() => parseReference(input)).toThrow(why);
    try {
      parseReference(input);
    } catch (err) {
      expect((err as { kind: string }).kind).toBe('invalid-argument');
    }
  });
});
