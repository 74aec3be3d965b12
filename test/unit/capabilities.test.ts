// A sandboxed container's capabilities from the CRI, as containerd computes them.
import { describe, expect, it } from 'vitest';
import { ALL_CAPABILITIES, containerCapabilities, DEFAULT_CAPABILITIES } from '../../src/guest/capabilities.js';
import { VmletError } from '../../src/errors.js';

const sorted = (a: string[]) => [...a].sort();

describe('container capabilities', () => {
  it('starts from containerd\'s default set', () => {
    expect(sorted(containerCapabilities([], [], false))).toEqual(sorted(DEFAULT_CAPABILITIES));
  });
  it('adds and drops by name, with or without CAP_, any case', () => {
    const caps = containerCapabilities(['NET_ADMIN', 'cap_sys_time'], ['CHOWN', 'CAP_KILL'], false);
    expect(caps).toContain('CAP_NET_ADMIN');
    expect(caps).toContain('CAP_SYS_TIME');
    expect(caps).not.toContain('CAP_CHOWN');
    expect(caps).not.toContain('CAP_KILL');
  });
  it('applies ALL first, then the named ones (ALL + drop CHOWN = all but CHOWN; drop ALL + add one = that one)', () => {
    expect(containerCapabilities(['ALL'], ['CHOWN'], false)).toEqual(ALL_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN'));
    expect(containerCapabilities(['NET_RAW'], ['ALL'], false)).toEqual(['CAP_NET_RAW']);
    expect(containerCapabilities([], ['ALL'], false)).toEqual([]);
  });
  it('gives a privileged container all of them, and refuses an unknown name naming the field', () => {
    expect(containerCapabilities([], ['ALL'], true)).toEqual([...ALL_CAPABILITIES]);
    let err: unknown;
    try {
      containerCapabilities(['FLY'], [], false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VmletError);
    expect((err as VmletError).message).toMatch(/add_capabilities: unknown capability "FLY"/);
  });
});
