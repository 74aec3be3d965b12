package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroup2Magic = 0x63677270

// cgroups manages one cgroup v2 per container under root. Without cgroup2 at root (a test
// host) it is off: containers run without limits, stats read zeros.
type cgroups struct {
	root string
	ok   bool
}

func setupCgroups(root string) *cgroups {
	c := &cgroups{root: root}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(root), &st); err != nil || st.Type != cgroup2Magic {
		logf("cgroups: %s is not on cgroup2: running containers without cgroups", filepath.Dir(root))
		return c
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		logf("cgroups: %v: running containers without cgroups", err)
		return c
	}
	// Delegate the controllers the limits and stats need; a controller the kernel lacks is logged.
	for _, dir := range []string{filepath.Dir(root), root} {
		var missing []string
		for _, ctl := range []string{"cpu", "memory", "pids"} {
			if os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+ctl), 0) != nil {
				missing = append(missing, ctl)
			}
		}
		if len(missing) > 0 {
			logf("cgroups: controllers %v not available in %s: no limits or stats from them", missing, dir)
		}
	}
	c.ok = true
	return c
}

func (c *cgroups) create(id string, memBytes, quotaUs, periodUs int64) (string, error) {
	if !c.ok {
		return "", nil
	}
	dir := filepath.Join(c.root, id)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return "", err
	}
	if memBytes > 0 || quotaUs > 0 {
		return dir, c.limit(dir, memBytes, quotaUs, periodUs, 0)
	}
	return dir, nil
}

// limit writes a container's limits: memBytes and quotaUs <= 0 mean none ("max"), weight 0
// leaves cpu.weight as it is. An update that lowers memory.max below what the cgroup uses makes
// the kernel reclaim, and OOM-kill in the container if it cannot: what runc does too.
func (c *cgroups) limit(dir string, memBytes, quotaUs, periodUs int64, weight uint64) error {
	mem := "max"
	if memBytes > 0 {
		mem = strconv.FormatInt(memBytes, 10)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(mem), 0); err != nil {
		return fmt.Errorf("memory.max: %w", err)
	}
	if periodUs <= 0 {
		periodUs = 100000
	}
	quota := "max"
	if quotaUs > 0 {
		quota = strconv.FormatInt(quotaUs, 10)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%s %d", quota, periodUs)), 0); err != nil {
		return fmt.Errorf("cpu.max: %w", err)
	}
	if weight > 0 {
		if err := os.WriteFile(filepath.Join(dir, "cpu.weight"), []byte(strconv.FormatUint(weight, 10)), 0); err != nil {
			return fmt.Errorf("cpu.weight: %w", err)
		}
	}
	return nil
}

// add moves pid into the cgroup right after fork. Go 1.19 has no SysProcAttr.UseCgroupFD, so
// the process runs a few instructions outside its cgroup (and a child forked that early would
// escape it); acceptable here: the VM is the boundary and limits are per pod too.
func (c *cgroups) add(dir string, pid int) {
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		logf("cgroups: adding %d to %s: %v", pid, dir, err)
	}
}

func (c *cgroups) pids(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// kill SIGKILLs every process in the cgroup (cgroup.kill when the kernel has it).
func (c *cgroups) kill(dir string) {
	if dir == "" {
		return
	}
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	for i := 0; i < 5; i++ {
		pids := c.pids(dir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// remove deletes the cgroup, waiting up to 2 s for killed processes to be gone.
func (c *cgroups) remove(dir string) {
	if dir == "" {
		return
	}
	var err error
	for i := 0; i < 100; i++ {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return
		}
		c.kill(dir)
		time.Sleep(20 * time.Millisecond)
	}
	logf("cgroups: removing %s: %v", dir, err)
}

// keyed reads "key value" lines (memory.stat, cpu.stat, memory.events).
func keyed(file string) map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open(file)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) == 2 {
			if n, err := strconv.ParseUint(fs[1], 10, 64); err == nil {
				out[fs[0]] = n
			}
		}
	}
	return out
}

func oomKills(dir string) uint64 {
	if dir == "" {
		return 0
	}
	return keyed(filepath.Join(dir, "memory.events"))["oom_kill"]
}

func readUint(file string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}
