package hubproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// mp builds MessagePack test bytes from bytes and strings (strings are written as raw bytes).
func mp(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			b = append(b, byte(v))
		case byte:
			b = append(b, v)
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		default:
			panic("mp: bad part")
		}
	}
	return b
}

// framed prefixes body with its one-byte length (bodies in these tests are < 128 bytes).
func framed(body []byte) []byte { return append([]byte{byte(len(body))}, body...) }

func TestGoldenJSON(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"invocation non-blocking", Invocation{Target: "method", Arguments: []Raw{Raw("42")}},
			`{"type":1,"target":"method","arguments":[42]}`},
		{"invocation no args", &Invocation{Target: "m"},
			`{"type":1,"target":"m","arguments":[]}`},
		{"invocation full", Invocation{
			Headers:      map[string]string{"b": "2", "a": "1"},
			InvocationID: "xyz", Target: "method",
			Arguments: []Raw{Raw("42"), Raw(`"s"`), nil, Raw(`{"k":[1,2]}`)},
			StreamIDs: []string{"1", "2"},
		}, `{"type":1,"headers":{"a":"1","b":"2"},"invocationId":"xyz","target":"method","arguments":[42,"s",null,{"k":[1,2]}],"streamIds":["1","2"]}`},
		{"stream invocation", Invocation{InvocationID: "7", Target: "count", Stream: true, Arguments: []Raw{Raw("10")}},
			`{"type":4,"invocationId":"7","target":"count","arguments":[10]}`},
		{"stream item", StreamItem{InvocationID: "7", Item: Raw(`{"x":1}`)},
			`{"type":2,"invocationId":"7","item":{"x":1}}`},
		{"stream item headers", StreamItem{Headers: map[string]string{"h": "v"}, InvocationID: "7", Item: Raw(`1`)},
			`{"type":2,"headers":{"h":"v"},"invocationId":"7","item":1}`},
		{"completion void", Completion{InvocationID: "xyz"},
			`{"type":3,"invocationId":"xyz"}`},
		{"completion result", Completion{InvocationID: "xyz", HasResult: true, Result: Raw(`[1,"a"]`)},
			`{"type":3,"invocationId":"xyz","result":[1,"a"]}`},
		{"completion null result", Completion{InvocationID: "xyz", HasResult: true},
			`{"type":3,"invocationId":"xyz","result":null}`},
		{"completion error wins", Completion{InvocationID: "xyz", Error: `boom "x"` + "\n", HasResult: true, Result: Raw("1")},
			`{"type":3,"invocationId":"xyz","error":"boom \"x\"\n"}`},
		{"cancel", CancelInvocation{InvocationID: "xyz"},
			`{"type":5,"invocationId":"xyz"}`},
		{"ping", Ping{}, `{"type":6}`},
		{"ping pointer", &Ping{}, `{"type":6}`},
		{"close", Close{}, `{"type":7}`},
		{"close error", Close{Error: "Connection closed with an error."},
			`{"type":7,"error":"Connection closed with an error."}`},
		{"close reconnect", Close{Error: "Internal server error.", AllowReconnect: true},
			`{"type":7,"error":"Internal server error.","allowReconnect":true}`},
		{"close reconnect no error", Close{AllowReconnect: true},
			`{"type":7,"allowReconnect":true}`},
		{"ack", Ack{SequenceID: 1394}, `{"type":8,"sequenceId":1394}`},
		{"sequence", Sequence{SequenceID: 1}, `{"type":9,"sequenceId":1}`},
		{"sequence large", Sequence{SequenceID: 1 << 40}, `{"type":9,"sequenceId":1099511627776}`},
		{"escaping", Invocation{Target: "t\u00e9\x01\u2028<", Arguments: []Raw{Raw(`"` + long + `"`)}},
			`{"type":1,"target":"té\u0001\u2028<","arguments":["` + long + `"]}`},
		{"invalid utf8", Close{Error: "a\xffb"}, `{"type":7,"error":"a\ufffdb"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("prev")
			got, err := JSON().Append(prefix, tt.msg)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			want := "prev" + tt.want + "\x1e"
			if string(got) != want {
				t.Fatalf("Append:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestGoldenMessagePack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  Message
		want []byte // framed
	}{
		// HubProtocol.md / spec §4.3 example.
		{"spec invocation", Invocation{InvocationID: "xyz", Target: "method", Arguments: []Raw{{0x2a}}},
			framed(mp(0x96, 0x01, 0x80, 0xa3, "xyz", 0xa6, "method", 0x91, 0x2a, 0x90))},
		{"invocation non-blocking", Invocation{Target: "method", Arguments: []Raw{{0x2a}}},
			framed(mp(0x96, 0x01, 0x80, 0xc0, 0xa6, "method", 0x91, 0x2a, 0x90))},
		{"invocation headers streams nil arg", &Invocation{
			Headers: map[string]string{"b": "2", "a": "1"}, InvocationID: "xyz", Target: "m",
			Arguments: []Raw{nil}, StreamIDs: []string{"s1"},
		}, framed(mp(0x96, 0x01, 0x82, 0xa1, "a", 0xa1, "1", 0xa1, "b", 0xa1, "2", 0xa3, "xyz", 0xa1, "m", 0x91, 0xc0, 0x91, 0xa2, "s1"))},
		{"stream invocation", Invocation{InvocationID: "xyz", Target: "method", Stream: true},
			framed(mp(0x96, 0x04, 0x80, 0xa3, "xyz", 0xa6, "method", 0x90, 0x90))},
		{"stream item", StreamItem{InvocationID: "xyz", Item: Raw{0x2a}},
			framed(mp(0x94, 0x02, 0x80, 0xa3, "xyz", 0x2a))},
		// Spec §4.3 example.
		{"completion void", Completion{InvocationID: "xyz"},
			framed(mp(0x94, 0x03, 0x80, 0xa3, "xyz", 0x02))},
		{"completion error", Completion{InvocationID: "xyz", Error: "Error"},
			framed(mp(0x95, 0x03, 0x80, 0xa3, "xyz", 0x01, 0xa5, "Error"))},
		{"completion result", Completion{InvocationID: "xyz", HasResult: true, Result: Raw{0x2a}},
			framed(mp(0x95, 0x03, 0x80, 0xa3, "xyz", 0x03, 0x2a))},
		{"completion nil result", Completion{InvocationID: "xyz", HasResult: true},
			framed(mp(0x95, 0x03, 0x80, 0xa3, "xyz", 0x03, 0xc0))},
		{"cancel", CancelInvocation{Headers: map[string]string{"k": "v"}, InvocationID: "xyz"},
			framed(mp(0x93, 0x05, 0x81, 0xa1, "k", 0xa1, "v", 0xa3, "xyz"))},
		{"ping", Ping{}, []byte{0x02, 0x91, 0x06}},
		{"close", Close{}, framed(mp(0x93, 0x07, 0xc0, 0xc2))},
		{"close error reconnect", Close{Error: "Error", AllowReconnect: true},
			framed(mp(0x93, 0x07, 0xa5, "Error", 0xc3))},
		{"ack", Ack{SequenceID: 1394}, framed(mp(0x92, 0x08, 0xcd, 0x05, 0x72))},
		{"ack zero", Ack{}, framed(mp(0x92, 0x08, 0x00))},
		{"sequence", Sequence{SequenceID: 1}, framed(mp(0x92, 0x09, 0x01))},
		{"sequence uint32", Sequence{SequenceID: 1 << 31}, framed(mp(0x92, 0x09, 0xce, 0x80, 0, 0, 0))},
		{"sequence negative", Sequence{SequenceID: -1}, framed(mp(0x92, 0x09, 0xff))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := MessagePack().Append([]byte{0xee}, tt.msg)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			want := append([]byte{0xee}, tt.want...)
			if !bytes.Equal(got, want) {
				t.Fatalf("Append:\n got % x\nwant % x", got, want)
			}
		})
	}
}

// TestGoldenMessagePackLong covers multi-byte length prefixes and long string headers.
func TestGoldenMessagePackLong(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		argLen int
		prefix []byte
	}{
		// Body = 11 bytes before the arguments, a 3-byte array16 header, the arguments, 0x90.
		{"127 byte body", 127 - 15, []byte{0x7f}},
		{"128 byte body", 128 - 15, []byte{0x80, 0x01}},
		{"16384 byte body", 16384 - 15, []byte{0x80, 0x80, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			arg := bytes.Repeat([]byte{0xc0}, tt.argLen) // argLen nils, each its own argument
			args := make([]Raw, tt.argLen)
			for i := range args {
				args[i] = arg[i : i+1]
			}
			body := mp(0x96, 0x01, 0x80, 0xc0, 0xa6, "method")
			body = mpAppendArrayHeader(body, tt.argLen)
			body = append(body, arg...)
			body = append(body, 0x90)
			want := append(append([]byte("x"), tt.prefix...), body...)
			got, err := MessagePack().Append([]byte("x"), Invocation{Target: "method", Arguments: args})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("len %d: got prefix % x, want % x (body %d)", len(got), got[:4], want[:4], len(body))
			}
		})
	}
}

func TestMPStringHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0xa0}}, {31, []byte{0xbf}}, {32, []byte{0xd9, 32}}, {255, []byte{0xd9, 0xff}},
		{256, []byte{0xda, 0x01, 0x00}}, {65535, []byte{0xda, 0xff, 0xff}}, {65536, []byte{0xdb, 0, 1, 0, 0}},
	}
	for _, tt := range tests {
		if got := mpAppendStrHeader(nil, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("str header %d = % x, want % x", tt.n, got, tt.want)
		}
	}
	ints := []struct {
		n    int64
		want []byte
	}{
		{0, []byte{0}}, {127, []byte{0x7f}}, {128, []byte{0xcc, 0x80}}, {256, []byte{0xcd, 1, 0}},
		{1 << 16, []byte{0xce, 0, 1, 0, 0}}, {1 << 32, []byte{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}},
		{-1, []byte{0xff}}, {-32, []byte{0xe0}}, {-33, []byte{0xd0, 0xdf}}, {-129, []byte{0xd1, 0xff, 0x7f}},
		{-1 << 20, []byte{0xd2, 0xff, 0xf0, 0, 0}}, {-1 << 40, []byte{0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}},
	}
	for _, tt := range ints {
		if got := mpAppendInt(nil, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("int %d = % x, want % x", tt.n, got, tt.want)
		}
	}
	if got := mpAppendArrayHeader(nil, 16); !bytes.Equal(got, []byte{0xdc, 0, 16}) {
		t.Errorf("array16 = % x", got)
	}
	if got := mpAppendMapHeader(nil, 1<<16); !bytes.Equal(got, []byte{0xdf, 0, 1, 0, 0}) {
		t.Errorf("map32 = % x", got)
	}
}

func TestAppendErrors(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name string
		msg  Message
	}{
		{"nil", nil},
		{"nil pointer", (*Invocation)(nil)},
		{"empty target", Invocation{}},
		{"stream without id", Invocation{Target: "x", Stream: true}},
		{"stream item without id", StreamItem{}},
		{"completion without id", Completion{}},
		{"cancel without id", CancelInvocation{}},
		{"foreign type", foreign{}},
	}
	for _, c := range []Codec{JSON(), MessagePack()} {
		for _, tt := range bad {
			dst := []byte("keep")
			got, err := c.Append(dst, tt.msg)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s %s: err = %v, want ErrMalformed", c.Name(), tt.name, err)
			}
			if string(got) != "keep" {
				t.Errorf("%s %s: dst changed to %q", c.Name(), tt.name, got)
			}
		}
	}
	// A record separator inside a JSON raw value would split the stream.
	_, err := JSON().Append(nil, Invocation{Target: "x", Arguments: []Raw{Raw("\"a\x1eb\"")}})
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("raw with 0x1E: err = %v", err)
	}
}

type foreign struct{}

func (foreign) Type() MessageType { return 42 }
