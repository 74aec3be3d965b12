package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// The launcher: container processes are started as `/proc/self/exe launch` (this binary again,
// through the magic link, which works from inside the chroot: the container's /proc is ours).
// The agent's ForkExec does setsid, chroot, chdir, the controlling terminal and stdio; the
// launcher, on the one thread it runs on, does what must happen on the thread that calls execve
// and what SysProcAttr cannot: drop the capability bounding set, switch user keeping the
// capabilities (as runc's finalizeNamespace), set the capability sets and no_new_privs, then
// execs the program in place (same pid). It reads its launchSpec (JSON) from fd 3 until EOF:
// the agent writes it only after putting the pid in the container's cgroup, so the program
// never runs outside it. A failure is written to fd 4 (close-on-exec: EOF there means the
// program is running) as a launchError, and the launcher exits 127.
//
// A container with its own PID namespace (pidNamespace "container") is not chrooted by the
// agent: its launcher is exec'd from the agent's root (the container's /proc is not the agent's
// then, and an exec's launcher is not in the PID namespace it shows) and chroots itself (Root,
// Cwd). The main process's launcher is PID 1 of a new namespace (CLONE_NEWPID): it mounts a new
// proc on the container's /proc and applies the readonly and masked paths under it before the
// rest. An exec's launcher gets the namespace as fd 5 (JoinPidNs), joins it (setns affects only
// children) and runs the program as its child, forwarding signals and exiting as it does.
const (
	launchArg     = "launch"
	launchSpecFd  = 3
	launchErrorFd = 4
	launchPidNsFd = 5
)

type launchSpec struct {
	Path       string   `json:"path"` // in the chroot
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	Groups     []uint32 `json:"groups"`
	SetCaps    bool     `json:"setCaps"` // else the capabilities are left as they are (root: all)
	Caps       uint64   `json:"caps"`    // bit n = capability n
	NoNewPrivs bool     `json:"noNewPrivs"`
	// Seccomp filter, installed last before exec when no_new_privs is set, else first (while the
	// launcher still has CAP_SYS_ADMIN, which the kernel then requires: runc's order).
	Seccomp []syscall.SockFilter `json:"seccomp,omitempty"`
	// Own PID namespace only (see above).
	Root         string   `json:"root,omitempty"` // chroot here, then chdir to Cwd
	Cwd          string   `json:"cwd,omitempty"`
	MountProc    bool     `json:"mountProc,omitempty"`
	ProcReadonly []string `json:"procReadonly,omitempty"`
	ProcMasked   []string `json:"procMasked,omitempty"`
	JoinPidNs    bool     `json:"joinPidNs,omitempty"`
}

type launchError struct {
	Step  string `json:"step"`
	Errno int    `json:"errno"`
	Text  string `json:"text"`
}

func (e *launchError) Error() string { return e.Step + ": " + e.Text }

func newLaunchError(step string, err error) *launchError {
	le := &launchError{Step: step, Text: errText(err)}
	if en, ok := err.(syscall.Errno); ok {
		le.Errno = int(en)
	}
	return le
}

func init() {
	if len(os.Args) > 1 && os.Args[1] == launchArg {
		// In init, so that main (the launcher) runs on the process's main thread, which every
		// per-thread setting below is made on and which calls execve.
		runtime.LockOSThread()
	}
}

// capNames are linux/capability.h's, bit n = capNames[n].
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// capMask turns capability names (CAP_X, or X; any case) into a mask; unknown names are
// returned apart (runc ignores them with a warning; so does the agent).
func capMask(names []string) (mask uint64, unknown []string) {
	for _, n := range names {
		u := strings.ToUpper(n)
		if !strings.HasPrefix(u, "CAP_") {
			u = "CAP_" + u
		}
		found := false
		for i, cn := range capNames {
			if cn == u {
				mask |= 1 << uint(i)
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, n)
		}
	}
	return mask, unknown
}

const (
	prSetKeepcaps       = 8
	prCapbsetRead       = 23
	prCapbsetDrop       = 24
	prSetNoNewPrivs     = 38
	prCapAmbient        = 47
	prCapAmbientClear   = 4
	linuxCapabilityV3   = 0x20080522
	launchFailedCode    = 127
	maxLaunchSpecLength = 16 << 20
)

func prctl(op, arg uintptr) error {
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, op, arg, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

func capget() (eff, perm, inh uint64, err error) {
	h := capHeader{version: linuxCapabilityV3}
	var d [2]capData
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(&d[0])), 0); e != 0 {
		return 0, 0, 0, e
	}
	join := func(lo, hi uint32) uint64 { return uint64(lo) | uint64(hi)<<32 }
	return join(d[0].effective, d[1].effective), join(d[0].permitted, d[1].permitted), join(d[0].inheritable, d[1].inheritable), nil
}

func capset(eff, perm, inh uint64) error {
	h := capHeader{version: linuxCapabilityV3}
	d := [2]capData{
		{uint32(eff), uint32(perm), uint32(inh)},
		{uint32(eff >> 32), uint32(perm >> 32), uint32(inh >> 32)},
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(&d[0])), 0); e != 0 {
		return e
	}
	return nil
}

// lastCap is the highest capability the kernel knows (PR_CAPBSET_READ is EINVAL beyond it;
// no /proc needed).
func lastCap() int {
	n := 0
	for n < 63 && prctl(prCapbsetRead, uintptr(n+1)) == nil {
		n++
	}
	return n
}

// launchMain is the launcher (`vmlet-agent launch`); it never returns.
func launchMain() {
	report := func(le *launchError) {
		b, _ := json.Marshal(le)
		_, _ = syscall.Write(launchErrorFd, b)
		os.Exit(launchFailedCode)
	}
	fail := func(step string, err error) { report(newLaunchError(step, err)) }
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(launchSpecFd, chunk)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail("read spec", err)
		}
		if n == 0 {
			break
		}
		if buf = append(buf, chunk[:n]...); len(buf) > maxLaunchSpecLength {
			fail("read spec", fmt.Errorf("spec longer than %d bytes", maxLaunchSpecLength))
		}
	}
	syscall.Close(launchSpecFd)
	if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, launchErrorFd, syscall.F_SETFD, syscall.FD_CLOEXEC); e != 0 {
		os.Exit(launchFailedCode)
	}
	var s launchSpec
	if err := json.Unmarshal(buf, &s); err != nil {
		fail("spec", err)
	}
	if le := enterContainer(&s); le != nil {
		report(le)
	}
	if le := applyCredentials(&s); le != nil {
		report(le)
	}
	if s.JoinPidNs {
		runChild(&s, fail)
	}
	err := syscall.Exec(s.Path, s.Args, s.Env)
	fail("exec", err)
}

// enterContainer does, for a container with its own PID namespace, what the agent's ForkExec
// does for the others (chroot, chdir), after joining the namespace (an exec) or mounting its
// proc (the main process, PID 1 of a new one), while the launcher is still root with every
// capability it was given.
func enterContainer(s *launchSpec) *launchError {
	step := newLaunchError
	if s.JoinPidNs {
		if _, _, e := syscall.RawSyscall(sysSetns, launchPidNsFd, syscall.CLONE_NEWPID, 0); e != 0 {
			return step("setns pid", e)
		}
		syscall.Close(launchPidNsFd)
	}
	if s.Root == "" {
		return nil
	}
	if err := syscall.Chroot(s.Root); err != nil {
		return step("chroot", err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return step("chdir", err)
	}
	if s.MountProc {
		// A restarted container: the previous namespace's proc (and what is mounted below it)
		// goes first.
		for i := 0; i < 16 && syscall.Unmount("/proc", syscall.MNT_DETACH) == nil; i++ {
		}
		if err := mount("proc", "/proc", "proc", procFlags, ""); err != nil {
			return step("mount proc", err)
		}
		for _, p := range s.ProcReadonly {
			if err := readonlyPath("", p); err != nil {
				return step("readonlyPaths "+p, err)
			}
		}
		for _, p := range s.ProcMasked {
			if err := maskPath("", p); err != nil {
				return step("maskedPaths "+p, err)
			}
		}
	}
	if s.Cwd != "" {
		if err := syscall.Chdir(s.Cwd); err != nil {
			return step("chdir", err)
		}
	}
	return nil
}

// forwardedSignals are passed on by an exec's launcher to its child.
var forwardedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// runChild runs the program as the launcher's child (in the PID namespace joined; same stdio,
// root, cwd, session and process group, and the credentials, capabilities, no_new_privs and
// seccomp filter just set on this thread, which the fork inherits), forwards signals to it and
// ends as it did: its exit code, or the same signal. Never returns.
func runChild(s *launchSpec, fail func(string, error)) {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, forwardedSignals...)
	// No Pdeathsig: Go's child compares getppid() with our pid, and sees 0 across the namespace.
	pid, err := syscall.ForkExec(s.Path, s.Args, &syscall.ProcAttr{Env: s.Env, Files: []uintptr{0, 1, 2}})
	if err != nil {
		fail("exec", err)
	}
	syscall.Close(launchErrorFd) // EOF: the program runs
	go func() {
		for sig := range sigs {
			_ = syscall.Kill(pid, sig.(syscall.Signal))
		}
	}()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			os.Exit(launchFailedCode)
		}
		if ws.Exited() || ws.Signaled() {
			break
		}
	}
	if ws.Exited() {
		os.Exit(ws.ExitStatus())
	}
	sig := ws.Signal()
	signal.Reset(sig)
	// Go keeps its own handler for some signals after Reset: the default action, raw.
	var sa [4]uintptr // struct sigaction, all zero: SIG_DFL
	_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa[0])), 0, 8, 0, 0)
	_ = syscall.Kill(syscall.Getpid(), sig)
	time.Sleep(time.Second) // a signal whose default is not to end the process
	os.Exit(128 + int(sig))
}

// applyCredentials runs on the thread that will exec. Order as runc: bounding set, keep caps
// across the user switch, user, capability sets, no_new_privs. Effective and permitted = the
// set, inheritable and ambient empty (as containerd and moby since CVE-2022-24769: an
// inheritable set would let a non-root process gain capabilities from a file's inheritable
// bits). For a uid other than 0 the kernel then clears the effective and permitted sets at
// execve (no ambient capabilities); the bounding set stays limited. Root gets the bounding set
// back as effective and permitted at execve, i.e. the set.
func applyCredentials(s *launchSpec) *launchError {
	step := newLaunchError
	set := s.Caps
	if len(s.Seccomp) > 0 && !s.NoNewPrivs {
		if err := installSeccomp(s.Seccomp); err != nil {
			return step("seccomp", err)
		}
	}
	if s.SetCaps {
		last := lastCap()
		for c := 0; c <= last; c++ {
			if set&(1<<uint(c)) == 0 {
				if err := prctl(prCapbsetDrop, uintptr(c)); err != nil {
					return step(fmt.Sprintf("drop %s from the bounding set", capName(c)), err)
				}
			}
		}
		// What we do not have (the agent's own bounding set) cannot be granted: capset would be
		// EPERM.
		_, perm, _, err := capget()
		if err != nil {
			return step("capget", err)
		}
		set &= perm
		if err := prctl(prSetKeepcaps, 1); err != nil {
			return step("PR_SET_KEEPCAPS", err)
		}
	}
	groups := s.Groups
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return step("setgroups", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(s.GID), uintptr(s.GID), uintptr(s.GID)); e != 0 {
		return step("setgid", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(s.UID), uintptr(s.UID), uintptr(s.UID)); e != 0 {
		return step("setuid", e)
	}
	if s.SetCaps {
		if err := prctl(prSetKeepcaps, 0); err != nil {
			return step("PR_SET_KEEPCAPS", err)
		}
		if err := prctl(prCapAmbient, prCapAmbientClear); err != nil && err != syscall.EINVAL {
			return step("PR_CAP_AMBIENT_CLEAR_ALL", err)
		}
		if err := capset(set, set, 0); err != nil {
			return step("capset", err)
		}
	}
	if s.NoNewPrivs {
		if err := prctl(prSetNoNewPrivs, 1); err != nil {
			return step("PR_SET_NO_NEW_PRIVS", err)
		}
		if len(s.Seccomp) > 0 {
			if err := installSeccomp(s.Seccomp); err != nil {
				return step("seccomp", err)
			}
		}
	}
	return nil
}

func capName(c int) string {
	if c < len(capNames) {
		return capNames[c]
	}
	return fmt.Sprintf("capability %d", c)
}
