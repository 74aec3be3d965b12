package main

import "testing"

func TestSharesToWeight(t *testing.T) {
	for _, c := range []struct{ shares, weight uint64 }{{0, 0}, {1, 1}, {2, 1}, {1024, 39}, {262144, 10000}, {1 << 30, 10000}} {
		if got := sharesToWeight(c.shares); got != c.weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", c.shares, got, c.weight)
		}
	}
}

func TestCountCPUList(t *testing.T) {
	for s, want := range map[string]int{"": 0, "0": 1, "0-3": 4, "0-1,3,5-6": 5, "x": 0} {
		if got := countCPUList(s); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", s, got, want)
		}
	}
}
