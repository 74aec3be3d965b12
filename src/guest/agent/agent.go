package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const (
	protocolVersion = 1
	agentVersion    = "vmlet-agent 1.0.0"
)

type config struct {
	runDir, images, scratch, cgroupRoot, sysctlDir string
	guest                                          bool
}

type agent struct {
	cfg    config
	port   *port
	reaper *reaper
	cg     *cgroups
	images imageMounts

	idMu    sync.Mutex
	idLocks map[string]*sync.Mutex

	mu         sync.Mutex
	containers map[string]*container
	streams    map[uint32]*stream
	podShm     bool
}

// rpcError is an error RESPONSE: code is one of the doc's error codes.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...interface{}) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// nsTime is ns since the epoch, sent as a JSON string: it exceeds 2^53, what a JSON number
// carries exactly in JavaScript. A number is accepted on input too.
type nsTime int64

func (t nsTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(t), 10) + `"`), nil
}

func (t *nsTime) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a ns timestamp: %s", b)
	}
	*t = nsTime(n)
	return nil
}

func now() nsTime { return nsTime(time.Now().UnixNano()) }

func (a *agent) lockID(id string) func() {
	a.idMu.Lock()
	m := a.idLocks[id]
	if m == nil {
		m = &sync.Mutex{}
		a.idLocks[id] = m
	}
	a.idMu.Unlock()
	m.Lock()
	return m.Unlock
}

func (a *agent) stream(id uint32) *stream {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.streams[id]
}

// handle is called by the port's reader for every frame, in order.
func (a *agent) handle(f frame) {
	switch f.typ {
	case tRequest:
		var req struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(f.payload, &req); err != nil {
			a.respond(f.stream, nil, errf("invalid-argument", "request is not JSON: %v", err))
			return
		}
		if req.Method == "hello" {
			// In line, so that the windows restart before the next frame from this host.
			res, err := a.call(req.Method, req.Params)
			a.respond(f.stream, res, err)
			return
		}
		go func() {
			res, err := a.call(req.Method, req.Params)
			a.respond(f.stream, res, err)
		}()
	case tStdin, tCloseStdin:
		if st := a.stream(f.stream); st != nil {
			st.stdin(stdinMsg{data: f.payload, close: f.typ == tCloseStdin})
		}
	case tAck:
		if st := a.stream(f.stream); st != nil {
			st.ack(binary.BigEndian.Uint32(f.payload))
		}
	}
}

func (a *agent) respond(id uint32, result interface{}, err error) {
	var body interface{}
	if err != nil {
		re, ok := err.(*rpcError)
		if !ok {
			re = errf("internal", "%v", err)
		}
		body = map[string]interface{}{"error": re}
	} else {
		if result == nil {
			result = struct{}{}
		}
		body = map[string]interface{}{"result": result}
	}
	b, _ := json.Marshal(body)
	a.port.send(tResponse, id, b)
}

func (a *agent) event(ev interface{}) {
	b, err := json.Marshal(ev)
	if err != nil {
		logf("event: %v", err)
		return
	}
	a.port.send(tEvent, 0, b)
}

func decode(params json.RawMessage, v interface{}) error {
	if len(params) == 0 || string(params) == "null" {
		params = []byte("{}")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return errf("invalid-argument", "params: %v", err)
	}
	return nil
}

// call runs one method. A panic becomes an internal error: as PID 1 the agent must not die.
func (a *agent) call(method string, params json.RawMessage) (res interface{}, err error) {
	defer func() {
		if r := recover(); r != nil {
			logf("%s: panic: %v\n%s", method, r, debug.Stack())
			res, err = nil, errf("internal", "%s: agent bug: %v", method, r)
		}
	}()
	switch method {
	case "hello":
		return a.hello(), nil
	case "setup_pod":
		var p setupPodParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.setupPod(p)
	case "create_container":
		var p createParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.createContainer(p)
	case "start_container":
		var p struct {
			ID     string `json:"id"`
			Stream uint32 `json:"stream"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return a.startContainer(p.ID, p.Stream)
	case "signal":
		var p struct {
			ID     string `json:"id"`
			Signal int    `json:"signal"`
			Stream uint32 `json:"stream"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.signal(p.ID, p.Signal, p.Stream)
	case "exec":
		var p execParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return a.exec(p)
	case "resize":
		var p struct {
			Stream uint32 `json:"stream"`
			Cols   uint16 `json:"cols"`
			Rows   uint16 `json:"rows"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.resize(p.Stream, p.Cols, p.Rows)
	case "remove_container":
		var p struct {
			ID string `json:"id"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.removeContainer(p.ID)
	case "update_container":
		var p updateParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return nil, a.updateContainer(p)
	case "online_cpus":
		var p struct {
			Count int `json:"count"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		n, err := onlineCPUs(p.Count)
		if err != nil {
			return nil, err
		}
		return map[string]int{"online": n}, nil
	case "stats":
		return a.stats(), nil
	}
	return nil, errf("invalid-argument", "method %q is not one of hello, setup_pod, create_container, start_container, signal, exec, resize, update_container, online_cpus, remove_container, stats", method)
}

type containerState struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Pid        int    `json:"pid"`
	ExitCode   int    `json:"exitCode"`
	Signal     int    `json:"signal"`
	StartedAt  nsTime `json:"startedAt"`
	FinishedAt nsTime `json:"finishedAt"`
	Stream     uint32 `json:"stream"`
}

func (a *agent) hello() interface{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range a.streams {
		st.resetWindow()
	}
	list := make([]containerState, 0, len(a.containers))
	for _, c := range a.containers {
		list = append(list, containerState{ID: c.spec.ID, State: c.state, Pid: c.pid, ExitCode: c.exitCode, Signal: c.signal, StartedAt: c.startedAt, FinishedAt: c.finishedAt, Stream: c.stream})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return map[string]interface{}{"version": protocolVersion, "agent": agentVersion, "bootNs": bootNs(), "containers": list}
}

// bootNs is when the machine booted on the current clock: now minus CLOCK_BOOTTIME.
func bootNs() nsTime {
	var ts syscall.Timespec
	const clockBoottime = 7
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return now() - nsTime(ts.Nano())
}

func (a *agent) resize(id uint32, cols, rows uint16) error {
	st := a.stream(id)
	if st == nil {
		return errf("not-found", "stream %d: no such process stream", id)
	}
	if st.master == nil {
		return errf("failed-precondition", "stream %d has no TTY", id)
	}
	if err := resizePty(st.master, cols, rows); err != nil {
		return errf("internal", "stream %d: resize: %v", id, err)
	}
	return nil
}
