package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const portName = "vmlet.agent.0"

// port is the agent's one connection to the host: the virtio-serial port in the guest, or a
// unix socket (--connect) on a test host. One reader goroutine (run); writes from any
// goroutine, serialised by wmu so frames never interleave.
type port struct {
	connectPath string // "" = virtio port

	mu  sync.Mutex
	cur io.ReadWriteCloser // nil while (re)connecting

	wmu       sync.Mutex
	lastWrErr time.Time
}

func findVport() (string, error) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == portName {
			return "/dev/" + filepath.Base(filepath.Dir(n)), nil
		}
	}
	return "", os.ErrNotExist
}

// open blocks until the port is open, retrying with a backoff of at most 100 ms.
func (p *port) open() io.ReadWriteCloser {
	delay := 5 * time.Millisecond
	logged := false
	for {
		var rw io.ReadWriteCloser
		var err error
		if p.connectPath != "" {
			rw, err = net.Dial("unix", p.connectPath)
		} else {
			var dev string
			if dev, err = findVport(); err == nil {
				// Blocking fd, outside Go's poller: a port without a host end reads EOF at once,
				// which the reader handles by sleeping.
				var fd int
				if fd, err = syscall.Open(dev, syscall.O_RDWR|syscall.O_CLOEXEC, 0); err == nil {
					rw = os.NewFile(uintptr(fd), dev)
				}
			}
		}
		if err == nil {
			p.mu.Lock()
			p.cur = rw
			p.mu.Unlock()
			return rw
		}
		if !logged {
			logf("waiting for the host port: %v", err)
			logged = true
		}
		time.Sleep(delay)
		if delay *= 2; delay > 100*time.Millisecond {
			delay = 100 * time.Millisecond
		}
	}
}

// run reads frames forever, calling handle for each. The virtio port reads EOF while no host is
// connected: sleep and read again. A unix socket that closes is dialled again. State lives in the
// agent, not in the connection, so it survives all of this.
func (p *port) run(rw io.ReadWriteCloser, handle func(frame)) {
	var parser frameParser
	buf := make([]byte, 64<<10)
	delay := 5 * time.Millisecond
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			delay = 5 * time.Millisecond
			parser.push(buf[:n])
			for {
				f, ok, skipped := parser.next()
				if skipped > 0 {
					logf("port: skipped %d bytes that are not a frame", skipped)
				}
				if !ok {
					break
				}
				handle(f)
			}
		}
		if err == nil {
			continue
		}
		// A host that goes away mid-frame leaves half a frame: the next host starts afresh.
		parser.reset()
		if p.connectPath != "" {
			logf("port: connection lost (%v), reconnecting", err)
			p.mu.Lock()
			p.cur = nil
			p.mu.Unlock()
			rw.Close()
			rw = p.open()
			logf("port: connected")
			continue
		}
		time.Sleep(delay)
		if delay *= 2; delay > 100*time.Millisecond {
			delay = 100 * time.Millisecond
		}
	}
}

// send writes one frame; without a host (or on a write error) the frame is dropped: the host
// learns the state again from hello.
func (p *port) send(typ byte, stream uint32, payload []byte) {
	b := encodeFrame(typ, stream, payload)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	w := p.cur
	p.mu.Unlock()
	if w == nil {
		return
	}
	if _, err := w.Write(b); err != nil && time.Since(p.lastWrErr) > 5*time.Second {
		p.lastWrErr = time.Now()
		logf("port: write failed, frames dropped: %v", err)
	}
}
