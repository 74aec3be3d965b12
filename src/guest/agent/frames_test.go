package main

import (
	"bytes"
	"testing"
)

func TestParserSplitAndMerged(t *testing.T) {
	a := encodeFrame(tRequest, 1, []byte(`{"method":"hello"}`))
	b := encodeFrame(tStdin, 7, bytes.Repeat([]byte("x"), 70000))
	c := encodeFrame(tCloseStdin, 7, nil)
	all := append(append(append([]byte{}, a...), b...), c...)
	var p frameParser
	var got []frame
	for i := 0; i < len(all); i += 1000 {
		end := i + 1000
		if end > len(all) {
			end = len(all)
		}
		p.push(all[i:end])
		for {
			f, ok, skipped := p.next()
			if skipped != 0 {
				t.Fatalf("skipped %d bytes of valid input", skipped)
			}
			if !ok {
				break
			}
			got = append(got, f)
		}
	}
	if len(got) != 3 || got[0].typ != tRequest || got[1].stream != 7 || len(got[1].payload) != 70000 || got[2].typ != tCloseStdin {
		t.Fatalf("frames: %+v", got)
	}
	if len(p.buf) != 0 {
		t.Fatalf("left %d bytes", len(p.buf))
	}
}

func TestParserResyncsPastGarbage(t *testing.T) {
	var p frameParser
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 2} // a 4 GiB length, then junk
	p.push(garbage)
	p.push(encodeFrame(tRequest, 3, []byte(`{}`)))
	f, ok, skipped := p.next()
	if !ok || f.typ != tRequest || f.stream != 3 || string(f.payload) != "{}" {
		t.Fatalf("got %+v ok=%v", f, ok)
	}
	if skipped != len(garbage) {
		t.Fatalf("skipped %d, want %d", skipped, len(garbage))
	}
}

func TestParserRejectsGuestTypesAndBadSizes(t *testing.T) {
	for _, c := range []struct {
		typ    byte
		length uint32
		ok     bool
	}{{tResponse, 10, false}, {tAck, 9, true}, {tAck, 10, false}, {tCloseStdin, 6, false}, {tStdin, maxFrameLen, true}, {tStdin, maxFrameLen + 1, false}, {tRequest, 4, false}} {
		if plausible(c.typ, c.length) != c.ok {
			t.Errorf("plausible(%d, %d) != %v", c.typ, c.length, c.ok)
		}
	}
}
