// vmlet-agent: PID 1 of a sandboxed pod's micro-VM. It speaks docs/guest-agent.md on the
// virtio-serial port vmlet.agent.0 and runs each CRI container as a process tree in a chroot.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
)

const prSetChildSubreaper = 36

func main() {
	if len(os.Args) > 1 && os.Args[1] == launchArg {
		launchMain()
	}
	connect := flag.String("connect", "", "connect to this unix socket instead of the virtio port (tests)")
	runDir := flag.String("run-dir", "/run/vmlet", "containers under DIR/c/<id>, pod files under DIR/pod")
	images := flag.String("images", "", "image rootfs directories (default RUN/images)")
	scratch := flag.String("scratch", "", "writable layers (default RUN/scratch)")
	cgroupRoot := flag.String("cgroup-root", "/sys/fs/cgroup/vmlet", "parent cgroup of the containers")
	sysctlDir := flag.String("sysctl-dir", "/proc/sys", "where setup_pod writes sysctls (tests point it elsewhere)")
	flag.Parse()
	if *images == "" {
		*images = filepath.Join(*runDir, "images")
	}
	if *scratch == "" {
		*scratch = filepath.Join(*runDir, "scratch")
	}
	syscall.Umask(0o022)
	pid1 := os.Getpid() == 1
	if pid1 {
		// Containers share our pid namespace: a root process's `kill 1` must not end init (Go's
		// default would exit, and the kernel panics). Notify, not Ignore: an ignored signal
		// stays ignored in the children we exec.
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		go func() {
			for sig := range ch {
				logf("ignoring %v sent to PID 1", sig)
			}
		}()
	} else {
		// Not init (the guest kit's /init runs us as its child, to power off when we end; tests
		// run us on a host): become the reaper of our descendants, so orphans of containers are
		// reaped here.
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			logf("PR_SET_CHILD_SUBREAPER: %v", e)
		}
	}
	for _, d := range []string{filepath.Join(*runDir, "c"), *scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			logf("%v", err)
		}
	}
	a := &agent{
		cfg:        config{runDir: *runDir, images: *images, scratch: *scratch, cgroupRoot: *cgroupRoot, sysctlDir: *sysctlDir, guest: *connect == ""},
		port:       &port{connectPath: *connect},
		reaper:     newReaper(),
		idLocks:    map[string]*sync.Mutex{},
		containers: map[string]*container{},
		streams:    map[uint32]*stream{},
	}
	a.cg = setupCgroups(*cgroupRoot)
	rw := a.port.open()
	logf("%s up (pid %d), protocol %d", agentVersion, os.Getpid(), protocolVersion)
	fmt.Fprintln(os.Stderr, "VMLET-AGENT-READY")
	a.event(map[string]interface{}{"event": "ready", "version": protocolVersion})
	if a.cfg.guest {
		// While the host sets the pod up (or a warm-pool VM waits): a container's EROFS image
		// then mounts without loading them (~60-80 ms of a first container under TCG).
		go loadImageModules()
	}
	a.port.run(rw, a.handle)
}
