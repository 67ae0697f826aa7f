package hubproto

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/signalrd/signalrd/protocol"
)

// stream encodes all sample messages back to back, as a connection would carry them.
func stream(t testing.TB, c Codec) ([]byte, []Message) {
	msgs := sampleMessages(c)
	big := bytes.Repeat([]byte("z"), 5000) // forces a multi-byte VarInt prefix
	bigArg, err := c.Marshal(string(big))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, Invocation{Target: "big", Arguments: []Raw{bigArg}})
	var b []byte
	for _, m := range msgs {
		if b, err = c.Append(b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b, msgs
}

// cutAll feeds s to a reassembly buffer in chunks of size n and decodes every whole message.
func cutAll(t *testing.T, c Codec, s []byte, n int) []Message {
	t.Helper()
	var buf []byte
	var out []Message
	for off := 0; off < len(s); off += n {
		buf = append(buf, s[off:min(off+n, len(s))]...)
		for {
			msg, frame, rest, err := c.Cut(buf, 0)
			if errors.Is(err, protocol.ErrIncomplete) {
				break
			}
			if err != nil {
				t.Fatalf("%s chunk %d: Cut: %v", c.Name(), n, err)
			}
			if len(frame) != len(buf)-len(rest) {
				t.Fatalf("frame length %d, consumed %d", len(frame), len(buf)-len(rest))
			}
			m, err := c.Decode(msg)
			if err != nil {
				t.Fatalf("%s chunk %d: Decode: %v", c.Name(), n, err)
			}
			out = append(out, m)
			buf = append(buf[:0], rest...)
		}
	}
	if len(buf) != 0 {
		t.Fatalf("%s chunk %d: %d bytes left over", c.Name(), n, len(buf))
	}
	return out
}

func TestCutChunked(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{JSON(), MessagePack()} {
		s, want := stream(t, c)
		for _, n := range []int{1, 2, 3, 5, 7, 64, 127, 128, 129, 1000, len(s)} {
			if got := cutAll(t, c, s, n); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s chunk %d: got %d messages, want %d (or contents differ)", c.Name(), n, len(got), len(want))
			}
		}
	}
}

// The codecs work with protocol.Splitter the same way.
func TestSplitterIntegration(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{JSON(), MessagePack()} {
		s, want := stream(t, c)
		sp := protocol.Splitter{Format: c.Format()}
		var got []Message
		for off := 0; off < len(s); off += 33 {
			sp.Write(s[off:min(off+33, len(s))])
			for {
				msg, _, err := sp.Next()
				if errors.Is(err, protocol.ErrIncomplete) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				m, err := c.Decode(msg)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m)
			}
		}
		if !reflect.DeepEqual(got, want) || sp.Buffered() != 0 {
			t.Fatalf("%s: %d messages, %d buffered", c.Name(), len(got), sp.Buffered())
		}
	}
}

func TestCutMax(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{JSON(), MessagePack()} {
		b, err := c.Append(nil, Invocation{Target: "x", Arguments: []Raw{mustMarshal(t, c, string(make([]byte, 100)))}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := c.Cut(b, 50); !errors.Is(err, protocol.ErrTooLarge) {
			t.Errorf("%s: Cut over max = %v", c.Name(), err)
		}
		if _, _, _, err := c.Cut(b, len(b)); err != nil {
			t.Errorf("%s: Cut under max = %v", c.Name(), err)
		}
		if _, _, _, err := c.Cut(b[:len(b)-1], 0); !errors.Is(err, protocol.ErrIncomplete) {
			t.Errorf("%s: Cut partial = %v", c.Name(), err)
		}
	}
}
