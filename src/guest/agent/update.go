package main

// updateParams: a container's new limits (UpdateContainerResources). Zero memory or quota means
// no limit, as in the CRI; cpuShares are the CRI's (cgroup v1) shares, turned into cpu.weight.
type updateParams struct {
	ID               string `json:"id"`
	MemoryLimitBytes int64  `json:"memoryLimitBytes"`
	CPUQuotaUs       int64  `json:"cpuQuotaUs"`
	CPUPeriodUs      int64  `json:"cpuPeriodUs"`
	CPUShares        uint64 `json:"cpuShares"`
}

func (a *agent) updateContainer(p updateParams) error {
	if p.MemoryLimitBytes < 0 || p.CPUQuotaUs < 0 || p.CPUPeriodUs < 0 {
		return errf("invalid-argument", "update_container %s: limits must not be negative", p.ID)
	}
	defer a.lockID(p.ID)()
	c := a.lookup(p.ID)
	if c == nil {
		return errf("not-found", "container %s does not exist", p.ID)
	}
	if c.cgroup == "" {
		return errf("failed-precondition", "container %s has no cgroup (the guest has no cgroup2): its limits cannot be changed", p.ID)
	}
	if err := a.cg.limit(c.cgroup, p.MemoryLimitBytes, p.CPUQuotaUs, p.CPUPeriodUs, sharesToWeight(p.CPUShares)); err != nil {
		return errf("internal", "update_container %s: %v", p.ID, err)
	}
	logf("updated %s: memory %d, cpu quota %d/%d, shares %d", p.ID, p.MemoryLimitBytes, p.CPUQuotaUs, p.CPUPeriodUs, p.CPUShares)
	return nil
}

// sharesToWeight maps cgroup v1 shares [2, 262144] onto v2's weight [1, 10000], as runc and
// crun do; 0 (unset) stays 0.
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}
