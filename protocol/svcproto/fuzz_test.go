package svcproto

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/signalrd/signalrd/protocol"
)

// FuzzDecode checks that Decode never panics, fails only with ErrMalformed, and that whatever it
// accepts re-encodes (to well-formed MessagePack) and decodes back to the same value.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.body)
	}
	for _, frame := range unknownFrames {
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || m != nil {
				t.Fatalf("Decode = %v, %v; want nil, ErrMalformed", m, err)
			}
			return
		}
		if m == nil {
			return // unknown type id
		}
		enc, err := Append(nil, m)
		if err != nil {
			t.Fatalf("Append(%#v): %v", m, err)
		}
		if err := wellFormed(enc); err != nil {
			t.Fatalf("Append(%#v) = % x: %v", m, enc, err)
		}
		m2, used, err := decode(enc)
		if err != nil {
			t.Fatalf("Decode(Append(%#v) = % x): %v", m, enc, err)
		}
		if used != len(enc) {
			t.Fatalf("re-encoded message % x decodes from %d of %d bytes", enc, used, len(enc))
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip\n got %#v\nwant %#v", m2, m)
		}
		framed, err := AppendFrame([]byte{0xaa}, m)
		if err != nil || !bytes.Equal(framed, protocol.AppendFrame([]byte{0xaa}, enc)) {
			t.Fatalf("AppendFrame = % x, %v; want prefix + % x", framed, err, enc)
		}
	})
}

// readAll drains r after every write of data cut at the given boundaries, recording each message
// (canonically re-encoded) or error, and stops at the first stream-fatal error.
func readAll(data []byte, cuts []int, zeroCopy bool) (events []string) {
	r := Reader{Max: 1 << 12, ZeroCopy: zeroCopy}
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		r.Write(data[prev:cut])
		prev = cut
		for {
			m, err := r.Next()
			if err == protocol.ErrIncomplete {
				break
			}
			if err != nil {
				events = append(events, "error: "+err.Error())
				if !errors.Is(err, ErrMalformed) {
					return events // ErrTooLarge / ErrBadLength: the stream is lost
				}
				continue
			}
			b, err := Append(nil, m)
			if err != nil {
				events = append(events, "append error: "+err.Error())
				continue
			}
			events = append(events, string(b))
		}
	}
	return events
}

// FuzzReaderChunked checks that splitting a stream at random boundaries does not change what a
// Reader yields, in both copy modes.
func FuzzReaderChunked(f *testing.F) {
	var all []byte
	for _, v := range loadVectors(f) {
		all = append(all, v.framed...)
		f.Add(v.framed, []byte{1})
	}
	for _, frame := range unknownFrames {
		all = protocol.AppendFrame(all, frame)
	}
	f.Add(all, []byte{1, 2, 3, 200, 7})
	f.Add(all, []byte{255})
	f.Add(append(all, 0xff, 0xff, 0xff, 0xff, 0x7f), []byte{16})
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		var cuts []int
		for i, pos := 0, 0; len(chunks) > 0; i++ {
			pos += int(chunks[i%len(chunks)]) + 1
			if pos >= len(data) || i > 4096 {
				break
			}
			cuts = append(cuts, pos)
		}
		whole := readAll(data, nil, false)
		for _, zeroCopy := range []bool{false, true} {
			if got := readAll(data, cuts, zeroCopy); !reflect.DeepEqual(got, whole) {
				t.Fatalf("zero-copy %v, cuts %v:\n got %q\nwant %q", zeroCopy, cuts, got, whole)
			}
		}
	})
}
