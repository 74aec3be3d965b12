package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rootfs(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("#!"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"bin/sh":       "/bin/busybox", // absolute: must resolve inside root, not on the host
		"usr/bin/env":  "/bin/busybox",
		"bin/up":       "../../../../bin/busybox", // climbs past the root: stays in it
		"bin/loop":     "/bin/loop",
		"etc/escape":   "/../../../etc",
		"bin/dangling": "/nowhere/x",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveInStaysInRoot(t *testing.T) {
	root := rootfs(t)
	for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/up", "/../../bin/sh"} {
		got, err := resolveIn(root, p, true, false)
		if err != nil || got != root+"/bin/busybox" {
			t.Errorf("resolveIn(%s) = %s, %v", p, got, err)
		}
	}
	if got, err := resolveIn(root, "/etc/escape", true, false); err != nil || got != root+"/etc" {
		t.Errorf("/etc/escape = %s, %v", got, err)
	}
	if _, err := resolveIn(root, "/bin/loop", true, false); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("loop: %v", err)
	}
	if got, err := resolveIn(root, "/bin/dangling", true, true); !os.IsNotExist(err) || got != root+"/nowhere/x" {
		t.Errorf("dangling: %s, %v", got, err)
	}
	if fi, err := os.Stat(root + "/nowhere"); err != nil || !fi.IsDir() {
		t.Errorf("mkdirs did not make /nowhere: %v", err)
	}
	if got, err := resolveIn(root, "/bin/sh", false, false); err != nil || got != root+"/bin/sh" {
		t.Errorf("no-follow: %s, %v", got, err)
	}
}

func TestLookPath(t *testing.T) {
	root := rootfs(t)
	if p, err := lookPath(root, "sh", nil, "/"); err != nil || p != "/bin/sh" {
		t.Errorf("sh: %s, %v", p, err)
	}
	if p, err := lookPath(root, "env", []string{"PATH=/usr/bin"}, "/"); err != nil || p != "/usr/bin/env" {
		t.Errorf("env: %s, %v", p, err)
	}
	if _, err := lookPath(root, "sh", []string{"PATH=/usr/bin"}, "/"); err == nil || err.Error() != `exec: "sh": executable file not found in $PATH` {
		t.Errorf("sh off PATH: %v", err)
	}
	if _, err := lookPath(root, "/bin/nope", nil, "/"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("/bin/nope: %v", err)
	}
	if _, err := lookPath(root, "etc", []string{"PATH=/"}, "/"); err == nil {
		t.Errorf("a directory is not executable")
	}
}

func TestMergeEnvAndSysctls(t *testing.T) {
	got := strings.Join(mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=4"}), " ")
	if got != "A=1 B=3 C=4" {
		t.Errorf("mergeEnv: %s", got)
	}
	for name, ok := range map[string]bool{"net.ipv4.ip_forward": true, "kernel.shmmax": true, "kernel.sem": true, "fs.mqueue.msg_max": true, "kernel.panic": false, "vm.swappiness": false} {
		if namespacedSysctl(name) != ok {
			t.Errorf("namespacedSysctl(%s) != %v", name, ok)
		}
	}
}

func TestMountinfoUnescape(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b`); got != "/tmp/a b" {
		t.Errorf("got %q", got)
	}
}
