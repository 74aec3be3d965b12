package main

import "encoding/binary"

// Frame types and limits of docs/guest-agent.md.
const (
	tRequest    = 1
	tResponse   = 2
	tEvent      = 3
	tStdin      = 4
	tStdout     = 5
	tStderr     = 6
	tCloseStdin = 7
	tAck        = 8

	headerLen   = 5 // type + stream, counted in the length
	maxFrameLen = 1<<20 + headerLen
	// The doc allows 32 KiB of payload; the agent sends 9 bytes less so that a whole output frame
	// is one write(2) of at most 32 KiB, which virtio_console passes on all or nothing: a host that
	// disconnects can never leave half an output frame for the next one.
	maxChunk   = 32<<10 - 4 - headerLen
	windowSize = 256 << 10
)

type frame struct {
	typ     byte
	stream  uint32
	payload []byte
}

func encodeFrame(typ byte, stream uint32, payload []byte) []byte {
	b := make([]byte, 4+headerLen+len(payload))
	binary.BigEndian.PutUint32(b, uint32(headerLen+len(payload)))
	b[4] = typ
	binary.BigEndian.PutUint32(b[5:], stream)
	copy(b[9:], payload)
	return b
}

// frameParser cuts frames out of the port's byte stream. A serial port cannot be dropped, so on
// a header that cannot be ours it skips one byte and tries again (resynchronisation): only
// types the host sends, with their fixed sizes, count as a header.
type frameParser struct {
	buf []byte
}

func (p *frameParser) push(b []byte) { p.buf = append(p.buf, b...) }

func (p *frameParser) reset() { p.buf = p.buf[:0] }

func plausible(typ byte, length uint32) bool {
	if length < headerLen || length > maxFrameLen {
		return false
	}
	switch typ {
	case tRequest, tStdin:
		return true
	case tCloseStdin:
		return length == headerLen
	case tAck:
		return length == headerLen+4
	}
	return false
}

// next returns the next complete frame, ok=false when more input is needed, and how many bytes
// it skipped while resynchronising.
func (p *frameParser) next() (f frame, ok bool, skipped int) {
	for len(p.buf) >= 4+headerLen {
		length := binary.BigEndian.Uint32(p.buf)
		typ := p.buf[4]
		if !plausible(typ, length) {
			p.buf = p.buf[1:]
			skipped++
			continue
		}
		if uint32(len(p.buf)) < 4+length {
			break
		}
		payload := make([]byte, length-headerLen)
		copy(payload, p.buf[9:4+length])
		f = frame{typ: typ, stream: binary.BigEndian.Uint32(p.buf[5:]), payload: payload}
		// Compact so the buffer never holds more than one frame plus one read.
		rest := copy(p.buf, p.buf[4+length:])
		p.buf = p.buf[:rest]
		return f, true, skipped
	}
	return frame{}, false, skipped
}
