#!/usr/bin/env python3
"""Writes the stand-ins for critest's (cri-tools v1.29.0) test images as OCI image layouts.

    images.py --work DIR --busybox F --libc DIR --applets F --standin F   (build-images.sh)

DIR/<name>/ is one OCI image layout per image (tags in its index.json), and DIR/images.txt
lists what to push, one line each: `<layout dir name> <tag in layout> <repository>:<tag>` (the
repository as critest names it, registry host included).  Reuses test/registry/oci.py for
the tar and layout writing, so builds are reproducible in the same way (SOURCE_DATE_EPOCH,
sorted entries, `gzip -n`).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'registry'))
import oci  # noqa: E402
from oci import d, f, hard, make_tar, platform, jbytes, OCI_INDEX, PATH_ENV  # noqa: E402

E2E = 'registry.k8s.io/e2e-test-images/'
CRI = 'gcr.io/k8s-staging-cri-tools/'

# /etc/passwd and /etc/group of busybox:1.36.1 (what cri-tools' own test images start from).
PASSWD = '''root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
'''
GROUP = '''root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
'''
# Applets Debian's busybox lacks, played by the standin binary.
STANDIN_APPLETS = ['pgrep', 'ipcs']


def xlink(name, target):
    """A hard link to an executable. containerd (like Docker) chmods a hard link's path to the
    link entry's mode after linking, which changes the shared inode: the entry must carry
    the target's mode (oci.hard() gives 0644, which would leave busybox non-executable)."""
    return dict(hard(name, target), mode=0o755)


LIBS = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libresolv.so.2']   # what Debian's busybox links


def busybox_layer(inp):
    """Debian's (dynamic) busybox with every applet it has hard-linked to it (in /bin), the glibc
    files it needs, the standin binary for pgrep and ipcs, the users and groups of
    busybox:1.36.1.  Not busybox-static: that one is built with FEATURE_SH_STANDALONE, so its
    `sh -c ls` runs the applet instead of /bin/ls and a masked /bin/ls goes unnoticed (critest's
    MaskedPaths spec); the e2e busybox image's sh looks commands up in PATH."""
    with open(inp['applets']) as fh:
        applets = sorted(set(a.strip() for a in fh if a.strip() and a.strip() != 'busybox' and '/' not in a.strip()))
    dirs = [d('bin'), d('dev'), d('etc'), d('home'), d('proc'), d('root', 0o700), d('sys'), d('tmp', 0o1777),
            d('usr'), d('usr/bin'), d('usr/sbin'), d('var'), d('var/run'), d('var/www')]
    e = dirs + [f('bin/busybox', path=inp['busybox'], mode=0o755)]
    e += [d('lib'), d('lib/x86_64-linux-gnu'), d('lib64'),
          oci.sym('lib64/ld-linux-x86-64.so.2', '../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2')]
    e += [f('lib/x86_64-linux-gnu/' + l, path=os.path.join(inp['libc'], 'lib/x86_64-linux-gnu', l), mode=0o755)
          for l in LIBS]
    e += [xlink('bin/' + a, 'bin/busybox') for a in applets if a not in STANDIN_APPLETS]
    e.append(f('usr/bin/standin', path=inp['standin'], mode=0o755))
    e += [xlink('usr/bin/' + a, 'usr/bin/standin') for a in STANDIN_APPLETS]
    e.append(f('etc/passwd', PASSWD))
    e.append(f('etc/group', GROUP))
    # Hard links must follow their target: order by "target first", then by name.
    return make_tar(sorted(e, key=lambda x: (x['type'] == 'hardlink', x['name'])), sort=False)


def extra_layer(entries):
    return make_tar(entries)


def standin_entries(inp, path, mode=0o755):
    """Parent dirs of `path` and the standin binary at `path`."""
    parts = path.split('/')
    e = [d('/'.join(parts[:i])) for i in range(1, len(parts))]
    e.append(f(path, path=inp['standin'], mode=mode))
    return e


def build(work, inp):
    base = busybox_layer(inp)
    base_cfg = {'Env': [PATH_ENV], 'Cmd': ['sh']}
    pushes = []

    def image(name, tags, extra=None, config=None):
        lay = oci.Layout(os.path.join(work, name))
        layers = [(base, True)] + ([(extra_layer(extra), True)] if extra else [])
        man, _, _ = lay.image(layers, dict(base_cfg, **(config or {})))
        descs = []
        for ref in tags:
            repo, tag = ref.rsplit(':', 1)
            descs.append(dict(man, platform=platform('amd64'),
                              annotations={'org.opencontainers.image.ref.name': tag}))
            pushes.append('%s %s %s' % (name, tag, ref))
        with open(os.path.join(lay.root, 'index.json'), 'wb') as fh:
            fh.write(jbytes({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': descs}))
        print('%-32s manifest %s  %s' % (name, man['digest'], ' '.join(tags)))

    image('busybox', [E2E + 'busybox:1.29-2'])
    nginx = standin_entries(inp, 'usr/sbin/nginx') + [d('usr/share'), d('usr/share/nginx')]
    nginx_cfg = {'Cmd': ['nginx', '-g', 'daemon off;'], 'ExposedPorts': {'80/tcp': {}}, 'StopSignal': 'SIGQUIT'}
    image('nginx', [E2E + 'nginx:1.14-2'], nginx, nginx_cfg)
    image('hostnet-nginx', [CRI + 'hostnet-nginx-amd64:latest'], nginx,
          dict(nginx_cfg, Env=[PATH_ENV, 'NGINX_PORT=12003'], ExposedPorts={'12003/tcp': {}}))
    image('httpd', [E2E + 'httpd:2.4.39-4'], standin_entries(inp, 'usr/local/apache2/bin/httpd'),
          {'Env': ['PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
           'Cmd': ['httpd', '-D', 'FOREGROUND'], 'WorkingDir': '/usr/local/apache2', 'ExposedPorts': {'80/tcp': {}},
           'StopSignal': 'SIGWINCH'})
    # e2e's nonewprivs: a setuid-root program printing its effective uid.
    image('nonewprivs', [E2E + 'nonewprivs:1.3'], standin_entries(inp, 'usr/local/bin/nnp', 0o4755),
          {'Cmd': ['/usr/local/bin/nnp']})
    image('pause', ['registry.k8s.io/pause:3.9'], standin_entries(inp, 'pause'),
          {'Entrypoint': ['/pause'], 'Cmd': None, 'User': '65535:65535'})

    for user, name in (('1002', 'test-image-user-uid'), ('www-data', 'test-image-user-username'),
                       ('1003:1004', 'test-image-user-uid-group'), ('www-data:1004', 'test-image-user-username-group')):
        image(name, [CRI + name + ':latest'], None, {'User': user})
    image('test-image-predefined-group', [CRI + 'test-image-predefined-group:latest'],
          [d('etc'), d('home'), d('home/default-user', 0o755, 1000, 1000),
           f('etc/passwd', PASSWD + 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n'),
           f('etc/group', GROUP + 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n')],
          {'User': '1000'})

    # cri-tools' image-test: busybox plus an empty file named after the image.
    for name in ('test-image-1', 'test-image-2', 'test-image-3', 'test-image-latest', 'test-image-digest'):
        image(name, [CRI + name + ':latest'], [f(name, '')])
    image('test-image-tags', [CRI + 'test-image-tags:' + t for t in '123'], [f('same-image', '')])
    image('test-image-tag', [CRI + 'test-image-tag:test', CRI + 'test-image-tag:all'], [f('test-image-tag', '')])

    with open(os.path.join(work, 'images.txt'), 'w') as fh:
        fh.write('\n'.join(pushes) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    for k in ('work', 'busybox', 'libc', 'applets', 'standin'):
        ap.add_argument('--' + k, required=True)
    a = ap.parse_args()
    build(a.work, vars(a))
    return 0


if __name__ == '__main__':
    sys.exit(main())
