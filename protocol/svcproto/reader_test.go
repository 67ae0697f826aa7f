package svcproto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/signalrd/signalrd/protocol"
)

// unknownFrames are well-framed messages with type ids this package does not know.
var unknownFrames = [][]byte{
	{0x91, 0x00},
	{0x92, 41, 0xa3, 'n', 'e', 'w'},
	{0x93, 0xcc, 200, 0xc4, 1, 0xff, 0x80},
	{0x91, 0xff},
}

// drain reads messages until ErrIncomplete; any other error fails the test.
func drain(t *testing.T, r *Reader, out []Message) []Message {
	t.Helper()
	for {
		m, err := r.Next()
		if err == protocol.ErrIncomplete {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, m)
	}
}

// TestReaderChunks feeds all vectors, with unknown-type frames between them, in chunks of every
// size from 1 byte to the whole stream (to 300 with -short), and expects the vectors' messages in order. Messages are
// compared by their canonical encoding (cheap enough for every chunk size under -race).
func TestReaderChunks(t *testing.T) {
	t.Parallel()
	vs := loadVectors(t)
	var data, want []byte
	for i, v := range vs {
		data = protocol.AppendFrame(data, unknownFrames[i%len(unknownFrames)])
		data = append(data, v.framed...)
		m, err := Decode(v.body)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if want, err = AppendFrame(want, m); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
	}
	got := make([]byte, 0, len(want))
	maxSize := len(data)
	if testing.Short() {
		maxSize = 300
	}
	for _, zeroCopy := range []bool{false, true} {
		for size := 1; size <= maxSize; size++ {
			r := Reader{Max: 1 << 10, ZeroCopy: zeroCopy}
			got = got[:0]
			for off := 0; off < len(data); off += size {
				r.Write(data[off:min(off+size, len(data))])
				for { // encode at once: zero-copy payloads are only valid until the next Write
					m, err := r.Next()
					if err == protocol.ErrIncomplete {
						break
					}
					if err != nil {
						t.Fatalf("chunk size %d: Next: %v", size, err)
					}
					got, _ = AppendFrame(got, m)
				}
			}
			if !bytes.Equal(got, want) || r.Buffered() != 0 {
				t.Fatalf("zero-copy %v, chunk size %d: messages differ (%d bytes left)", zeroCopy, size, r.Buffered())
			}
		}
	}
}

func TestReaderOversize(t *testing.T) {
	t.Parallel()
	small, _ := AppendFrame(nil, ConnectionData{ConnectionID: "c", Payload: make([]byte, 8)}) // 15-byte body
	big, _ := AppendFrame(nil, ConnectionData{ConnectionID: "c", Payload: make([]byte, 10)})  // 17-byte body
	r := Reader{Max: 16}
	r.Write(small)
	r.Write(big[:1]) // the prefix alone is enough to reject the frame
	if m, err := r.Next(); err != nil || m.Type() != TypeConnectionData {
		t.Fatalf("first Next = %v, %v", m, err)
	}
	for range 2 { // the error is sticky: the stream cannot be resynchronised
		if _, err := r.Next(); !errors.Is(err, protocol.ErrTooLarge) {
			t.Fatalf("Next = %v, want ErrTooLarge", err)
		}
	}
}

func TestReaderBadLength(t *testing.T) {
	t.Parallel()
	var r Reader
	r.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})
	if _, err := r.Next(); !errors.Is(err, protocol.ErrBadLength) {
		t.Fatalf("Next = %v, want ErrBadLength", err)
	}
}

// TestReaderMalformedThenContinue checks a malformed body consumes its frame only.
func TestReaderMalformedThenContinue(t *testing.T) {
	t.Parallel()
	var r Reader
	data := protocol.AppendFrame(nil, []byte{0x92, 6, 0xa1}) // ConnectionData, truncated
	data, _ = AppendFrame(data, Ping{})
	r.Write(data)
	if _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Next = %v, want ErrMalformed", err)
	}
	if m, err := r.Next(); err != nil || m.Type() != TypePing {
		t.Fatalf("Next after malformed = %v, %v; want Ping", m, err)
	}
	if _, err := r.Next(); err != protocol.ErrIncomplete {
		t.Fatalf("Next = %v, want ErrIncomplete", err)
	}
}

// TestReaderCopiesPayloads checks that by default payloads survive later writes.
func TestReaderCopiesPayloads(t *testing.T) {
	t.Parallel()
	var r Reader
	frame, _ := AppendFrame(nil, ConnectionData{ConnectionID: "c", Payload: []byte("first")})
	r.Write(frame)
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	// Reset-and-reuse of the internal buffer would overwrite the aliased bytes.
	other, _ := AppendFrame(nil, ConnectionData{ConnectionID: "c", Payload: []byte("XXXXX")})
	for range 3 {
		r.Write(other)
		drain(t, &r, nil)
	}
	if got := m.(ConnectionData).Payload; !bytes.Equal(got, []byte("first")) {
		t.Errorf("retained payload = %q, want %q", got, "first")
	}
}

func TestReaderZeroValue(t *testing.T) {
	t.Parallel()
	var r Reader
	if _, err := r.Next(); err != protocol.ErrIncomplete {
		t.Fatalf("empty Next = %v", err)
	}
	for _, f := range unknownFrames {
		r.Write(protocol.AppendFrame(nil, f))
	}
	if _, err := r.Next(); err != protocol.ErrIncomplete {
		t.Fatalf("Next over unknown types = %v, want ErrIncomplete", err)
	}
}
