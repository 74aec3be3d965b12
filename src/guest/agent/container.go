package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type userSpec struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
}

type mountSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Readonly bool   `json:"readonly"`
}

type createParams struct {
	ID             string      `json:"id"`
	Image          string      `json:"image"`
	Args           []string    `json:"args"`
	Env            []string    `json:"env"`
	Cwd            string      `json:"cwd"`
	User           userSpec    `json:"user"`
	Tty            bool        `json:"tty"`
	Stdin          bool        `json:"stdin"`
	StdinOnce      bool        `json:"stdinOnce"`
	ReadonlyRootfs bool        `json:"readonlyRootfs"`
	Mounts         []mountSpec `json:"mounts"`
	// Block devices hotplugged into the pod VM for this container, found by serial.
	Devices          []deviceSpec `json:"devices"`
	MemoryLimitBytes int64        `json:"memoryLimitBytes"`
	CPUQuotaUs       int64        `json:"cpuQuotaUs"`
	CPUPeriodUs      int64        `json:"cpuPeriodUs"`
	// Security (all optional; absent: root has every capability, nothing masked).
	Privileged   bool     `json:"privileged"`
	Capabilities []string `json:"capabilities"` // null/absent: leave them; [] : none
	NoNewPrivs   bool     `json:"noNewPrivs"`
	// Seccomp: the runtime's default profile (for the container's capabilities) or a profile's JSON.
	SeccompRuntimeDefault bool            `json:"seccompRuntimeDefault"`
	SeccompProfile        *seccompProfile `json:"seccompProfile"`
	MaskedPaths           []string        `json:"maskedPaths"`
	ReadonlyPaths         []string        `json:"readonlyPaths"`
	// "container": the main process is PID 1 of a new PID namespace (its execs join it); ""
	// or "pod": the agent's (the guest's), shared by the pod's containers.
	PidNamespace string `json:"pidNamespace"`
}

type container struct {
	spec                 createParams
	dir, rootfs, scratch string
	cgroup               string // "" without cgroups
	exitCh               chan struct{}
	setCaps              bool                 // apply caps to every process (else leave the agent's)
	caps                 uint64               // capability mask, bit n = capability n
	seccomp              []syscall.SockFilter // compiled once at create; nil: no filter
	ownPidNs             bool                 // pidNamespace "container"
	// With ownPidNs, /proc is mounted by the main process's launcher (in the new namespace):
	// readonlyPaths and maskedPaths at or below /proc are applied by it, after that mount.
	procReadonly, procMasked []string

	// guarded by agent.mu
	state                 string // created, running, exited
	pid, exitCode, signal int
	startedAt, finishedAt nsTime
	stream                uint32
	execs                 map[int]bool
}

var (
	idRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	imageRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,254}$`)
)

func (a *agent) lookup(id string) *container {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.containers[id]
}

func (a *agent) createContainer(p createParams) error {
	if !idRe.MatchString(p.ID) {
		return errf("invalid-argument", "id %q: want 1-128 of [A-Za-z0-9_.-]", p.ID)
	}
	if !imageRe.MatchString(p.Image) {
		return errf("invalid-argument", "image %q: want a directory name of the images share", p.Image)
	}
	if len(p.Args) == 0 {
		return errf("invalid-argument", "args: the command is empty")
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if !strings.HasPrefix(p.Cwd, "/") {
		return errf("invalid-argument", "cwd %q: want an absolute path", p.Cwd)
	}
	for _, m := range p.Mounts {
		if !strings.HasPrefix(m.Target, "/") || !strings.HasPrefix(m.Source, "/") {
			return errf("invalid-argument", "mounts: source %q and target %q must be absolute paths", m.Source, m.Target)
		}
	}
	for _, d := range p.Devices {
		if !strings.HasPrefix(d.Target, "/") || d.Serial == "" {
			return errf("invalid-argument", "devices: target %q must be an absolute path and serial %q not empty", d.Target, d.Serial)
		}
	}
	for _, l := range [][]string{p.MaskedPaths, p.ReadonlyPaths} {
		for _, mp := range l {
			if !strings.HasPrefix(mp, "/") {
				return errf("invalid-argument", "maskedPaths/readonlyPaths: %q is not an absolute path", mp)
			}
		}
	}
	switch p.PidNamespace {
	case "", "pod", "container":
	default:
		return errf("invalid-argument", "pidNamespace %q: want \"container\" or \"pod\"", p.PidNamespace)
	}
	defer a.lockID(p.ID)()
	if a.lookup(p.ID) != nil {
		return errf("already-exists", "container %s already exists", p.ID)
	}
	lower, err := a.imageLower(p.Image)
	if err != nil {
		var re *rpcError
		if errors.As(err, &re) {
			return re
		}
		return errf("internal", "image %q: %v", p.Image, err)
	}
	c := &container{
		spec:     p,
		dir:      filepath.Join(a.cfg.runDir, "c", p.ID),
		scratch:  filepath.Join(a.cfg.scratch, p.ID),
		state:    "created",
		execs:    map[int]bool{},
		ownPidNs: p.PidNamespace == "container",
	}
	c.rootfs = filepath.Join(c.dir, "rootfs")
	if p.Capabilities != nil && !p.Privileged {
		var unknown []string
		c.setCaps = true
		c.caps, unknown = capMask(p.Capabilities)
		if len(unknown) > 0 {
			logf("create %s: ignoring unknown capabilities %v", p.ID, unknown)
		}
	}
	prog, err := seccompFor(p)
	if err != nil {
		return err
	}
	c.seccomp = prog
	if err := a.build(c, lower); err != nil {
		a.teardown(c)
		logf("create %s: %v", p.ID, err)
		var re *rpcError
		if errors.As(err, &re) {
			return re
		}
		return errf("internal", "create container %s: %v", p.ID, err)
	}
	a.mu.Lock()
	a.containers[p.ID] = c
	a.mu.Unlock()
	logf("created %s (image %s)", p.ID, p.Image)
	return nil
}

// build makes the rootfs, its mounts and the cgroup; the caller tears down on error.
func (a *agent) build(c *container, lower string) error {
	p := c.spec
	upper, work := filepath.Join(c.scratch, "upper"), filepath.Join(c.scratch, "work")
	for _, d := range []string{upper, work, c.rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := mount("overlay", c.rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		return err
	}
	root := c.rootfs
	if _, err := lookPath(root, p.Args[0], p.Env, p.Cwd); err != nil {
		return errf("invalid-argument", "%v", err)
	}
	if cwd, err := resolveIn(root, p.Cwd, true, true); err != nil {
		if !os.IsNotExist(err) {
			return errf("invalid-argument", "cwd %q: %v", p.Cwd, errText(err))
		}
		if err := os.Mkdir(cwd, 0o755); err != nil {
			return errf("invalid-argument", "cwd %q: %v", p.Cwd, errText(err))
		}
	} else if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return errf("invalid-argument", "cwd %q is not a directory in the image", p.Cwd)
	}
	proc, err := bindTarget(root, "/proc", true)
	if err != nil {
		return err
	}
	// With its own PID namespace the container's proc is mounted by its launcher (a procfs shows
	// the PID namespace of whoever mounts it).
	if !c.ownPidNs {
		if err := mount("proc", proc, "proc", procFlags, ""); err != nil {
			return err
		}
	}
	sys, err := bindTarget(root, "/sys", true)
	if err != nil {
		return err
	}
	sysFlags := uintptr(syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC)
	if p.Privileged {
		sysFlags &^= syscall.MS_RDONLY
	}
	if err := mount("sysfs", sys, "sysfs", sysFlags, ""); err != nil {
		return err
	}
	dev, err := bindTarget(root, "/dev", true)
	if err != nil {
		return err
	}
	shm, err := a.ensurePodShm()
	if err != nil {
		return err
	}
	if p.Privileged {
		err = setupPrivilegedDev(root, dev, shm)
	} else {
		err = setupDev(dev, shm)
	}
	if err != nil {
		return err
	}
	for _, name := range podFiles {
		src, err := a.podFile(name)
		if err != nil {
			return err
		}
		tgt, err := bindTarget(root, "/etc/"+name, false)
		if err != nil {
			return err
		}
		if err := bindMount(src, tgt, false); err != nil {
			return err
		}
	}
	for _, m := range p.Mounts {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return errf("invalid-argument", "mounts: source %q: %v", m.Source, errText(err))
		}
		tgt, err := bindTarget(root, m.Target, fi.IsDir())
		if err != nil {
			return errf("invalid-argument", "mounts: target %q: %v", m.Target, errText(err))
		}
		if err := bindMount(m.Source, tgt, m.Readonly); err != nil {
			return err
		}
	}
	for _, d := range p.Devices {
		if err := makeDevice(root, d); err != nil {
			return err
		}
	}
	if p.ReadonlyRootfs {
		if err := mount("", root, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return err
		}
	}
	// As runc: read-only paths, then masked paths, after every other mount; none when privileged.
	if !p.Privileged {
		for _, rp := range p.ReadonlyPaths {
			if c.ownPidNs && underProc(rp) {
				c.procReadonly = append(c.procReadonly, rp)
				continue
			}
			if err := readonlyPath(root, rp); err != nil {
				return errf("internal", "readonlyPaths: %q: %v", rp, err)
			}
		}
		for _, mp := range p.MaskedPaths {
			if c.ownPidNs && underProc(mp) {
				c.procMasked = append(c.procMasked, mp)
				continue
			}
			if err := maskPath(root, mp); err != nil {
				return errf("internal", "maskedPaths: %q: %v", mp, err)
			}
		}
	}
	c.cgroup, err = a.cg.create(p.ID, p.MemoryLimitBytes, p.CPUQuotaUs, p.CPUPeriodUs)
	return err
}

const procFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC

// underProc tells whether an in-container path is /proc or below it (lexically, as given).
func underProc(p string) bool {
	p = filepath.Clean(p)
	return p == "/proc" || strings.HasPrefix(p, "/proc/")
}

// teardown undoes build: mounts, directories, cgroup. Directories are removed only once nothing
// is mounted below them, so a failed unmount can never delete a bind mount's source.
func (a *agent) teardown(c *container) {
	a.cg.remove(c.cgroup)
	if err := unmountAll(c.dir); err != nil {
		logf("remove %s: %v: leaving %s", c.spec.ID, err, c.dir)
		return
	}
	for _, d := range []string{c.dir, c.scratch} {
		if err := os.RemoveAll(d); err != nil {
			logf("remove %s: %v", c.spec.ID, err)
		}
	}
}

func (a *agent) startContainer(id string, streamID uint32) (interface{}, error) {
	if streamID == 0 {
		return nil, errf("invalid-argument", "stream: want a stream id >= 1")
	}
	defer a.lockID(id)()
	c := a.lookup(id)
	if c == nil {
		return nil, errf("not-found", "container %s not found", id)
	}
	a.mu.Lock()
	state := c.state
	a.mu.Unlock()
	if state == "running" {
		return nil, errf("failed-precondition", "container %s is already running", id)
	}
	p := c.spec
	path, err := lookPath(c.rootfs, p.Args[0], p.Env, p.Cwd)
	if err != nil {
		return nil, errf("failed-precondition", "%v", err)
	}
	a.mu.Lock()
	c.exitCh = make(chan struct{}) // read under a.mu by exited() and removeContainer
	a.mu.Unlock()
	sp := procSpec{path: path, args: p.Args, env: p.Env, cwd: p.Cwd, user: p.User, tty: p.Tty, stdin: p.Stdin, stream: streamID, main: true}
	pid, started, err := a.spawn(c, sp)
	if err != nil {
		return nil, err
	}
	return map[string]interface{}{"pid": pid, "startedAt": started}, nil
}

// signal signals the container's main process, or with stream the process of that stream (an
// exec session); SIGKILL to an exec kills its process group too.
func (a *agent) signal(id string, sig int, streamID uint32) error {
	if sig < 1 || sig > 64 {
		return errf("invalid-argument", "signal %d: want 1-64", sig)
	}
	c := a.lookup(id)
	if c == nil {
		return errf("not-found", "container %s not found", id)
	}
	a.mu.Lock()
	pid, running := c.pid, c.state == "running"
	st := a.streams[streamID]
	a.mu.Unlock()
	if streamID != 0 && (st == nil || st.container != c || st.pid == 0) {
		return errf("failed-precondition", "stream %d: no process of container %s runs on it", streamID, id)
	}
	if streamID != 0 && st.pid != pid {
		logf("signal %d to %s stream %d (pid %d)", sig, id, streamID, st.pid)
		if err := syscall.Kill(st.pid, syscall.Signal(sig)); err != nil && err != syscall.ESRCH {
			return errf("internal", "kill %d: %v", st.pid, err)
		}
		if sig == int(syscall.SIGKILL) {
			_ = syscall.Kill(-st.pid, syscall.SIGKILL)
			if c.ownPidNs {
				// The program is the launcher's child: one that left the process group (a
				// shell with job control) is still in the launcher's session.
				killSession(st.pid)
			}
		}
		return nil
	}
	if !running {
		return errf("failed-precondition", "container %s is not running", id)
	}
	logf("signal %d to %s (pid %d)", sig, id, pid)
	if err := syscall.Kill(pid, syscall.Signal(sig)); err != nil && err != syscall.ESRCH {
		return errf("internal", "kill %d: %v", pid, err)
	}
	if sig == int(syscall.SIGKILL) {
		a.killAll(c, pid)
	}
	return nil
}

// killAll SIGKILLs what runs in the container: its cgroup, the main process's group (which is
// all there is without cgroups) and its exec processes.
func (a *agent) killAll(c *container, pid int) {
	a.cg.kill(c.cgroup)
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	a.mu.Lock()
	for ep := range c.execs {
		_ = syscall.Kill(ep, syscall.SIGKILL)
		_ = syscall.Kill(-ep, syscall.SIGKILL)
	}
	a.mu.Unlock()
}

// killSession SIGKILLs every process of session sid (as /proc/PID/stat of the agent's procfs
// gives it).
func killSession(sid int) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...: comm may hold anything but the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(b[i+1:])); len(f) > 3 && f[3] == strconv.Itoa(sid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (a *agent) removeContainer(id string) error {
	defer a.lockID(id)()
	c := a.lookup(id)
	if c == nil {
		return nil
	}
	a.mu.Lock()
	pid, running, exitCh := c.pid, c.state == "running", c.exitCh
	a.mu.Unlock()
	if running {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		a.killAll(c, pid)
		select {
		case <-exitCh:
		case <-time.After(5 * time.Second):
			logf("remove %s: pid %d did not exit after SIGKILL", id, pid)
		}
	} else {
		a.killAll(c, 0)
	}
	a.teardown(c)
	a.mu.Lock()
	delete(a.containers, id)
	a.mu.Unlock()
	logf("removed %s", id)
	return nil
}

// seccompFor compiles the container's filter before anything is made: a profile that does not
// compile is the request's fault. A privileged container gets none (the host sends none either).
func seccompFor(p createParams) ([]syscall.SockFilter, error) {
	if p.Privileged || (!p.SeccompRuntimeDefault && p.SeccompProfile == nil) {
		return nil, nil
	}
	var prof *seccompProfile
	if p.SeccompProfile != nil {
		prof = resolveSeccompProfile(p.SeccompProfile, p.Capabilities)
	} else {
		prof = defaultSeccompProfile(p.Capabilities)
	}
	prog, err := compileSeccomp(prof)
	if err != nil {
		return nil, errf("invalid-argument", "seccomp profile: %v", err)
	}
	return prog, nil
}
