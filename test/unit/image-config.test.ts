// The image config → container process rules (containerd's CRI behaviour).
import { describe, expect, it } from 'vitest';
import { DEFAULT_PATH_ENV, containerArgs, containerEnv, runConfigOf, type RunConfig } from '../../src/image/image-config.js';
import { VmletError } from '../../src/errors.js';

const image = (over: Partial<RunConfig> = {}): RunConfig => ({ entrypoint: [], cmd: [], env: [], workingDir: '', user: '', exposedPorts: [], ...over });

describe('runConfigOf', () => {
  it('reads what a config says, with defaults for what it leaves out', () => {
    expect(
      runConfigOf({
        config: {
          User: 'app',
          Entrypoint: ['/docker-entrypoint.sh'],
          Cmd: ['nginx', '-g', 'daemon off;'],
          Env: ['PATH=/usr/bin', 'NGINX_VERSION=1.27'],
          WorkingDir: '/srv',
          StopSignal: 'SIGQUIT',
          ExposedPorts: { '80/tcp': {}, '443/tcp': {} },
        },
      }),
    ).toEqual({
      entrypoint: ['/docker-entrypoint.sh'],
      cmd: ['nginx', '-g', 'daemon off;'],
      env: ['PATH=/usr/bin', 'NGINX_VERSION=1.27'],
      workingDir: '/srv',
      user: 'app',
      stopSignal: 'SIGQUIT',
      exposedPorts: ['443/tcp', '80/tcp'],
    });
    expect(runConfigOf({})).toEqual(image());
    expect(runConfigOf({ config: { Entrypoint: null, Cmd: null, Env: null, ExposedPorts: null } })).toEqual(image());
  });
});

describe('containerArgs', () => {
  const nginx = image({ entrypoint: ['/entry.sh'], cmd: ['nginx', '-g', 'daemon off;'] });
  it('uses Entrypoint + Cmd when the pod sets neither command nor args', () => {
    expect(containerArgs(nginx, [], [])).toEqual(['/entry.sh', 'nginx', '-g', 'daemon off;']);
  });
  it('replaces Cmd with args, keeping the Entrypoint', () => {
    expect(containerArgs(nginx, [], ['nginx', '-T'])).toEqual(['/entry.sh', 'nginx', '-T']);
  });
  it('ignores Entrypoint and Cmd when command is set', () => {
    expect(containerArgs(nginx, ['/bin/sh', '-c'], ['echo hi'])).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(containerArgs(nginx, ['/bin/true'], [])).toEqual(['/bin/true']);
  });
  it('runs Cmd alone when there is no Entrypoint, or an Entrypoint of [""]', () => {
    expect(containerArgs(image({ cmd: ['sh'] }), [], [])).toEqual(['sh']);
    expect(containerArgs(image({ entrypoint: [''], cmd: ['sh'] }), [], [])).toEqual(['sh']);
    expect(containerArgs(image({ entrypoint: [''] }), [], ['ls'])).toEqual(['ls']);
  });
  it('says "no command specified" when nothing is left', () => {
    const err = (() => {
      try {
        containerArgs(image(), [], []);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(VmletError);
    expect(err).toMatchObject({ kind: 'invalid-argument', message: 'no command specified' });
    expect(() => containerArgs(image({ entrypoint: [''] }), [], [])).toThrow('no command specified');
  });
});

describe('containerEnv', () => {
  it('starts from the default PATH, then the image env, then CRI envs', () => {
    expect(containerEnv(['A=1'], [{ key: 'B', value: '2' }])).toEqual([DEFAULT_PATH_ENV, 'A=1', 'B=2']);
  });
  it('replaces a key where it stands, as containerd does', () => {
    expect(containerEnv(['A=1', 'PATH=/img/bin', 'B=2'], [{ key: 'A', value: 'pod' }, { key: 'C', value: '3' }, { key: 'PATH', value: '/pod/bin' }])).toEqual([
      'PATH=/pod/bin',
      'A=pod',
      'B=2',
      'C=3',
    ]);
  });
  it('keeps one entry per key, values with "=" and empty values intact', () => {
    expect(containerEnv(['X=a=b', 'X=c'], [{ key: 'E', value: '' }, { key: 'E', value: 'e' }])).toEqual([DEFAULT_PATH_ENV, 'X=c', 'E=e']);
  });
  it('drops an image entry without "="', () => {
    expect(containerEnv(['A=1', 'A'], [])).toEqual([DEFAULT_PATH_ENV]);
  });
});
