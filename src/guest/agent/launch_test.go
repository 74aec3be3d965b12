package main

import "testing"

func TestCapMask(t *testing.T) {
	def := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	if m, unknown := capMask(def); m != 0xa80425fb || unknown != nil {
		t.Fatalf("default set: %#x %v", m, unknown)
	}
	if m, unknown := capMask([]string{"sys_admin", "CAP_CHECKPOINT_RESTORE", "CAP_NOPE"}); m != 1<<21|1<<40 || len(unknown) != 1 || unknown[0] != "CAP_NOPE" {
		t.Fatalf("got %#x %v", m, unknown)
	}
	if m, _ := capMask([]string{}); m != 0 {
		t.Fatalf("empty: %#x", m)
	}
}
