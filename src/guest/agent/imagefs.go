package main

// An image's rootfs comes from the images share as a directory tree, or as one EROFS image
// file ("<hex>.erofs", src/image/rootfs-erofs.ts) that is mounted here read-only through a
// loop device, once per VM, and used as the containers' overlay lower dir. The loop device
// reads the file with direct I/O: the guest's page cache then holds the image's pages once
// (EROFS's), not a second time as the loop's backing file.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const (
	loopCtlGetFree   = 0x4C82
	loopConfigure    = 0x4C0A
	loFlagsReadOnly  = 1
	loFlagsAutoclear = 4
	loFlagsDirectIO  = 16
	// struct loop_config: fd u32, block_size u32, struct loop_info64 (lo_flags at 52), reserved.
	loopConfigSize  = 304
	loopConfigFlags = 8 + 52
)

type imageMounts struct {
	mu      sync.Mutex
	mounted map[string]string
}

// imageLower is the overlay lower dir of image `name` from the images share.
func (a *agent) imageLower(name string) (string, error) {
	src := filepath.Join(a.cfg.images, name)
	fi, err := os.Stat(src)
	if err == nil && fi.IsDir() {
		return src, nil
	}
	if err != nil || !strings.HasSuffix(name, ".erofs") || !fi.Mode().IsRegular() {
		return "", errf("not-found", "image %q: no directory or EROFS image %s in the images share", name, src)
	}
	a.images.mu.Lock()
	defer a.images.mu.Unlock()
	if dir, ok := a.images.mounted[name]; ok {
		return dir, nil
	}
	dir := filepath.Join(a.cfg.runDir, "img", strings.TrimSuffix(name, ".erofs"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := mountErofs(src, dir); err != nil {
		return "", errf("internal", "image %q: %v", name, err)
	}
	if a.images.mounted == nil {
		a.images.mounted = map[string]string{}
	}
	a.images.mounted[name] = dir
	logf("image %s mounted on %s", name, dir)
	return dir, nil
}

var imageModules sync.Once

// loadImageModules loads loop and erofs once; a caller meanwhile waits for the first to end.
func loadImageModules() {
	imageModules.Do(func() {
		modprobe("loop")
		modprobe("erofs")
	})
}

// modprobe loads a module the initramfs has (build-guest-kit.sh: loaded on demand).
func modprobe(name string) {
	if out, err := exec.Command("/sbin/modprobe", name).CombinedOutput(); err != nil {
		logf("modprobe %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
}

// ioctlN is ioctl(2) returning its result (LOOP_CTL_GET_FREE's device number).
func ioctlN(fd uintptr, req uintptr, arg uintptr) (uintptr, error) {
	r, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg)
	if e != 0 {
		return r, e
	}
	return r, nil
}

// mountErofs attaches `file` to a free loop device (read-only, direct I/O, detached when
// unmounted) and mounts it read-only on `dir`.
func mountErofs(file, dir string) error {
	loadImageModules()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		// A kit built before EROFS images has no loop module.
		return fmt.Errorf("loop devices: %w (a guest kit from node-install/build-guest-kit.sh of this vmlet has the loop and erofs modules; or set imageRootfs: tree)", err)
	}
	defer ctl.Close()
	backing, err := os.Open(file)
	if err != nil {
		return err
	}
	defer backing.Close()
	var cfg [loopConfigSize]byte
	binary.LittleEndian.PutUint32(cfg[0:], uint32(backing.Fd()))
	binary.LittleEndian.PutUint32(cfg[loopConfigFlags:], loFlagsReadOnly|loFlagsAutoclear|loFlagsDirectIO)
	// Another process may take the free device between the two calls: ask again.
	for try := 0; ; try++ {
		n, err := ioctlN(ctl.Fd(), loopCtlGetFree, 0)
		if err != nil {
			return fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lo, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		if _, err := ioctlN(lo.Fd(), loopConfigure, uintptr(unsafe.Pointer(&cfg[0]))); err != nil {
			lo.Close()
			if errors.Is(err, syscall.EBUSY) && try < 5 {
				continue
			}
			return fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
		}
		// The mount holds the device open from here: closing ours leaves it attached (autoclear
		// detaches it once nobody has it open).
		err = mount(dev, dir, "erofs", syscall.MS_RDONLY, "")
		lo.Close()
		if errors.Is(err, syscall.ENODEV) {
			return fmt.Errorf("%w (no erofs in this guest kit: rebuild it with node-install/build-guest-kit.sh, or set imageRootfs: tree)", err)
		}
		return err
	}
}
