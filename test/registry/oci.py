#!/usr/bin/env python3
"""Writes vmlet's test OCI image layouts (called by build-oci-images.sh; stdlib only).

    oci.py --work DIR --final DIR --busybox F --vmlinux F --vmlinuz F --initrd F --cmdline F --qcow2 F --raw F
    oci.py --list DIR/images.json          (print one line per image)

Builds every image into DIR/<name>/ (an OCI image layout: oci-layout, index.json,
blobs/sha256/...) and DIR/images.json, whose "layout" paths name the directory the
caller will publish DIR as (--final).  The layouts' index.json tags each image "latest".

Everything is reproducible: tar entries have mtime SOURCE_DATE_EPOCH, uid/gid 0 unless
an entry says otherwise, empty user/group names, entries sorted by name (the hostile
images keep their deliberate order), and layers are gzip'd with `gzip -n`.
"""
import argparse
import datetime
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
REF = 'latest'
PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

EPOCH = int(os.environ.get('SOURCE_DATE_EPOCH', '0'))
CREATED = datetime.datetime.fromtimestamp(EPOCH, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def jbytes(obj):
    """Canonical-enough JSON: fixed key order (as written), no whitespace."""
    return json.dumps(obj, separators=(',', ':'), ensure_ascii=True).encode()


def sha256(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def gzip_n(data):
    """`gzip -n`: no name, no timestamp in the header, so equal input gives equal output."""
    return subprocess.run(['gzip', '-n', '-6', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout


# --- tar entries -------------------------------------------------------------------------
# An entry is a dict: {type: dir|file|symlink|hardlink|char, name, mode, uid, gid,
#                      data (file), path (file, read from disk), target (links), major/minor}

def d(name, mode=0o755, uid=0, gid=0):
    return {'type': 'dir', 'name': name, 'mode': mode, 'uid': uid, 'gid': gid}


def f(name, data=None, path=None, mode=0o644, uid=0, gid=0):
    if isinstance(data, str):
        data = data.encode()
    return {'type': 'file', 'name': name, 'data': data, 'path': path, 'mode': mode, 'uid': uid, 'gid': gid}


def sym(name, target):
    return {'type': 'symlink', 'name': name, 'target': target, 'mode': 0o777, 'uid': 0, 'gid': 0}


def hard(name, target, mode=0o644):
    # A link's header mode becomes the shared inode's when containerd (and vmlet) unpack it.
    return {'type': 'hardlink', 'name': name, 'target': target, 'mode': mode, 'uid': 0, 'gid': 0}


def char(name, major, minor, mode=0o666):
    return {'type': 'char', 'name': name, 'major': major, 'minor': minor, 'mode': mode, 'uid': 0, 'gid': 0}


TYPES = {'dir': tarfile.DIRTYPE, 'file': tarfile.REGTYPE, 'symlink': tarfile.SYMTYPE,
         'hardlink': tarfile.LNKTYPE, 'char': tarfile.CHRTYPE}


def make_tar(entries, sort=True, fmt=tarfile.USTAR_FORMAT):
    """Uncompressed tar of `entries`; USTAR so nothing unexpected (pax headers) sneaks in."""
    if sort:
        entries = sorted(entries, key=lambda e: e['name'])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e['name'])
            ti.type = TYPES[e['type']]
            ti.mode = e['mode']
            ti.uid, ti.gid = e['uid'], e['gid']
            ti.uname = ti.gname = ''
            ti.mtime = EPOCH
            if e['type'] in ('symlink', 'hardlink'):
                ti.linkname = e['target']
            if e['type'] == 'char':
                ti.devmajor, ti.devminor = e['major'], e['minor']
            if e['type'] == 'file':
                data = e['data']
                if data is None:
                    with open(e['path'], 'rb') as fh:
                        data = fh.read()
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
    return buf.getvalue()


# --- layouts -----------------------------------------------------------------------------

class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, 'blobs', 'sha256'))
        with open(os.path.join(root, 'oci-layout'), 'wb') as fh:
            fh.write(jbytes({'imageLayoutVersion': '1.0.0'}))

    def blob(self, data, media_type):
        digest = sha256(data)
        path = os.path.join(self.root, 'blobs', 'sha256', digest[7:])
        if not os.path.exists(path):
            with open(path, 'wb') as fh:
                fh.write(data)
        return {'mediaType': media_type, 'digest': digest, 'size': len(data)}

    def image(self, layers, config, arch='amd64'):
        """layers: [(tar bytes, compress?)]; config: the image config's "config" object.
        Returns (manifest descriptor, config descriptor, layer descriptors)."""
        layer_descs, diff_ids = [], []
        for tar_bytes, compress in layers:
            diff_ids.append(sha256(tar_bytes))
            if compress:
                layer_descs.append(self.blob(gzip_n(tar_bytes), LAYER_GZIP))
            else:
                layer_descs.append(self.blob(tar_bytes, LAYER_TAR))
        cfg = {
            'created': CREATED,
            'architecture': arch,
            'os': 'linux',
            'config': config,
            'rootfs': {'type': 'layers', 'diff_ids': diff_ids},
            'history': [{'created': CREATED, 'created_by': 'vmlet test/registry/build-oci-images.sh'}
                        for _ in layers],
        }
        if arch == 'arm64':
            cfg['variant'] = 'v8'
        cfg_desc = self.blob(jbytes(cfg), OCI_CONFIG)
        manifest = {'schemaVersion': 2, 'mediaType': OCI_MANIFEST, 'config': cfg_desc, 'layers': layer_descs}
        return self.blob(jbytes(manifest), OCI_MANIFEST), cfg_desc, layer_descs

    def tag(self, desc):
        desc = dict(desc, annotations={'org.opencontainers.image.ref.name': REF})
        with open(os.path.join(self.root, 'index.json'), 'wb') as fh:
            fh.write(jbytes({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': [desc]}))


def platform(arch):
    p = {'architecture': arch, 'os': 'linux'}
    if arch == 'arm64':
        p['variant'] = 'v8'
    return p


# --- the images ----------------------------------------------------------------------------

def busybox_tree(inp, with_layer2_content):
    """Layer-1 rootfs entries (plus layer 2's result merged in when with_layer2_content)."""
    applets = ['sh', 'ls', 'cat', 'echo', 'id', 'env', 'sleep', 'true', 'false', 'mkdir', 'rm',
               'touch', 'stat', 'test', 'uname', 'whoami', 'hostname', 'ps', 'pwd']
    e = [d('bin'), d('etc'), d('home'), d('home/app', 0o755, 1234, 1234), d('opt'), d('opt/old'),
         d('root', 0o700), d('tmp', 0o1777), d('usr'), d('usr/bin'),
         f('bin/busybox', path=inp['busybox'], mode=0o755)]
    e += [sym('bin/' + a, 'busybox') for a in applets]
    # An absolute symlink: legitimate inside a rootfs, must not be followed on the host.
    e.append(sym('usr/bin/env', '/bin/busybox'))
    e.append(f('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n'))
    e.append(f('etc/group', 'root:x:0:\napp:x:1234:\n'))
    e.append(f('etc/hostname', 'vmlet-rootfs\n'))
    if with_layer2_content:
        e.append(f('etc/motd', MOTD))
        e.append(f('opt/old/b.txt', 'b from layer 2\n'))
    else:
        e.append(f('etc/remove-me', 'layer 1 file deleted by a whiteout in layer 2\n'))
        e.append(f('opt/old/a.txt', 'a from layer 1 (hidden by the opaque whiteout in layer 2)\n'))
    return e


MOTD = 'vmlet rootfs test image: layer 2\n'

BUSYBOX_APP_APPLETS = sorted(set([
    'base64', 'basename', 'cat', 'chmod', 'chown', 'cp', 'cut', 'date', 'df', 'dirname', 'du', 'echo',
    'env', 'false', 'find', 'grep', 'head', 'hostname', 'id', 'kill', 'ln', 'ls', 'mkdir', 'mv', 'nc',
    'printf', 'ps', 'pwd', 'readlink', 'rm', 'sed', 'seq', 'sh', 'sleep', 'sort', 'stat', 'tail', 'tee',
    'test', 'touch', 'tr', 'true', 'uname', 'uniq', 'wc', 'wget', 'whoami', 'xargs', 'yes']))


def busybox_app_entries(inp):
    """One layer, applets hard-linked to /bin/busybox (as busybox:musl images ship them): the
    target precedes its links, so the order is set here rather than sorted."""
    dirs = [d('bin'), d('etc'), d('home'), d('home/app', 0o755, 1234, 1234), d('root', 0o700),
            d('tmp', 0o1777), d('usr'), d('usr/bin')]
    e = dirs + [f('bin/busybox', path=inp['busybox'], mode=0o755)]
    e += [hard('bin/' + a, 'bin/busybox', 0o755) for a in BUSYBOX_APP_APPLETS]
    e.append(hard('usr/bin/env', 'bin/busybox', 0o755))
    e.append(f('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n'))
    e.append(f('etc/group', 'root:x:0:\napp:x:1234:\n'))
    e.append(f('home/app/hello.txt', 'hello from busybox-app\n', uid=1234, gid=1234))
    return e


def hostile_size_tar():
    """A tar header claiming a 2 TiB file, followed by 64 KiB of data and no end: the stream
    is truncated.  GNU base-256 size field (a 2 TiB size does not fit ustar's 11 octal digits)."""
    ti = tarfile.TarInfo('huge.bin')
    ti.size = 2 << 40
    ti.mode = 0o644
    ti.mtime = EPOCH
    ti.uname = ti.gname = ''
    header = ti.tobuf(format=tarfile.GNU_FORMAT)
    return header + b'\0' * 65536


def build(work, final, inp):
    images = {}

    def record(name, layout, man, cfg, layers, index=None, platforms=None):
        info = {'layout': os.path.join(final, name), 'ref': REF, 'manifestDigest': man['digest'],
                'configDigest': cfg['digest'], 'mediaType': man['mediaType'], 'size': man['size'],
                'layers': [{'digest': l['digest'], 'size': l['size'], 'mediaType': l['mediaType']} for l in layers]}
        if index is not None:
            info['indexDigest'] = index['digest']
            info['indexMediaType'] = index['mediaType']
            info['platforms'] = platforms
        images[name] = info
        print_lines({name: info})
        sys.stdout.flush()

    def single(name, layers, config):
        lay = Layout(os.path.join(work, name))
        man, cfg, lds = lay.image(layers, config)
        lay.tag(dict(man, platform=platform('amd64')))
        record(name, lay, man, cfg, lds)

    # KubeVirt containerDisk: the disk under /disk/, owned by qemu's uid/gid 107, read-only.
    single('containerdisk', [(make_tar([d('disk'), f('disk/disk.qcow2', path=inp['qcow2'], mode=0o444, uid=107, gid=107)]), True)], {})
    single('containerdisk-raw', [(make_tar([d('disk'), f('disk/disk.img', path=inp['raw'], mode=0o444, uid=107, gid=107)]), True)], {})

    single('kernelboot', [(make_tar([d('boot'), f('boot/vmlinuz', path=inp['vmlinux']),
                                     f('boot/initrd.img', path=inp['initrd'])]), True)],
           {'Labels': {'vmlet.io/kernel': '/boot/vmlinuz', 'vmlet.io/initrd': '/boot/initrd.img',
                       'vmlet.io/cmdline': inp['cmdline']}})

    # As distributions and most kernel-boot images ship it: /boot/vmlinuz is the compressed
    # bzImage, found at the default paths (no vmlet.io/kernel label); vmlet unpacks it for PVH.
    single('kernelboot-bzimage', [(make_tar([d('boot'), f('boot/vmlinuz', path=inp['vmlinuz']),
                                             f('boot/initrd.img', path=inp['initrd'])]), True)],
           {'Labels': {'vmlet.io/cmdline': inp['cmdline']}})

    rootfs_cfg = {'User': '1234', 'Env': [PATH_ENV], 'Cmd': ['/bin/sh'], 'WorkingDir': '/'}
    layer2 = [d('etc'), f('etc/motd', MOTD), f('etc/.wh.remove-me', ''),
              d('opt'), d('opt/old'), f('opt/old/.wh..wh..opq', ''), f('opt/old/b.txt', 'b from layer 2\n')]
    single('rootfs', [(make_tar(busybox_tree(inp, False)), True), (make_tar(layer2), True)], rootfs_cfg)
    single('rootfs-named-user', [(make_tar(busybox_tree(inp, True)), True)], dict(rootfs_cfg, User='app'))

    single('busybox-app', [(make_tar(busybox_app_entries(inp), sort=False), True)],
           {'Env': [PATH_ENV, 'APP=1'], 'Cmd': ['sh'], 'WorkingDir': '/home/app'})

    single('uncompressed', [(make_tar([f('hello.txt', 'hello from an uncompressed layer\n')]), False)], {})

    # multiarch: an image index (stored as a blob, tagged in index.json) over two manifests.
    lay = Layout(os.path.join(work, 'multiarch'))
    plats, amd = [], None
    descs = []
    for arch in ('amd64', 'arm64'):
        man, cfg, lds = lay.image([(make_tar([f('arch.txt', arch + '\n')]), True)], {}, arch)
        descs.append(dict(man, platform=platform(arch)))
        plats.append({'platform': platform(arch), 'manifestDigest': man['digest'], 'configDigest': cfg['digest']})
        if arch == 'amd64':
            amd = (man, cfg, lds)
    index = lay.blob(jbytes({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': descs}), OCI_INDEX)
    lay.tag(index)
    record('multiarch', lay, amd[0], amd[1], amd[2], index, plats)

    # Hostile layers: entries in deliberate order, not sorted.
    single('hostile-traversal', [(make_tar([
        f('../../../tmp/vmlet-escape-traversal', 'escaped with ../\n'),
        f('/tmp/vmlet-escape-absolute', 'escaped with an absolute path\n'),
        f('ok/../../vmlet-escape-dotdot', 'escaped through a dir/../.. path\n'),
    ], sort=False), True)], {})
    single('hostile-symlink', [(make_tar([
        sym('etc', '/etc'), f('etc/vmlet-escape', 'written through an absolute symlink\n'),
        sym('up', '../../../../../../tmp'), f('up/vmlet-escape-symlink', 'written through a relative symlink\n'),
    ], sort=False), True)], {})
    single('hostile-hardlink', [(make_tar([
        hard('outside-link', '../../outside'), hard('passwd-link', '/etc/passwd'),
    ], sort=False), True)], {})
    single('hostile-device', [(make_tar([d('dev'), char('dev/mem', 1, 1)], sort=False), True)], {})
    single('hostile-size', [(hostile_size_tar(), True)], {})

    with open(os.path.join(work, 'images.json'), 'w') as fh:
        json.dump(images, fh, indent=2, sort_keys=True)
        fh.write('\n')


def print_lines(images):
    for name, info in images.items():
        line = '%-18s manifest %s config %s' % (name, info['manifestDigest'], info['configDigest'])
        print(line + ('  index %s' % info['indexDigest'] if 'indexDigest' in info else ''))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--list', metavar='IMAGES_JSON', help='only print the image lines of an images.json')
    ap.add_argument('--work', help='directory to build into (must not hold the images yet)')
    ap.add_argument('--final', help='directory WORK will be published as (for images.json)')
    for k in ('busybox', 'vmlinux', 'vmlinuz', 'initrd', 'cmdline', 'qcow2', 'raw'):
        ap.add_argument('--' + k, metavar='FILE')
    a = ap.parse_args()
    if a.list:
        with open(a.list) as fh:
            print_lines(json.load(fh))
        return 0
    inp = vars(a)
    missing = [k for k in ('work', 'final', 'busybox', 'vmlinux', 'vmlinuz', 'initrd', 'cmdline', 'qcow2', 'raw') if not inp[k]]
    if missing:
        ap.error('missing: ' + ', '.join('--' + k for k in missing))
    with open(a.cmdline) as fh:
        inp['cmdline'] = fh.read().strip()
    build(a.work, a.final, inp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
