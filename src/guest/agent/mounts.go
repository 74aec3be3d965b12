package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func mount(src, target, fstype string, flags uintptr, data string) error {
	if err := syscall.Mount(src, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", src, target, fstype, err)
	}
	return nil
}

// mountsUnder lists mount points at or below dir, deepest (latest) first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) < 5 {
			continue
		}
		mp := unescapeMountinfo(fs[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// mountinfo lists in mount order: unmount in reverse, children before parents.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll detaches every mount at or below dir.
func unmountAll(dir string) error {
	var last error
	for i := 0; i < 3; i++ {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
				last = fmt.Errorf("unmount %s: %w", mp, err)
			}
		}
	}
	if mps := mountsUnder(dir); len(mps) > 0 {
		if last == nil {
			last = fmt.Errorf("still mounted: %s", strings.Join(mps, " "))
		}
		return last
	}
	return nil
}

type devNode struct {
	name         string
	major, minor uint32
}

var devNodes = []devNode{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

// setupDev fills the container's /dev tmpfs: the standard nodes (mknod, or a bind of ours when
// mknod is refused), devpts with its own instance (so a pty made there is /dev/pts/N inside),
// the pod's /dev/shm and the /dev/fd links.
func setupDev(dev, podShm string) error {
	if err := mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID|syscall.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, n := range devNodes {
		p := filepath.Join(dev, n.name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, int(n.major<<8|n.minor)); err != nil {
			if err := os.WriteFile(p, nil, 0o666); err != nil {
				return err
			}
			if err := mount("/dev/"+n.name, p, "", syscall.MS_BIND, ""); err != nil {
				return err
			}
			continue
		}
		_ = os.Chmod(p, 0o666)
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := mount("devpts", filepath.Join(dev, "pts"), "devpts", syscall.MS_NOSUID|syscall.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := mount(podShm, filepath.Join(dev, "shm"), "", syscall.MS_BIND, ""); err != nil {
		return err
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return err
		}
	}
	return nil
}

// bindTarget makes the mount point for source at target inside root: a directory, or an empty
// file when the source is not a directory. Returns the host path.
func bindTarget(root, target string, dir bool) (string, error) {
	p, err := resolveIn(root, target, true, true)
	if err == nil {
		return p, nil
	}
	if !os.IsNotExist(err) {
		return "", err
	}
	if dir {
		err = os.Mkdir(p, 0o755)
	} else {
		err = os.WriteFile(p, nil, 0o644)
	}
	return p, err
}

func bindMount(src, target string, readonly bool) error {
	if err := mount(src, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return err
	}
	if readonly {
		return mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, "")
	}
	return nil
}

// setupPrivilegedDev makes a privileged container's /dev: the agent's own /dev (the guest's
// devtmpfs, every device) bound recursively, made a slave so that nothing mounted here
// propagates back to it, with a new devpts instance on /dev/pts (the container's ptys, as for
// the others) and the pod's /dev/shm. A missing pts or shm directory is made in the agent's
// /dev.
func setupPrivilegedDev(root, dev, podShm string) error {
	if err := mount("/dev", dev, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return err
	}
	if err := mount("", dev, "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
		return err
	}
	pts, err := bindTarget(root, "/dev/pts", true)
	if err != nil {
		return err
	}
	if err := mount("devpts", pts, "devpts", syscall.MS_NOSUID|syscall.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	shm, err := bindTarget(root, "/dev/shm", true)
	if err != nil {
		return err
	}
	return mount(podShm, shm, "", syscall.MS_BIND, "")
}

// existingIn resolves an in-container path; ok is false when it does not exist (nor a
// directory on its way), which maskedPaths and readonlyPaths skip.
func existingIn(root, p string) (hp string, ok bool, err error) {
	hp, err = resolveIn(root, p, true, false)
	if err != nil {
		var pe *os.PathError
		if os.IsNotExist(err) || (errors.As(err, &pe) && pe.Err == syscall.ENOTDIR) {
			return "", false, nil
		}
		return "", false, err
	}
	return hp, true, nil
}

// readonlyPath binds an existing path onto itself, recursively, and remounts that and every
// mount below it read-only (keeping nosuid, nodev, noexec), as runc's readonlyPath.
func readonlyPath(root, p string) error {
	hp, ok, err := existingIn(root, p)
	if err != nil || !ok {
		return err
	}
	if err := mount(hp, hp, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return err
	}
	for _, mp := range mountsUnder(hp) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(mp, &st); err != nil {
			return err
		}
		keep := uintptr(st.Flags) & (syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC)
		if err := mount("", mp, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|keep, ""); err != nil {
			return err
		}
	}
	return nil
}

// maskPath hides an existing path: an empty read-only tmpfs over a directory, /dev/null bound
// read-only over anything else, as runc's maskPath.
func maskPath(root, p string) error {
	hp, ok, err := existingIn(root, p)
	if err != nil || !ok {
		return err
	}
	fi, err := os.Stat(hp)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return mount("tmpfs", hp, "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
	}
	return bindMount("/dev/null", hp, true)
}

// deviceSpec is a block device of the pod VM (a hotplugged virtio-blk disk, found by its serial)
// to appear in the container at Target as a node with the host node's mode and owner.
type deviceSpec struct {
	Serial string `json:"serial"`
	Target string `json:"target"`
	Mode   uint32 `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
}

// deviceWait is how long a hotplugged disk may take to show in /sys/block (the guest's PCIe
// hotplug and virtio_blk probe; the host returns from the attach before the guest has it).
const deviceWait = 20 * time.Second

// blockBySerial finds the guest's block device whose serial is serial (virtio-blk shows it in
// /sys/block/<dev>/serial) and returns its major and minor, waiting for it up to wait.
func blockBySerial(serial string, wait time.Duration) (uint32, uint32, error) {
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err != nil || strings.TrimSpace(string(b)) != serial {
				continue
			}
			dev, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "dev"))
			if err != nil {
				return 0, 0, err
			}
			var maj, min uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(dev)), "%d:%d", &maj, &min); err != nil {
				return 0, 0, fmt.Errorf("/sys/block/%s/dev: %q: %v", e.Name(), dev, err)
			}
			return maj, min, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, errf("failed-precondition", "no block device with serial %s in the pod VM after %s", serial, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mkdev encodes a device number as the kernel's new_encode_dev does (what mknod(2) takes).
func mkdev(major, minor uint32) int {
	return int((minor & 0xff) | (major << 8) | ((minor &^ 0xff) << 12))
}

// makeDevice makes the block device node d in the container's root (its parent directory must
// exist: /dev always does). Whatever was at the path is replaced.
func makeDevice(root string, d deviceSpec) error {
	maj, min, err := blockBySerial(d.Serial, deviceWait)
	if err != nil {
		return err
	}
	p, err := resolveIn(root, d.Target, false, false)
	if err != nil && !os.IsNotExist(err) {
		return errf("invalid-argument", "devices: target %q: %v", d.Target, errText(err))
	}
	if err == nil {
		if err := os.Remove(p); err != nil {
			return errf("invalid-argument", "devices: target %q exists and cannot be replaced: %v", d.Target, errText(err))
		}
	}
	mode := d.Mode & 0o7777
	if mode == 0 {
		mode = 0o660
	}
	if err := syscall.Mknod(p, syscall.S_IFBLK|mode, mkdev(maj, min)); err != nil {
		return fmt.Errorf("devices: mknod %s (%d:%d): %w", d.Target, maj, min, err)
	}
	// mknod applies the umask; the owner is the host node's, as runc gives it.
	if err := os.Chmod(p, os.FileMode(mode&0o777)); err != nil {
		return err
	}
	return os.Chown(p, d.UID, d.GID)
}
