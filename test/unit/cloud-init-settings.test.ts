// The cloud-init part of the VM's settings as the one parser reads it (parseVmSettings): names,
// sources, the precedence rule between the pod's and the container's annotations, the pod-only
// network-config. What the seed then contains: cloud-init.test.ts.
import { describe, expect, it } from 'vitest';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { ANNOTATION_BYTES, CLOUD_INIT_ANNOTATIONS } from '../../src/vm/cloud-init-settings.js';
import { invalidArgumentFrom as rejection } from '../helpers/errors.js';

const KEY1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1tJc0a2wTQwbXBpR8fKx1 alice@laptop';
const KEY2 = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7Zt3nq9+/x== bob@desk';

const parse = (pod: Record<string, string>, container: Record<string, string> = {}) => parseVmSettings({ sandboxAnnotations: pod, containerAnnotations: container, defaults: NODE_DEFAULTS });
const settings = (pod: Record<string, string>, container: Record<string, string> = {}) => parse(pod, container).cloudInit;

describe('cloud-init settings', () => {
  it('are read by the VM settings parser, which knows their names (no typo), with their sources', () => {
    expect([...CLOUD_INIT_ANNOTATIONS].sort()).toEqual(['vmlet.io/meta-data', 'vmlet.io/network-config', 'vmlet.io/ssh-authorized-keys', 'vmlet.io/user-data']);
    const s = parse({ 'vmlet.io/user-data': '#cloud-config\na: 1\n', 'vmlet.io/meta-data': 'b: 2\n', 'vmlet.io/network-config': 'static', 'vmlet.io/ssh-authorized-keys': KEY1 });
    expect(s.cloudInit).toMatchObject({ networkMode: 'static', sshAuthorizedKeys: [KEY1], config: { key: 'vmlet.io/user-data' }, metaData: { key: 'vmlet.io/meta-data' }, scripts: [] });
    expect(s.sources).toMatchObject({
      userData: 'pod annotation vmlet.io/user-data',
      metaData: 'pod annotation vmlet.io/meta-data',
      sshKeys: 'pod annotation vmlet.io/ssh-authorized-keys',
      networkConfig: 'pod annotation vmlet.io/network-config',
    });
    expect(parse({ VirtletCloudInitUserData: 'a: 1\n', VirtletCloudInitUserDataScript: '#!/bin/sh\n' }).sources.userData).toBe('pod annotation VirtletCloudInitUserData + VirtletCloudInitUserDataScript');
  });

  it("take each setting from the container's annotations first, the vmlet.io/ name first within one set", () => {
    const ci = settings({ 'vmlet.io/ssh-authorized-keys': KEY1, 'vmlet.io/user-data': '#cloud-config\na: 1\n', VirtletCloudInitMetaData: 'p: 1\n' }, { VirtletSSHKeys: KEY2, VirtletCloudInitUserDataScript: '#!/bin/sh\ntrue\n' });
    expect(ci.sshAuthorizedKeys).toEqual([KEY2]); // the container's alias beats the pod's vmlet.io/ name
    expect(ci.config).toBeUndefined(); // user-data is one setting: the container's script replaces the pod's cloud-config
    expect(ci.scripts).toEqual([{ key: 'VirtletCloudInitUserDataScript', text: '#!/bin/sh\ntrue\n' }]);
    expect(ci.metaData?.key).toBe('VirtletCloudInitMetaData'); // the container set none: the pod's
    // A bad annotation that loses is not read.
    expect(settings({ 'vmlet.io/user-data': 'not cloud-config' }, { 'vmlet.io/user-data': '#!/bin/sh\n' }).scripts).toHaveLength(1);
  });

  it("network-config is the pod's: a container may repeat it, not change it", () => {
    expect(settings({ 'vmlet.io/network-config': 'static' }, { 'vmlet.io/network-config': 'static' }).networkMode).toBe('static');
    expect(rejection(() => settings({}, { 'vmlet.io/network-config': 'dhcp' })).message).toMatch(
      /^container annotation vmlet\.io\/network-config="dhcp" differs from the pod's "both" \(default\): the pod's network is made at RunPodSandbox/,
    );
    expect(rejection(() => settings({}, { 'vmlet.io/network-config': 'off' })).message).toBe('annotation vmlet.io/network-config="off" is invalid: allowed both | static | dhcp');
  });

  it('refuse an oversized cloud-init annotation in either set, even one that loses', () => {
    const big = ' '.repeat(ANNOTATION_BYTES + 1);
    expect(rejection(() => settings({ VirtletSSHKeys: big }, { 'vmlet.io/ssh-authorized-keys': KEY1 })).message).toMatch(/^annotation VirtletSSHKeys is 262145 bytes/);
  });
});
