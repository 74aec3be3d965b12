package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const cpuSys = "/sys/devices/system/cpu"

// onlineCPUs brings hot-added vCPUs online (Linux leaves a hot-added CPU offline unless udev
// says otherwise, and this guest has no udev). QEMU's ACPI notice can reach the guest a little
// after libvirt answers, so it waits up to 5 s for `want` CPUs to be present. Returns how many
// are online.
func onlineCPUs(want int) (int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, dir := range cpuDirs() {
			f := filepath.Join(dir, "online")
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "0" {
				if err := os.WriteFile(f, []byte("1"), 0); err != nil {
					logf("online_cpus: %s: %v", f, err)
				}
			}
		}
		n := countCPUs(filepath.Join(cpuSys, "online"))
		if n >= want || time.Now().After(deadline) {
			if n < want {
				return n, errf("unavailable", "online_cpus: %d of %d vCPUs online after 5 s (present: %d)", n, want, countCPUs(filepath.Join(cpuSys, "present")))
			}
			return n, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cpuDirs() []string {
	m, _ := filepath.Glob(filepath.Join(cpuSys, "cpu[0-9]*"))
	sort.Strings(m)
	return m
}

// countCPUs counts a CPU list file ("0-3,5").
func countCPUs(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return countCPUList(strings.TrimSpace(string(b)))
}

func countCPUList(s string) int {
	n := 0
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if found {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 == nil && err2 == nil && b >= a {
			n += b - a + 1
		}
	}
	return n
}
