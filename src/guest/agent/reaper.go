package main

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// reaper is the one place that waits for children. As PID 1 every orphan of the guest becomes
// our child, so exec.Cmd.Wait (which waits for one pid) cannot be used: one goroutine calls
// wait4(-1) on each SIGCHLD and hands the status to whoever registered that pid.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]func(int, syscall.WaitStatus)
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]func(int, syscall.WaitStatus){}}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	go func() {
		for {
			r.reapAll()
			<-ch
		}
	}()
	return r
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		// Taking mu after wait4 means a pid reaped between fork and registration (start holds
		// mu across both) still finds its waiter.
		r.mu.Lock()
		fn := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if fn != nil {
			go fn(pid, ws)
		}
	}
}

// start forks and registers onExit for the new pid atomically with respect to the reaper.
func (r *reaper) start(path string, argv []string, attr *syscall.ProcAttr, onExit func(int, syscall.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = onExit
	return pid, nil
}

// output runs path (argv[0] included in argv) through the reaper, stdin from /dev/null, and
// returns its stdout and stderr together and how it ended. exec.Cmd cannot be used here: its
// Wait races the reaper's wait4(-1) for the child and loses with ECHILD ("no child processes").
func (r *reaper) output(path string, argv []string) ([]byte, syscall.WaitStatus, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, 0, err
	}
	defer null.Close()
	rp, wp, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	defer rp.Close()
	done := make(chan syscall.WaitStatus, 1)
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{null.Fd(), wp.Fd(), wp.Fd()}}
	_, err = r.start(path, argv, attr, func(_ int, ws syscall.WaitStatus) { done <- ws })
	wp.Close() // the child's copy is the last writer: EOF when it exits
	if err != nil {
		return nil, 0, err
	}
	out, _ := io.ReadAll(rp)
	return out, <-done, nil
}
