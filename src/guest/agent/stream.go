package main

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// stream is one process's stdio on the port: the flow-control window of its output and the
// queue feeding its stdin.
type stream struct {
	id  uint32
	tty bool
	// ignoreClose: a container's main stdin without stdinOnce outlives an attach session.
	ignoreClose bool
	master      *os.File // tty only
	container   *container
	pid         int // guarded by agent.mu; 0 until started

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int64 // bytes sent (or reserved) and not yet ACKed
	stopped  bool

	stdinW    io.WriteCloser // nil: the process has no stdin
	stdinQ    chan stdinMsg
	stdinDone bool
	dropped   int

	// readers blocked in read(2) since (unix ns, 0 = not in read): after the process exits,
	// a reader stuck that long is waiting on a pipe a leftover child holds open.
	readers sync.WaitGroup
	inRead  []*int64
}

type stdinMsg struct {
	data  []byte
	close bool
}

// stdinQueueLen bounds what the agent holds for a process that does not read its stdin (the
// protocol has no window for stdin); beyond it STDIN frames are dropped, with a log line.
const stdinQueueLen = 256

func newStream(id uint32) *stream {
	s := &stream{id: id}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// reserve waits for window room and reserves up to maxChunk bytes of it; 0 once stopped.
func (s *stream) reserve() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.stopped && s.inflight >= windowSize {
		s.cond.Wait()
	}
	if s.stopped {
		return 0
	}
	n := windowSize - s.inflight
	if n > maxChunk {
		n = maxChunk
	}
	s.inflight += n
	return int(n)
}

func (s *stream) unreserve(n int) {
	s.mu.Lock()
	s.inflight -= int64(n)
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *stream) ack(n uint32) {
	s.mu.Lock()
	if s.inflight -= int64(n); s.inflight < 0 {
		s.inflight = 0
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// resetWindow: after hello the host has lost what was in flight.
func (s *stream) resetWindow() {
	s.mu.Lock()
	s.inflight = 0
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *stream) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
}

// pump copies one output file to the port as frames of type typ, within the window.
func (s *stream) pump(p *port, f *os.File, typ byte) {
	inRead := new(int64)
	s.mu.Lock()
	s.inRead = append(s.inRead, inRead)
	s.mu.Unlock()
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		defer f.Close()
		buf := make([]byte, maxChunk)
		for {
			n := s.reserve()
			if n == 0 {
				return
			}
			atomic.StoreInt64(inRead, time.Now().UnixNano())
			k, err := f.Read(buf[:n])
			atomic.StoreInt64(inRead, 0)
			s.unreserve(n - k)
			if k > 0 {
				p.send(typ, s.id, buf[:k])
			}
			if err != nil { // EOF; EIO on a pty master once the slave side is closed
				return
			}
		}
	}()
}

// drain waits for the output readers to reach EOF. A reader blocked in read for more than a
// second after the process exited is cut off: something the process left behind holds the
// pipe, and the exit must still be reported.
func (s *stream) drain(files []*os.File) {
	done := make(chan struct{})
	go func() { s.readers.Wait(); close(done) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			s.mu.Lock()
			stuck := false
			for _, r := range s.inRead {
				if t := atomic.LoadInt64(r); t != 0 && time.Since(time.Unix(0, t)) > time.Second {
					stuck = true
				}
			}
			s.mu.Unlock()
			if stuck {
				for _, f := range files {
					f.Close()
				}
				s.stop()
			}
		}
	}
}

func (s *stream) startStdin(w io.WriteCloser) {
	s.stdinW = w
	s.stdinQ = make(chan stdinMsg, stdinQueueLen)
	go func() {
		for m := range s.stdinQ {
			if m.close {
				if s.tty {
					_, _ = w.Write([]byte{4}) // ^D: a terminal has no end of input
					continue
				}
				w.Close()
				continue
			}
			if _, err := w.Write(m.data); err != nil {
				logf("stream %d: stdin: %v", s.id, err)
			}
		}
		if !s.tty {
			w.Close()
		}
	}()
}

func (s *stream) stdin(m stdinMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdinQ == nil || s.stdinDone || (m.close && s.ignoreClose) {
		return
	}
	select {
	case s.stdinQ <- m:
		if m.close && !s.tty {
			s.stdinDone = true
			close(s.stdinQ)
		}
	default:
		if s.dropped++; s.dropped == 1 || s.dropped%1000 == 0 {
			logf("stream %d: stdin not read by the process: %d frames dropped", s.id, s.dropped)
		}
	}
}

// endStdin closes the process's stdin when the stream ends.
func (s *stream) endStdin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdinQ != nil && !s.stdinDone {
		s.stdinDone = true
		close(s.stdinQ)
	}
	if s.stdinW != nil && !s.tty {
		s.stdinW.Close() // unblocks a write to a pipe nobody reads any more
	}
}
