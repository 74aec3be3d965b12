package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

type containerStats struct {
	ID                    string `json:"id"`
	CPUUsageNs            nsTime `json:"cpuUsageNs"`
	MemoryWorkingSetBytes uint64 `json:"memoryWorkingSetBytes"`
	MemoryUsageBytes      uint64 `json:"memoryUsageBytes"`
	RssBytes              uint64 `json:"rssBytes"`
	PageFaults            uint64 `json:"pageFaults"`
	MajorPageFaults       uint64 `json:"majorPageFaults"`
	WritableLayerBytes    uint64 `json:"writableLayerBytes"`
	WritableLayerInodes   uint64 `json:"writableLayerInodes"`
}

func (a *agent) stats() interface{} {
	a.mu.Lock()
	cs := make([]*container, 0, len(a.containers))
	for _, c := range a.containers {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	mem := keyedKB("/proc/meminfo")
	out := make([]containerStats, 0, len(cs))
	for _, c := range cs {
		s := containerStats{ID: c.spec.ID}
		if c.cgroup != "" {
			s.CPUUsageNs = nsTime(keyed(filepath.Join(c.cgroup, "cpu.stat"))["usage_usec"] * 1000)
			s.MemoryUsageBytes = readUint(filepath.Join(c.cgroup, "memory.current"))
			ms := keyed(filepath.Join(c.cgroup, "memory.stat"))
			s.MemoryWorkingSetBytes = s.MemoryUsageBytes
			if inactive := ms["inactive_file"]; inactive < s.MemoryWorkingSetBytes {
				s.MemoryWorkingSetBytes -= inactive
			} else {
				s.MemoryWorkingSetBytes = 0
			}
			s.RssBytes = ms["anon"]
			s.PageFaults = ms["pgfault"]
			s.MajorPageFaults = ms["pgmajfault"]
		}
		s.WritableLayerBytes, s.WritableLayerInodes = usage(filepath.Join(c.scratch, "upper"))
		out = append(out, s)
	}
	return map[string]interface{}{
		"timeNs": now(), "memTotalBytes": mem["MemTotal"] * 1024, "memAvailableBytes": mem["MemAvailable"] * 1024,
		"containers": out,
	}
}

// usage is du's: allocated bytes and inodes of a directory tree.
func usage(dir string) (bytes, inodes uint64) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			bytes += uint64(st.Blocks) * 512
			inodes++
		}
		return nil
	})
	return bytes, inodes
}

// keyedKB reads /proc/meminfo's "Key:   123 kB" lines.
func keyedKB(file string) map[string]uint64 {
	out := map[string]uint64{}
	b, err := os.ReadFile(file)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			if n, err := strconv.ParseUint(fs[1], 10, 64); err == nil {
				out[strings.TrimSuffix(fs[0], ":")] = n
			}
		}
	}
	return out
}
