package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

var podFiles = []string{"hosts", "resolv.conf", "hostname"}

type setupPodParams struct {
	Hostname   string            `json:"hostname"`
	Hosts      string            `json:"hosts"`
	ResolvConf string            `json:"resolvConf"`
	Sysctls    map[string]string `json:"sysctls"`
	TimeNs     nsTime            `json:"timeNs"`
	// Net: the pod network as vmlet.* words (net.sh), for a VM booted before its pod (the warm
	// pool); a VM booted for its pod had them on its kernel command line.
	Net []string `json:"net"`
}

// netScript configures the NIC (node-install/guest/net.sh, the same code /init runs at boot).
const netScript = "/etc/vmlet/net.sh"

func (a *agent) setupNet(words []string) error {
	for _, w := range words {
		if !strings.HasPrefix(w, "vmlet.") || strings.ContainsAny(w, " \t\n") {
			return errf("invalid-argument", "net: %q is not a vmlet.* parameter", w)
		}
	}
	argv := append([]string{"/bin/sh", "-c", ". " + netScript + " && vmlet_net \"$@\"", "vmlet-net"}, words...)
	out, ws, err := a.reaper.output("/bin/sh", argv)
	if err == nil && (!ws.Exited() || ws.ExitStatus() != 0) {
		err = fmt.Errorf("net.sh ended with status %d (signal %d)", ws.ExitStatus(), ws.Signal())
	}
	if err != nil {
		return errf("internal", "pod network: %v: %s", err, strings.TrimSpace(string(out)))
	}
	logf("pod network: %s", strings.TrimSpace(string(out)))
	return nil
}

// namespacedSysctl: the sysctls a pod may set (the kubelet's "safe" and namespaced ones).
func namespacedSysctl(name string) bool {
	for _, p := range []string{"net.", "kernel.shm", "kernel.msg", "fs.mqueue."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "kernel.sem"
}

func (a *agent) setupPod(p setupPodParams) error {
	for name, value := range p.Sysctls {
		if !namespacedSysctl(name) || strings.Contains(name, "..") || strings.ContainsAny(name, "/ ") {
			return errf("invalid-argument", "sysctls: %q is not a namespaced sysctl (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)", name)
		}
		if strings.ContainsAny(value, "\n") {
			return errf("invalid-argument", "sysctls: %s: value has a newline", name)
		}
	}
	// The clock and hostname are the guest's own only in the guest (on the virtio port); on a
	// test host (--connect) they belong to the host.
	if a.cfg.guest {
		if p.TimeNs > 0 {
			tv := syscall.NsecToTimeval(int64(p.TimeNs))
			if err := syscall.Settimeofday(&tv); err != nil {
				logf("setup_pod: settimeofday: %v", err)
			}
		}
		if len(p.Net) > 0 {
			if err := a.setupNet(p.Net); err != nil {
				return err
			}
		}
		if p.Hostname != "" {
			if err := syscall.Sethostname([]byte(p.Hostname)); err != nil {
				return errf("internal", "sethostname: %v", err)
			}
		}
	}
	hostname := p.Hostname
	if hostname != "" && !strings.HasSuffix(hostname, "\n") {
		hostname += "\n"
	}
	for name, content := range map[string]string{"hosts": p.Hosts, "resolv.conf": p.ResolvConf, "hostname": hostname} {
		f, err := a.podFile(name)
		if err != nil {
			return errf("internal", "%v", err)
		}
		// In place (not rename): containers have this inode bind-mounted.
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return errf("internal", "%v", err)
		}
	}
	for name, value := range p.Sysctls {
		file := filepath.Join(a.cfg.sysctlDir, strings.ReplaceAll(name, ".", "/"))
		if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
			return errf("invalid-argument", "sysctls: %s=%s: %v", name, value, errText(err))
		}
	}
	logf("pod set up: hostname %q, %d sysctls", p.Hostname, len(p.Sysctls))
	return nil
}

// podFile returns RUN/pod/<name>, created empty if setup_pod has not written it yet.
func (a *agent) podFile(name string) (string, error) {
	dir := filepath.Join(a.cfg.runDir, "pod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f := filepath.Join(dir, name)
	fd, err := os.OpenFile(f, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return "", err
	}
	fd.Close()
	return f, nil
}

// ensurePodShm mounts the pod's /dev/shm (a tmpfs all its containers share) once.
func (a *agent) ensurePodShm() (string, error) {
	dir := filepath.Join(a.cfg.runDir, "pod", "shm")
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.podShm {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if len(mountsUnder(dir)) == 0 {
		if err := mount("shm", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=1777"); err != nil {
			return "", err
		}
	}
	a.podShm = true
	return dir, nil
}
