package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"unsafe"
)

// Seccomp: OCI/Docker seccomp profiles (linux.seccomp of the OCI spec, or a Docker-format file
// such as moby's profiles/seccomp/default.json that a kubelet `localhost/` profile names)
// compiled, without libseccomp, into a classic BPF program for x86_64 only:
//
//	ld arch; jne AUDIT_ARCH_X86_64 -> bad arch action
//	ld nr;   jge 0x40000000 (x32) -> bad arch action
//	per syscall (in profile order of first appearance): jeq nr -> its block
//	    (unconditional: ret action; with args: each rule's conditions, ret its action, then
//	    the syscall's unconditional action or the default)
//	jgt <highest syscall the profile names> -> ret ERRNO(ENOSYS)   (as runc's patchbpf)
//	ret default action
//
// The bad arch action is the default action, except that an allow (or log) default would let
// an i386 (int 0x80) or x32 caller around the profile's denials: then it kills the process
// (libseccomp's bad-arch default is a kill too). 32-bit and x32 programs are not supported.
//
// Arguments are supported as libseccomp does: each 64-bit seccomp_data.args[i] is compared as
// two 32-bit halves (unsigned), ops EQ, NE, LT, LE, GT, GE, MASKED_EQ (value is the mask,
// valueTwo the datum). The conditions of one rule must all hold (AND); a rule naming the same
// argument index twice is split into one rule per condition (OR), as runc does, since
// libseccomp cannot AND them. A syscall whose rules with args all fail gets the action of its
// rule without args, if any, else the default action.
//
// As libseccomp, syscall names the table does not know (other architectures' names such as
// chown32, or newer than the table) are skipped. `architectures`/`archMap` are accepted and
// ignored (only x86_64 is filtered), and so are `flags` (the filter is installed without any).
// SCMP_ACT_NOTIFY (needs a listener) is an error. Docker's `includes`/`excludes` (caps, arches,
// minKernel) are resolved by resolveSeccompProfile with the container's capabilities;
// compileSeccomp resolves any left with none.

type seccompProfile struct {
	DefaultAction   string            `json:"defaultAction"`
	DefaultErrnoRet *uint             `json:"defaultErrnoRet,omitempty"`
	Architectures   []string          `json:"architectures,omitempty"`
	ArchMap         []seccompArchMap  `json:"archMap,omitempty"` // Docker's format
	Flags           []string          `json:"flags,omitempty"`
	ListenerPath    string            `json:"listenerPath,omitempty"`
	Syscalls        []seccompSyscalls `json:"syscalls,omitempty"`
}

type seccompArchMap struct {
	Arch      string   `json:"architecture"`
	SubArches []string `json:"subArchitectures"`
}

type seccompSyscalls struct {
	Name     string          `json:"name,omitempty"` // Docker's older format: one name
	Names    []string        `json:"names,omitempty"`
	Action   string          `json:"action"`
	ErrnoRet *uint           `json:"errnoRet,omitempty"`
	Args     []seccompArg    `json:"args,omitempty"`
	Comment  string          `json:"comment,omitempty"`
	Includes *seccompFilters `json:"includes,omitempty"` // Docker's format
	Excludes *seccompFilters `json:"excludes,omitempty"`
}

type seccompArg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

type seccompFilters struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// Return values (linux/seccomp.h) and the rest of the ABI.
const (
	seccompRetKillProcess = 0x80000000
	seccompRetKillThread  = 0x00000000
	seccompRetTrap        = 0x00030000
	seccompRetErrno       = 0x00050000
	seccompRetTrace       = 0x7ff00000
	seccompRetLog         = 0x7ffc0000
	seccompRetAllow       = 0x7fff0000
	seccompRetDataMask    = 0x0000ffff

	auditArchX8664   = 0xc000003e // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
	x32SyscallBit    = 0x40000000
	seccompDataNr    = 0  // struct seccomp_data: int nr;
	seccompDataArch  = 4  // __u32 arch;
	seccompDataArgs  = 16 // __u64 args[6]; (after __u64 instruction_pointer)
	seccompMaxArgs   = 6
	bpfMaxInsns      = 4096 // BPF_MAXINSNS
	seccompNativeGo  = "amd64"
	sysSeccomp       = 317 // x86_64
	seccompSetFilter = 1   // SECCOMP_SET_MODE_FILTER
	prSetSeccomp     = 22  // PR_SET_SECCOMP
	seccompModeFilt  = 2   // SECCOMP_MODE_FILTER
)

// seccompAction returns the filter return value of an action; errnoRet is used by ERRNO
// (default EPERM) and TRACE (default 0), as runc.
func seccompAction(action string, errnoRet *uint) (uint32, error) {
	data := func(def uint) uint32 {
		if errnoRet != nil {
			def = *errnoRet
		}
		return uint32(def) & seccompRetDataMask
	}
	switch action {
	case "SCMP_ACT_ALLOW":
		return seccompRetAllow, nil
	case "SCMP_ACT_ERRNO":
		return seccompRetErrno | data(uint(syscall.EPERM)), nil
	case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD":
		return seccompRetKillThread, nil
	case "SCMP_ACT_KILL_PROCESS":
		return seccompRetKillProcess, nil
	case "SCMP_ACT_TRAP":
		return seccompRetTrap, nil
	case "SCMP_ACT_LOG":
		return seccompRetLog, nil
	case "SCMP_ACT_TRACE":
		return seccompRetTrace | data(0), nil
	case "SCMP_ACT_NOTIFY":
		return 0, fmt.Errorf("seccomp action %s is not supported (no listener)", action)
	case "":
		return 0, fmt.Errorf("seccomp: no action")
	}
	return 0, fmt.Errorf("unknown seccomp action %q", action)
}

// seccompNormCap is CAP_X for "cap_x", "X", ...
func seccompNormCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// resolveSeccompProfile returns p with Docker's includes/excludes evaluated for a container
// with capabilities caps (names as CAP_X or X, any case) on amd64, rules that do not apply
// dropped (as moby's and containerd's loaders do). minKernel is taken as met (the guest
// kernel is recent). p is not modified.
func resolveSeccompProfile(p *seccompProfile, caps []string) *seccompProfile {
	have := map[string]bool{}
	for _, c := range caps {
		have[seccompNormCap(c)] = true
	}
	anyCap := func(list []string) bool {
		for _, c := range list {
			if have[seccompNormCap(c)] {
				return true
			}
		}
		return false
	}
	allCaps := func(list []string) bool {
		for _, c := range list {
			if !have[seccompNormCap(c)] {
				return false
			}
		}
		return true
	}
	native := func(arches []string) bool {
		for _, a := range arches {
			switch strings.ToLower(a) {
			case seccompNativeGo, "x86_64", "scmp_arch_x86_64":
				return true
			}
		}
		return false
	}
	out := *p
	out.Syscalls = nil
	for _, s := range p.Syscalls {
		if in := s.Includes; in != nil {
			if len(in.Arches) > 0 && !native(in.Arches) || len(in.Caps) > 0 && !allCaps(in.Caps) {
				continue
			}
		}
		if ex := s.Excludes; ex != nil {
			if len(ex.Arches) > 0 && native(ex.Arches) || len(ex.Caps) > 0 && anyCap(ex.Caps) {
				continue
			}
		}
		s.Includes, s.Excludes = nil, nil
		out.Syscalls = append(out.Syscalls, s)
	}
	return &out
}

// seccompRule is one rule of one syscall after splitting.
type seccompRule struct {
	ret   uint32
	conds []seccompArg
}

type seccompCall struct {
	nr     int
	name   string
	uncond *uint32 // the action of a rule without args
	rules  []seccompRule
}

// bpfInsn is an instruction under construction: jt/jf may be bpfFail, resolved per rule.
type bpfInsn struct {
	code   uint16
	jt, jf int
	k      uint32
}

const bpfFail = -1

func bpfI(code uint16, k uint32) bpfInsn { return bpfInsn{code: code, k: k} }
func bpfJ(code uint16, k uint32, jt, jf int) bpfInsn {
	return bpfInsn{code: code, jt: jt, jf: jf, k: k}
}

const (
	bpfLdAbs = syscall.BPF_LD | syscall.BPF_W | syscall.BPF_ABS
	bpfRetK  = syscall.BPF_RET | syscall.BPF_K
	bpfJeqK  = syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K
	bpfJgtK  = syscall.BPF_JMP | syscall.BPF_JGT | syscall.BPF_K
	bpfJgeK  = syscall.BPF_JMP | syscall.BPF_JGE | syscall.BPF_K
	bpfJa    = syscall.BPF_JMP | syscall.BPF_JA
	bpfAndK  = syscall.BPF_ALU | syscall.BPF_AND | syscall.BPF_K
)

// seccompCondInsns compiles one condition; a failed condition jumps to bpfFail, a met one
// falls through. x86_64 is little-endian: the low half of args[i] is at the lower offset.
func seccompCondInsns(c seccompArg) ([]bpfInsn, error) {
	if c.Index >= seccompMaxArgs {
		return nil, fmt.Errorf("seccomp: argument index %d out of range", c.Index)
	}
	lo := uint32(seccompDataArgs + 8*c.Index)
	hi := lo + 4
	vlo, vhi := uint32(c.Value), uint32(c.Value>>32)
	ldHi, ldLo := bpfI(bpfLdAbs, hi), bpfI(bpfLdAbs, lo)
	switch c.Op {
	case "SCMP_CMP_EQ":
		return []bpfInsn{ldHi, bpfJ(bpfJeqK, vhi, 0, bpfFail), ldLo, bpfJ(bpfJeqK, vlo, 0, bpfFail)}, nil
	case "SCMP_CMP_NE": // hi differs: met (skip the low half)
		return []bpfInsn{ldHi, bpfJ(bpfJeqK, vhi, 0, 2), ldLo, bpfJ(bpfJeqK, vlo, bpfFail, 0)}, nil
	case "SCMP_CMP_MASKED_EQ":
		dlo, dhi := uint32(c.ValueTwo), uint32(c.ValueTwo>>32)
		return []bpfInsn{
			ldHi, bpfI(bpfAndK, vhi), bpfJ(bpfJeqK, dhi, 0, bpfFail),
			ldLo, bpfI(bpfAndK, vlo), bpfJ(bpfJeqK, dlo, 0, bpfFail),
		}, nil
	case "SCMP_CMP_GT", "SCMP_CMP_GE": // hi > v: met; hi < v: failed; equal: compare lo
		op := uint16(bpfJgtK)
		if c.Op == "SCMP_CMP_GE" {
			op = bpfJgeK
		}
		return []bpfInsn{ldHi, bpfJ(bpfJgtK, vhi, 3, 0), bpfJ(bpfJeqK, vhi, 0, bpfFail), ldLo, bpfJ(op, vlo, 0, bpfFail)}, nil
	case "SCMP_CMP_LT", "SCMP_CMP_LE": // not GE, not GT
		op := uint16(bpfJgeK)
		if c.Op == "SCMP_CMP_LE" {
			op = bpfJgtK
		}
		return []bpfInsn{ldHi, bpfJ(bpfJgtK, vhi, bpfFail, 0), bpfJ(bpfJeqK, vhi, 0, 2), ldLo, bpfJ(op, vlo, bpfFail, 0)}, nil
	}
	return nil, fmt.Errorf("seccomp: unsupported argument op %q", c.Op)
}

// compileSeccomp compiles p (see the comment at the top of this file) into a filter for
// installSeccomp. Profiles still carrying includes/excludes are resolved as for a container
// without capabilities (call resolveSeccompProfile first to give it its capabilities).
func compileSeccomp(p *seccompProfile) ([]syscall.SockFilter, error) {
	if p == nil {
		return nil, fmt.Errorf("seccomp: no profile")
	}
	p = resolveSeccompProfile(p, nil)
	def, err := seccompAction(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	permissive := def == seccompRetAllow || def == seccompRetLog
	badArch := def
	if permissive {
		badArch = seccompRetKillProcess
	}

	calls := map[string]*seccompCall{}
	var order []*seccompCall
	maxNr := -1
	for i, s := range p.Syscalls {
		act, err := seccompAction(s.Action, s.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		names := s.Names
		if s.Name != "" {
			names = append([]string{s.Name}, names...)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("syscalls[%d]: no names", i)
		}
		var rules []seccompRule
		if len(s.Args) > 0 {
			for _, a := range s.Args {
				if _, err := seccompCondInsns(a); err != nil {
					return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
				}
			}
			if seccompRepeatedIndex(s.Args) {
				for _, a := range s.Args {
					rules = append(rules, seccompRule{act, []seccompArg{a}})
				}
			} else {
				rules = []seccompRule{{act, s.Args}}
			}
		}
		for _, name := range names {
			nr, ok := syscallNumbers[name]
			if !ok {
				continue
			}
			if nr > maxNr {
				maxNr = nr
			}
			if act == def {
				continue // as the default: nothing to add (libseccomp refuses such rules)
			}
			c := calls[name]
			if c == nil {
				c = &seccompCall{nr: nr, name: name}
				calls[name] = c
				order = append(order, c)
			}
			if rules == nil {
				if c.uncond != nil && *c.uncond != act {
					return nil, fmt.Errorf("seccomp: conflicting actions for %s", name)
				}
				a := act
				c.uncond = &a
			} else {
				c.rules = append(c.rules, rules...)
			}
		}
	}

	prog := []syscall.SockFilter{
		bpfStmt(bpfLdAbs, seccompDataArch),
		bpfJump(bpfJeqK, auditArchX8664, 1, 0),
		bpfStmt(bpfRetK, badArch),
		bpfStmt(bpfLdAbs, seccompDataNr),
		bpfJump(bpfJgeK, x32SyscallBit, 0, 1),
		bpfStmt(bpfRetK, badArch),
	}
	for _, c := range order {
		if len(c.rules) == 0 {
			prog = append(prog, bpfJump(bpfJeqK, uint32(c.nr), 0, 1), bpfStmt(bpfRetK, *c.uncond))
			continue
		}
		var block []syscall.SockFilter
		for _, r := range c.rules {
			code, err := seccompRuleInsns(r)
			if err != nil {
				return nil, fmt.Errorf("seccomp: %s: %w", c.name, err)
			}
			block = append(block, code...)
		}
		last := def
		if c.uncond != nil {
			last = *c.uncond
		}
		block = append(block, bpfStmt(bpfRetK, last))
		// jeq nr: skip the ja into the block; else jump over it (a block may be > 255 long).
		prog = append(prog, bpfJump(bpfJeqK, uint32(c.nr), 1, 0), bpfStmt(bpfJa, uint32(len(block))))
		prog = append(prog, block...)
	}
	if !permissive && maxNr >= 0 {
		// Syscalls newer than any the profile names get ENOSYS, not the default action, so
		// that programs fall back to older ones (runc does the same for the same reason).
		prog = append(prog, bpfJump(bpfJgtK, uint32(maxNr), 0, 1), bpfStmt(bpfRetK, seccompRetErrno|uint32(syscall.ENOSYS)))
	}
	prog = append(prog, bpfStmt(bpfRetK, def))
	if len(prog) > bpfMaxInsns {
		return nil, fmt.Errorf("seccomp: filter of %d instructions is over the kernel's limit of %d", len(prog), bpfMaxInsns)
	}
	return prog, nil
}

// seccompRuleInsns compiles a rule: its conditions (AND), then ret its action; a failed
// condition jumps past the ret, to the next rule. Nothing after a rule needs nr in A again:
// each syscall's block ends with a ret.
func seccompRuleInsns(r seccompRule) ([]syscall.SockFilter, error) {
	var code []bpfInsn
	for _, c := range r.conds {
		ci, err := seccompCondInsns(c)
		if err != nil {
			return nil, err
		}
		code = append(code, ci...)
	}
	code = append(code, bpfI(bpfRetK, r.ret))
	end := len(code) // the first instruction after the rule
	out := make([]syscall.SockFilter, len(code))
	for i, in := range code {
		rel := func(j int) (uint8, error) {
			if j == bpfFail {
				j = end - i - 1
			}
			if j < 0 || j > 255 {
				return 0, fmt.Errorf("rule too long (%d conditions)", len(r.conds))
			}
			return uint8(j), nil
		}
		jt, err := rel(in.jt)
		if err != nil {
			return nil, err
		}
		jf, err := rel(in.jf)
		if err != nil {
			return nil, err
		}
		out[i] = syscall.SockFilter{Code: in.code, Jt: jt, Jf: jf, K: in.k}
	}
	return out, nil
}

func seccompRepeatedIndex(args []seccompArg) bool {
	seen := map[uint]bool{}
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

func bpfStmt(code uint16, k uint32) syscall.SockFilter {
	return syscall.SockFilter{Code: code, K: k}
}

func bpfJump(code uint16, k uint32, jt, jf uint8) syscall.SockFilter {
	return syscall.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// installSeccomp installs prog as a seccomp filter on the calling thread only (no TSYNC):
// call it on the thread that then execs (the launcher is locked to its OS thread), right
// before execve; the filter is inherited by the exec'd program and its children, and stacks
// on any filter already there. The kernel requires no_new_privs (prctl PR_SET_NO_NEW_PRIVS,
// 1) to be set first, unless the thread has CAP_SYS_ADMIN in its effective set (then
// EACCES is not returned); the caller sets it. After this, only what prog allows works: with
// a profile that denies execve, not even the exec.
func installSeccomp(prog []syscall.SockFilter) error {
	if len(prog) == 0 || len(prog) > bpfMaxInsns {
		return fmt.Errorf("seccomp: filter of %d instructions", len(prog))
	}
	fprog := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := syscall.RawSyscall(sysSeccomp, seccompSetFilter, 0, uintptr(unsafe.Pointer(&fprog)))
	if e == syscall.ENOSYS {
		_, _, e = syscall.RawSyscall(syscall.SYS_PRCTL, prSetSeccomp, seccompModeFilt, uintptr(unsafe.Pointer(&fprog)))
	}
	runtime.KeepAlive(prog)
	if e != 0 {
		return e
	}
	return nil
}

// defaultSeccompProfile is the CRI's `runtime/default` (what containerd and Docker run):
// moby's profiles/seccomp/default.json (as of moby 24/25) for a container with capabilities
// caps, its includes/excludes resolved (CAP_SYS_ADMIN: mount, unshare, setns, clone with
// namespace flags...; without it clone3 is ENOSYS so that glibc falls back to clone, which is
// then allowed only without namespace flags). Differences: x86_64 only (Docker's also allows
// i386 and x32 programs); other architectures' names are listed but skipped.
func defaultSeccompProfile(caps []string) *seccompProfile {
	eperm := uint(syscall.EPERM)
	enosys := uint(syscall.ENOSYS)
	p := &seccompProfile{
		DefaultAction:   "SCMP_ACT_ERRNO",
		DefaultErrnoRet: &eperm,
		Architectures:   []string{"SCMP_ARCH_X86_64"},
		Syscalls: []seccompSyscalls{
			{Names: dockerDefaultAllowed, Action: "SCMP_ACT_ALLOW"},
			{Names: []string{"process_vm_readv", "process_vm_writev", "ptrace"}, Action: "SCMP_ACT_ALLOW",
				Includes: &seccompFilters{MinKernel: "4.8"}},
			{Names: []string{"socket"}, Action: "SCMP_ACT_ALLOW",
				Args: []seccompArg{{Index: 0, Value: 40, Op: "SCMP_CMP_NE"}}}, // not AF_VSOCK
		},
	}
	for _, persona := range []uint64{0, 8, 131072, 131080, 4294967295} {
		p.Syscalls = append(p.Syscalls, seccompSyscalls{Names: []string{"personality"}, Action: "SCMP_ACT_ALLOW",
			Args: []seccompArg{{Index: 0, Value: persona, Op: "SCMP_CMP_EQ"}}})
	}
	cond := func(action string, names []string, in, ex *seccompFilters) seccompSyscalls {
		return seccompSyscalls{Names: names, Action: action, Includes: in, Excludes: ex}
	}
	arches := func(a ...string) *seccompFilters { return &seccompFilters{Arches: a} }
	capsF := func(c ...string) *seccompFilters { return &seccompFilters{Caps: c} }
	allow := "SCMP_ACT_ALLOW"
	p.Syscalls = append(p.Syscalls,
		cond(allow, []string{"sync_file_range2", "swapcontext"}, arches("ppc64le"), nil),
		cond(allow, []string{"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"}, arches("arm", "arm64"), nil),
		cond(allow, []string{"arch_prctl"}, arches("amd64", "x32"), nil),
		cond(allow, []string{"modify_ldt"}, arches("amd64", "x32", "x86"), nil),
		cond(allow, []string{"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"}, arches("s390", "s390x"), nil),
		cond(allow, []string{"riscv_flush_icache"}, arches("riscv64"), nil),
		cond(allow, []string{"open_by_handle_at"}, capsF("CAP_DAC_READ_SEARCH"), nil),
		cond(allow, []string{"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
			"lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
			"quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare"},
			capsF("CAP_SYS_ADMIN"), nil),
		seccompSyscalls{Names: []string{"clone"}, Action: allow,
			// CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET all clear
			Args:     []seccompArg{{Index: 0, Value: 2114060288, Op: "SCMP_CMP_MASKED_EQ"}},
			Excludes: &seccompFilters{Caps: []string{"CAP_SYS_ADMIN"}, Arches: []string{"s390", "s390x"}}},
		seccompSyscalls{Names: []string{"clone"}, Action: allow, Comment: "s390 parameter ordering for clone is different",
			Args:     []seccompArg{{Index: 1, Value: 2114060288, Op: "SCMP_CMP_MASKED_EQ"}},
			Includes: arches("s390", "s390x"), Excludes: capsF("CAP_SYS_ADMIN")},
		seccompSyscalls{Names: []string{"clone3"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &enosys, Excludes: capsF("CAP_SYS_ADMIN")},
		cond(allow, []string{"reboot"}, capsF("CAP_SYS_BOOT"), nil),
		cond(allow, []string{"chroot"}, capsF("CAP_SYS_CHROOT"), nil),
		cond(allow, []string{"delete_module", "init_module", "finit_module"}, capsF("CAP_SYS_MODULE"), nil),
		cond(allow, []string{"acct"}, capsF("CAP_SYS_PACCT"), nil),
		cond(allow, []string{"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"}, capsF("CAP_SYS_PTRACE"), nil),
		cond(allow, []string{"iopl", "ioperm"}, capsF("CAP_SYS_RAWIO"), nil),
		cond(allow, []string{"settimeofday", "stime", "clock_settime", "clock_settime64"}, capsF("CAP_SYS_TIME"), nil),
		cond(allow, []string{"vhangup"}, capsF("CAP_SYS_TTY_CONFIG"), nil),
		cond(allow, []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}, capsF("CAP_SYS_NICE"), nil),
		cond(allow, []string{"syslog"}, capsF("CAP_SYSLOG"), nil),
		cond(allow, []string{"bpf"}, capsF("CAP_BPF"), nil),
		cond(allow, []string{"perf_event_open"}, capsF("CAP_PERFMON"), nil),
	)
	return resolveSeccompProfile(p, caps)
}

// seccompAllowed lists the x86_64 syscalls p allows unconditionally (for reports and tests).
func seccompAllowed(p *seccompProfile) []string {
	set := map[string]bool{}
	for _, s := range resolveSeccompProfile(p, nil).Syscalls {
		if s.Action != "SCMP_ACT_ALLOW" || len(s.Args) > 0 {
			continue
		}
		for _, n := range append(append([]string{}, s.Names...), s.Name) {
			if _, ok := syscallNumbers[n]; ok {
				set[n] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dockerDefaultAllowed is the unconditional allow-list of moby's default.json.
var dockerDefaultAllowed = []string{
	"accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir",
	"chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
	"clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
	"clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
	"dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
	"epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
	"exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
	"fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
	"fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
	"fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
	"futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents",
	"getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
	"getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
	"getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
	"get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
	"gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init",
	"inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
	"io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
	"io_uring_enter", "io_uring_register", "io_uring_setup", "ipc", "kill", "landlock_add_rule",
	"landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
	"linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
	"lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
	"mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
	"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
	"mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
	"msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
	"newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
	"pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
	"ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
	"process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
	"readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
	"recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
	"renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
	"rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
	"rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
	"sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
	"sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
	"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget",
	"semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
	"sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
	"setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
	"setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
	"set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
	"setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
	"signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
	"stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
	"sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
	"timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
	"timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
	"timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
	"unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice",
	"wait4", "waitid", "waitpid", "write", "writev",
}
