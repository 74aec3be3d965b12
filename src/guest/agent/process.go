package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// launcherPath is how a child reaches this binary from inside its chroot: the magic link of the
// container's /proc (ours) refers to our file even though it is outside the chroot.
const launcherPath = "/proc/self/exe"

type procSpec struct {
	path   string // in-root path to exec
	args   []string
	env    []string
	cwd    string
	user   userSpec
	tty    bool
	stdin  bool
	stream uint32
	main   bool // the container's main process, else an exec
	// The terminal's size before the process starts (tty only; 0: the kernel's 0x0 until a resize).
	cols, rows uint16
}

type execParams struct {
	ID     string    `json:"id"`
	Stream uint32    `json:"stream"`
	Args   []string  `json:"args"`
	Env    []string  `json:"env"`
	Tty    bool      `json:"tty"`
	Stdin  bool      `json:"stdin"`
	Cwd    string    `json:"cwd"`
	User   *userSpec `json:"user"`
	Cols   uint16    `json:"cols"`
	Rows   uint16    `json:"rows"`
}

func (a *agent) exec(p execParams) (interface{}, error) {
	if p.Stream == 0 {
		return nil, errf("invalid-argument", "stream: want a stream id >= 1")
	}
	if len(p.Args) == 0 {
		return nil, errf("invalid-argument", "args: the command is empty")
	}
	c := a.lookup(p.ID)
	if c == nil {
		return nil, errf("not-found", "container %s not found", p.ID)
	}
	a.mu.Lock()
	running := c.state == "running"
	a.mu.Unlock()
	if !running {
		return nil, errf("failed-precondition", "container %s is not running", p.ID)
	}
	env := mergeEnv(c.spec.Env, p.Env)
	cwd, user := c.spec.Cwd, c.spec.User
	if p.Cwd != "" {
		cwd = p.Cwd
	}
	if p.User != nil {
		user = *p.User
	}
	path, err := lookPath(c.rootfs, p.Args[0], env, cwd)
	if err != nil {
		return nil, errf("not-found", "%v", err)
	}
	pid, _, err := a.spawn(c, procSpec{path: path, args: p.Args, env: env, cwd: cwd, user: user, tty: p.Tty, stdin: p.Stdin, stream: p.Stream, cols: p.Cols, rows: p.Rows})
	if err != nil {
		return nil, err
	}
	return map[string]interface{}{"pid": pid}, nil
}

// spawn starts a process of container c with its stdio on a new stream. The reaper calls back
// on exit; the callback waits for spawn to have recorded the pid first.
func (a *agent) spawn(c *container, sp procSpec) (int, nsTime, error) {
	st := newStream(sp.stream)
	st.tty = sp.tty
	st.ignoreClose = sp.main && !c.spec.StdinOnce
	st.container = c
	var childEnds, outputs []*os.File
	var outTypes []byte
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	fds := make([]uintptr, 3)
	if sp.tty {
		master, slave, err := openPty(filepath.Join(c.rootfs, "dev/pts/ptmx"))
		if err != nil {
			return 0, 0, errf("internal", "pty: %v", err)
		}
		st.master = master
		if sp.cols > 0 && sp.rows > 0 {
			if err := resizePty(master, sp.cols, sp.rows); err != nil {
				logf("stream %d: initial terminal size: %v", sp.stream, err)
			}
		}
		childEnds = append(childEnds, slave)
		outputs, outTypes = append(outputs, master), append(outTypes, tStdout)
		fds[0], fds[1], fds[2] = slave.Fd(), slave.Fd(), slave.Fd()
		if sp.stdin {
			st.startStdin(master)
		}
	} else {
		if sp.stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return 0, 0, errf("internal", "pipe: %v", err)
			}
			childEnds = append(childEnds, r)
			fds[0] = r.Fd()
			st.startStdin(w)
		} else {
			null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
			if err != nil {
				return 0, 0, errf("internal", "/dev/null: %v", err)
			}
			childEnds = append(childEnds, null)
			fds[0] = null.Fd()
		}
		for i, typ := range []byte{tStdout, tStderr} {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll(childEnds)
				closeAll(outputs)
				st.endStdin()
				return 0, 0, errf("internal", "pipe: %v", err)
			}
			childEnds = append(childEnds, w)
			outputs, outTypes = append(outputs, r), append(outTypes, typ)
			fds[i+1] = w.Fd()
		}
	}
	env := sp.env
	if _, ok := envGet(env, "PATH"); !ok {
		env = append(append([]string{}, env...), "PATH="+defaultPath)
	}
	if _, ok := envGet(env, "TERM"); !ok && sp.tty {
		env = append(env, "TERM=xterm")
	}
	groups := sp.user.Groups
	if groups == nil {
		groups = []uint32{}
	}
	ls := launchSpec{
		Path: sp.path, Args: sp.args, Env: env, UID: sp.user.UID, GID: sp.user.GID, Groups: groups,
		SetCaps: c.setCaps, Caps: c.caps, NoNewPrivs: c.spec.NoNewPrivs, Seccomp: c.seccomp,
	}
	// Own PID namespace: the launcher chroots itself; the main one mounts proc in its new
	// namespace, an exec's joins that of the main process (fd 5).
	var pidNs *os.File
	if c.ownPidNs {
		ls.Root, ls.Cwd = c.rootfs, sp.cwd
		if sp.main {
			ls.MountProc, ls.ProcReadonly, ls.ProcMasked = true, c.procReadonly, c.procMasked
		} else {
			a.mu.Lock()
			mainPid := c.pid
			a.mu.Unlock()
			f, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", mainPid))
			if err != nil {
				closeAll(childEnds)
				closeAll(outputs)
				st.endStdin()
				return 0, 0, errf("failed-precondition", "container %s: its PID namespace: %v", c.spec.ID, errText(err))
			}
			pidNs = f
			childEnds = append(childEnds, f) // closed with them
			ls.JoinPidNs = true
		}
	}
	spec, err := json.Marshal(ls)
	if err != nil {
		closeAll(childEnds)
		closeAll(outputs)
		st.endStdin()
		return 0, 0, errf("internal", "launch spec: %v", err)
	}
	// The launcher's spec (fd 3) and error (fd 4) pipes.
	specR, specW, err := os.Pipe()
	if err != nil {
		closeAll(childEnds)
		closeAll(outputs)
		st.endStdin()
		return 0, 0, errf("internal", "pipe: %v", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(append(childEnds, specR, specW))
		closeAll(outputs)
		st.endStdin()
		return 0, 0, errf("internal", "pipe: %v", err)
	}
	childEnds = append(childEnds, specR, errW)
	fds = append(fds, specR.Fd(), errW.Fd())
	if pidNs != nil {
		fds = append(fds, pidNs.Fd())
	}
	// No Credential: the launcher switches user after dropping capabilities. Its own
	// environment is empty (the Go runtime reads GODEBUG & co.); the program's is in the spec.
	attr := &syscall.ProcAttr{
		Dir:   sp.cwd,
		Env:   []string{},
		Files: fds,
		Sys: &syscall.SysProcAttr{
			Chroot:  c.rootfs,
			Setsid:  true,
			Setctty: sp.tty,
			Ctty:    0,
		},
	}
	if c.ownPidNs {
		attr.Dir, attr.Sys.Chroot = "", ""
		if sp.main {
			attr.Sys.Cloneflags = syscall.CLONE_NEWPID
		}
	}

	a.mu.Lock()
	if a.streams[sp.stream] != nil {
		a.mu.Unlock()
		closeAll(append(childEnds, specW, errR))
		closeAll(outputs)
		st.endStdin()
		return 0, 0, errf("already-exists", "stream %d is in use", sp.stream)
	}
	a.streams[sp.stream] = st
	a.mu.Unlock()

	recorded := make(chan struct{})
	launchFailed := false
	oomBase := oomKills(c.cgroup)
	pid, err := a.reaper.start(launcherPath, []string{"vmlet-agent", launchArg}, attr, func(pid int, ws syscall.WaitStatus) {
		<-recorded
		if launchFailed {
			return
		}
		a.exited(c, st, sp, pid, ws, outputs, oomBase)
	})
	closeAll(childEnds)
	fail := func(code string, err error) (int, nsTime, error) {
		closeAll(outputs)
		st.endStdin()
		a.mu.Lock()
		delete(a.streams, sp.stream)
		a.mu.Unlock()
		if err == syscall.ENOENT || err == syscall.EACCES || err == syscall.ENOEXEC {
			code = "failed-precondition"
		}
		return 0, 0, errf(code, "start %v: %v", sp.args, err)
	}
	if err != nil {
		specW.Close()
		errR.Close()
		return fail("internal", err)
	}
	a.cg.add(c.cgroup, pid)
	// The launcher waits for its spec: written only now that the pid is in the cgroup.
	go func() {
		_, _ = specW.Write(spec)
		specW.Close()
	}()
	msg, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
	errR.Close()
	if len(msg) > 0 {
		launchFailed = true
		close(recorded)
		var le launchError
		if json.Unmarshal(msg, &le) != nil {
			le = launchError{Step: "launch", Text: string(msg)}
		}
		logf("start %s stream %d: launcher: %s: %s", c.spec.ID, sp.stream, le.Step, le.Text)
		if (le.Step == "exec" || le.Step == "chdir") && le.Errno != 0 {
			return fail("internal", syscall.Errno(le.Errno))
		}
		return fail("internal", &le)
	}
	started := now()
	a.mu.Lock()
	st.pid = pid
	if sp.main {
		c.state, c.pid, c.startedAt, c.finishedAt, c.exitCode, c.signal, c.stream = "running", pid, started, 0, 0, 0, sp.stream
	} else {
		c.execs[pid] = true
	}
	a.mu.Unlock()
	// The readers are counted before the exit callback may run (it waits for recorded): else a
	// quick process's exit could drain no readers and be reported before its output.
	for i, f := range outputs {
		st.pump(a.port, f, outTypes[i])
	}
	close(recorded)
	logf("started %s stream %d pid %d: %v", c.spec.ID, sp.stream, pid, sp.args)
	return pid, started, nil
}

// exited reports a process's end after the last of its output. The end of a container's main
// process ends the container, as the death of a pid namespace's init would: what it left
// running is killed.
func (a *agent) exited(c *container, st *stream, sp procSpec, pid int, ws syscall.WaitStatus, outputs []*os.File, oomBase uint64) {
	finished := now()
	code, sig := ws.ExitStatus(), 0
	if ws.Signaled() {
		sig = int(ws.Signal())
		code = 128 + sig
	}
	if sp.main {
		a.killAll(c, pid)
	}
	st.drain(outputs)
	st.endStdin()
	if st.master != nil {
		st.master.Close()
	}
	oom := oomKills(c.cgroup) > oomBase
	var exitCh chan struct{}
	a.mu.Lock()
	delete(a.streams, sp.stream)
	if sp.main {
		c.state, c.exitCode, c.signal, c.finishedAt = "exited", code, sig, finished
		// This run's channel, taken with the state that lets a restart make the next one: closing
		// c.exitCh later could close the restarted run's (and panic at its end).
		exitCh = c.exitCh
	} else {
		delete(c.execs, pid)
	}
	a.mu.Unlock()
	logf("exited %s stream %d pid %d: code %d signal %d oom %v", c.spec.ID, sp.stream, pid, code, sig, oom)
	a.event(map[string]interface{}{
		"event": "exit", "stream": sp.stream, "id": c.spec.ID, "exec": !sp.main, "pid": pid,
		"exitCode": code, "signal": sig, "oomKilled": oom, "finishedAt": finished,
	})
	if exitCh != nil {
		close(exitCh)
	}
}
