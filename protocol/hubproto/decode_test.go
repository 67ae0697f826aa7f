package hubproto

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/signalrd/signalrd/protocol"
)

// sampleMessages covers every type with and without optional parts.
func sampleMessages(c Codec) []Message {
	arg := func(v any) Raw {
		r, err := c.Marshal(v)
		if err != nil {
			panic(err)
		}
		return r
	}
	return []Message{
		Invocation{Target: "send", Arguments: []Raw{arg("hello"), arg(42), arg(map[string]any{"a": []any{1.5, true, nil}})}},
		Invocation{InvocationID: "1", Target: "echo"},
		Invocation{Headers: map[string]string{"a": "b", "c": "d"}, InvocationID: "2", Target: "up", Arguments: []Raw{arg(1)}, StreamIDs: []string{"s1", "s2"}},
		Invocation{InvocationID: "3", Target: "count", Stream: true, Arguments: []Raw{arg(10)}},
		StreamItem{InvocationID: "3", Item: arg("x")},
		StreamItem{Headers: map[string]string{"h": "v"}, InvocationID: "3", Item: arg(nil)},
		Completion{InvocationID: "1"},
		Completion{InvocationID: "1", HasResult: true, Result: arg([]int{1, 2})},
		Completion{InvocationID: "1", HasResult: true, Result: arg(nil)},
		Completion{InvocationID: "1", Error: "boom\n\"quoted\" \u00e9"},
		CancelInvocation{InvocationID: "3"},
		Ping{},
		Close{},
		Close{Error: "Connection closed with an error."},
		Close{Error: "x", AllowReconnect: true},
		Close{AllowReconnect: true},
		Ack{SequenceID: 0},
		Ack{SequenceID: 1<<53 + 1},
		Sequence{SequenceID: 1},
		Sequence{SequenceID: -5},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{JSON(), MessagePack()} {
		for _, m := range sampleMessages(c) {
			b, err := c.Append(nil, m)
			if err != nil {
				t.Fatalf("%s Append(%#v): %v", c.Name(), m, err)
			}
			msg, frame, rest, err := c.Cut(b, 0)
			if err != nil || len(rest) != 0 || !bytes.Equal(frame, b) {
				t.Fatalf("%s Cut: %v rest=%d", c.Name(), err, len(rest))
			}
			typ, err := c.PeekType(msg)
			if err != nil || typ != m.Type() {
				t.Errorf("%s PeekType = %v, %v; want %v", c.Name(), typ, err, m.Type())
			}
			got, err := c.Decode(msg)
			if err != nil {
				t.Fatalf("%s Decode(%q): %v", c.Name(), msg, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("%s round trip:\n got %#v\nwant %#v", c.Name(), got, m)
			}
		}
	}
}

func TestDecodeJSONAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want Message
	}{
		// The JS client's JSON.stringify order puts type last.
		{"js order", `{"arguments":[1,"a"],"target":"send","type":1}`,
			Invocation{Target: "send", Arguments: []Raw{Raw("1"), Raw(`"a"`)}}},
		{"whitespace", " {\n\t\"type\" : 1 , \"target\":\"x\" , \"arguments\" : [ 1 , [ 2 ] , { } ] } ",
			Invocation{Target: "x", Arguments: []Raw{Raw("1"), Raw("[ 2 ]"), Raw("{ }")}}},
		{"unknown members", `{"type":1,"future":{"a":[1,2]},"target":"x","arguments":[],"x":null}`,
			Invocation{Target: "x"}},
		{"null invocation id", `{"type":1,"invocationId":null,"target":"x","arguments":[]}`,
			Invocation{Target: "x"}},
		{"empty invocation id means none", `{"type":1,"invocationId":"","target":"x","arguments":[]}`,
			Invocation{Target: "x"}},
		{"missing arguments", `{"type":1,"target":"x"}`, Invocation{Target: "x"}},
		{"null arguments and streamIds", `{"type":1,"target":"x","arguments":null,"streamIds":null,"headers":null}`,
			Invocation{Target: "x"}},
		{"escaped key and value", `{"typ\u0065":1,"target":"a\"b\u00e9\ud83d\ude00","arguments":[]}`,
			Invocation{Target: "a\"b\u00e9\U0001F600"}},
		{"integral float type", `{"type":6.0}`, Ping{}},
		{"exponent type", `{"type":0.6e1}`, Ping{}},
		{"duplicate key last wins", `{"type":6,"type":1,"target":"x","arguments":[]}`, Invocation{Target: "x"}},
		{"stream invocation", `{"type":4,"invocationId":"1","target":"s","arguments":[],"streamIds":[]}`,
			Invocation{InvocationID: "1", Target: "s", Stream: true}},
		{"headers", `{"type":5,"invocationId":"1","headers":{"k":"v","k\u0032":"w"}}`,
			CancelInvocation{InvocationID: "1", Headers: map[string]string{"k": "v", "k2": "w"}}},
		{"empty headers", `{"type":5,"invocationId":"1","headers":{}}`, CancelInvocation{InvocationID: "1"}},
		{"stream item null", `{"type":2,"invocationId":"1","item":null}`, StreamItem{InvocationID: "1", Item: Raw("null")}},
		{"completion null error with result", `{"type":3,"invocationId":"1","error":null,"result":5}`,
			Completion{InvocationID: "1", HasResult: true, Result: Raw("5")}},
		{"completion empty error", `{"type":3,"invocationId":"1","error":""}`, Completion{InvocationID: "1"}},
		{"close null error", `{"type":7,"error":null,"allowReconnect":false}`, Close{}},
		{"close", `{"type":7,"allowReconnect":true,"error":"e"}`, Close{Error: "e", AllowReconnect: true}},
		{"ack", `{"sequenceId":12,"type":8}`, Ack{SequenceID: 12}},
		{"sequence big", `{"type":9,"sequenceId":9007199254740993}`, Sequence{SequenceID: 9007199254740993}},
		{"invalid utf8 becomes U+FFFD", "{\"type\":7,\"error\":\"a\xffb\"}", Close{Error: "a\ufffdb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := JSON().Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", ``, ErrMalformed},
		{"not object", `[1]`, ErrMalformed},
		{"invalid json", `{"type":1,}`, ErrMalformed},
		{"trailing garbage", `{"type":6}x`, ErrMalformed},
		{"two objects", `{"type":6}{"type":6}`, ErrMalformed},
		{"missing type", `{"target":"x"}`, ErrMalformed},
		{"string type", `{"type":"1"}`, ErrMalformed},
		{"fractional type", `{"type":1.5}`, ErrMalformed},
		{"null type", `{"type":null}`, ErrMalformed},
		{"unknown type", `{"type":10}`, ErrUnknownType},
		{"type zero", `{"type":0}`, ErrUnknownType},
		{"negative type", `{"type":-1}`, ErrUnknownType},
		{"huge type", `{"type":1e300}`, ErrMalformed},
		{"missing target", `{"type":1,"arguments":[]}`, ErrMalformed},
		{"empty target", `{"type":1,"target":"","arguments":[]}`, ErrMalformed},
		{"target not string", `{"type":1,"target":5,"arguments":[]}`, ErrMalformed},
		{"arguments not array", `{"type":1,"target":"x","arguments":{}}`, ErrMalformed},
		{"stream ids not strings", `{"type":1,"target":"x","arguments":[],"streamIds":[1]}`, ErrMalformed},
		{"headers not object", `{"type":1,"target":"x","arguments":[],"headers":[]}`, ErrMalformed},
		{"header value not string", `{"type":1,"target":"x","arguments":[],"headers":{"a":1}}`, ErrMalformed},
		{"stream invocation without id", `{"type":4,"target":"x","arguments":[]}`, ErrMalformed},
		{"stream item without id", `{"type":2,"item":1}`, ErrMalformed},
		{"stream item without item", `{"type":2,"invocationId":"1"}`, ErrMalformed},
		{"completion without id", `{"type":3}`, ErrMalformed},
		{"completion result and error", `{"type":3,"invocationId":"1","result":1,"error":"e"}`, ErrMalformed},
		{"cancel without id", `{"type":5}`, ErrMalformed},
		{"close allowReconnect string", `{"type":7,"allowReconnect":"yes"}`, ErrMalformed},
		{"ack without id", `{"type":8}`, ErrMalformed},
		{"ack string id", `{"type":8,"sequenceId":"1"}`, ErrMalformed},
		{"ack fractional id", `{"type":8,"sequenceId":1.5}`, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := JSON().Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) || m != nil {
				t.Fatalf("Decode(%s) = %#v, %v; want %v", tt.in, m, err, tt.want)
			}
		})
	}
}

func TestDecodeMessagePackAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want Message
	}{
		{"spec invocation", mp(0x96, 0x01, 0x80, 0xa3, "xyz", 0xa6, "method", 0x91, 0x2a, 0x90),
			Invocation{InvocationID: "xyz", Target: "method", Arguments: []Raw{{0x2a}}}},
		{"js 5 elements", mp(0x95, 0x01, 0x80, 0xc0, 0xa6, "method", 0x92, 0xa1, "a", 0x93, 0x01, 0x02, 0x03),
			Invocation{Target: "method", Arguments: []Raw{Raw(mp(0xa1, "a")), Raw(mp(0x93, 1, 2, 3))}}},
		{"empty id means none", mp(0x95, 0x01, 0x80, 0xa0, 0xa1, "m", 0x90), Invocation{Target: "m"}},
		{"extra trailing elements", mp(0x98, 0x01, 0x80, 0xc0, 0xa1, "m", 0x90, 0x90, 0x81, 0xa1, "k", 0xc3, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0),
			Invocation{Target: "m"}},
		{"wide type and headers", mp(0xdc, 0x00, 0x03, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x05, 0xde, 0x00, 0x01, 0xd9, 0x01, "k", 0xda, 0x00, 0x01, "v", 0xdb, 0, 0, 0, 1, "1"),
			CancelInvocation{InvocationID: "1", Headers: map[string]string{"k": "v"}}},
		{"nil headers", mp(0x93, 0x05, 0xc0, 0xa1, "1"), CancelInvocation{InvocationID: "1"}},
		{"stream item", mp(0x94, 0x02, 0x80, 0xa1, "1", 0xc7, 0x02, 0x05, 0xaa, 0xbb),
			StreamItem{InvocationID: "1", Item: Raw{0xc7, 0x02, 0x05, 0xaa, 0xbb}}},
		{"spec void completion", mp(0x94, 0x03, 0x80, 0xa3, "xyz", 0x02), Completion{InvocationID: "xyz"}},
		{"void completion with extra", mp(0x95, 0x03, 0x80, 0xa3, "xyz", 0x02, 0xc0), Completion{InvocationID: "xyz"}},
		{"result completion", mp(0x95, 0x03, 0x80, 0xa1, "1", 0x03, 0xc4, 0x02, 0x01, 0x02),
			Completion{InvocationID: "1", HasResult: true, Result: Raw{0xc4, 0x02, 0x01, 0x02}}},
		{"error completion", mp(0x95, 0x03, 0x80, 0xa1, "1", 0x01, 0xa1, "e"), Completion{InvocationID: "1", Error: "e"}},
		{"ping", mp(0x91, 0x06), Ping{}},
		{"ping extra", mp(0x92, 0x06, 0xc0), Ping{}},
		{"close js 2 elements", mp(0x92, 0x07, 0xc0), Close{}},
		{"close error", mp(0x93, 0x07, 0xa1, "e", 0xc3), Close{Error: "e", AllowReconnect: true}},
		{"ack uint64", mp(0x92, 0x08, 0xcf, 0, 0, 0, 0, 0, 0, 0x01, 0x00), Ack{SequenceID: 256}},
		{"sequence", mp(0x92, 0x09, 0x2a), Sequence{SequenceID: 42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := MessagePack().Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeMessagePackRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not array", mp(0x81, 0xa1, "k", 0x01), ErrMalformed},
		{"empty array", mp(0x90), ErrMalformed},
		{"type string", mp(0x91, 0xa1, "1"), ErrMalformed},
		{"type float", mp(0x91, 0xca, 0x3f, 0x80, 0, 0), ErrMalformed},
		{"unknown type", mp(0x91, 0x0a), ErrUnknownType},
		{"unknown type 0", mp(0x91, 0x00), ErrUnknownType},
		{"unknown negative type", mp(0x91, 0xff), ErrUnknownType},
		{"truncated", mp(0x96, 0x01, 0x80, 0xc0, 0xa6, "met"), ErrMalformed},
		{"too few elements", mp(0x94, 0x01, 0x80, 0xc0, 0xa1, "m"), ErrMalformed},
		{"empty target", mp(0x95, 0x01, 0x80, 0xc0, 0xa0, 0x90), ErrMalformed},
		{"nil target", mp(0x95, 0x01, 0x80, 0xc0, 0xc0, 0x90), ErrMalformed},
		{"stream invocation nil id", mp(0x95, 0x04, 0x80, 0xc0, 0xa1, "m", 0x90), ErrMalformed},
		{"arguments not array", mp(0x95, 0x01, 0x80, 0xc0, 0xa1, "m", 0x80), ErrMalformed},
		{"argument count beyond input", mp(0x95, 0x01, 0x80, 0xc0, 0xa1, "m", 0xdd, 0xff, 0xff, 0xff, 0xff), ErrMalformed},
		{"stream id not string", mp(0x96, 0x01, 0x80, 0xc0, 0xa1, "m", 0x90, 0x91, 0x01), ErrMalformed},
		{"header value not string", mp(0x93, 0x05, 0x81, 0xa1, "k", 0x01, 0xa1, "1"), ErrMalformed},
		{"headers not map", mp(0x93, 0x05, 0x90, 0xa1, "1"), ErrMalformed},
		{"bytes after array", mp(0x91, 0x06, 0x00), ErrMalformed},
		{"bad trailing element", mp(0x92, 0x06, 0xc1), ErrMalformed},
		{"completion result kind missing result", mp(0x94, 0x03, 0x80, 0xa1, "1", 0x03), ErrMalformed},
		{"completion bad kind", mp(0x95, 0x03, 0x80, 0xa1, "1", 0x04, 0xc0), ErrMalformed},
		{"completion nil id", mp(0x94, 0x03, 0x80, 0xc0, 0x02), ErrMalformed},
		{"close bool wrong", mp(0x93, 0x07, 0xc0, 0x01), ErrMalformed},
		{"ack missing id", mp(0x91, 0x08), ErrMalformed},
		{"ack too big", mp(0x92, 0x08, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), ErrMalformed},
		{"ack string", mp(0x92, 0x08, 0xa1, "1"), ErrMalformed},
		{"bin item truncated", mp(0x94, 0x02, 0x80, 0xa1, "1", 0xc6, 0xff, 0xff, 0xff, 0xff), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := MessagePack().Decode(tt.in)
			if !errors.Is(err, tt.want) || m != nil {
				t.Fatalf("Decode(% x) = %#v, %v; want %v", tt.in, m, err, tt.want)
			}
		})
	}
}

func TestPeekType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		codec Codec
		in    []byte
		want  MessageType
		err   error
	}{
		{JSON(), []byte(`{"type":6}`), TypePing, nil},
		{JSON(), []byte(`{"arguments":[{"type":7},"}\"type\":7"],"target":"x","type":1}`), TypeInvocation, nil},
		{JSON(), []byte(`{"type":6,"type":3}`), TypeCompletion, nil},
		{JSON(), []byte(`{"typ\u0065":9,"sequenceId":1}`), TypeSequence, nil},
		{JSON(), []byte(`{"type":11}`), 0, ErrUnknownType},
		{JSON(), []byte(`{"target":"x"}`), 0, ErrMalformed},
		{JSON(), []byte(`{"type":1`), 0, ErrMalformed},
		{JSON(), []byte(`[]`), 0, ErrMalformed},
		{MessagePack(), []byte{0x91, 0x06}, TypePing, nil},
		{MessagePack(), mp(0x96, 0x01, 0x80, 0xa3, "xyz", 0xa6, "method", 0x91, 0x2a, 0x90), TypeInvocation, nil},
		{MessagePack(), []byte{0x91, 0x0c}, 0, ErrUnknownType},
		{MessagePack(), []byte{0x90}, 0, ErrMalformed},
		{MessagePack(), []byte{}, 0, ErrMalformed},
	}
	for _, tt := range tests {
		got, err := tt.codec.PeekType(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%s PeekType(%q) = %v, %v; want %v, %v", tt.codec.Name(), tt.in, got, err, tt.want, tt.err)
		}
	}
}

// Decoded raw values must survive the caller reusing its read buffer.
func TestDecodeDoesNotAlias(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{JSON(), MessagePack()} {
		b, err := c.Append(nil, Invocation{Target: "t", Arguments: []Raw{mustMarshal(t, c, "payload")}})
		if err != nil {
			t.Fatal(err)
		}
		msg, _, _, err := c.Cut(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 0
		}
		var s string
		if err := c.Unmarshal(m.(Invocation).Arguments[0], &s); err != nil || s != "payload" {
			t.Errorf("%s: argument after buffer reuse = %q, %v", c.Name(), s, err)
		}
		if got := m.(Invocation).Arguments[0]; cap(got) != len(got) {
			t.Errorf("%s: raw capacity %d > length %d lets appends clobber neighbours", c.Name(), cap(got), len(got))
		}
	}
}

func mustMarshal(t *testing.T, c Codec, v any) Raw {
	t.Helper()
	r, err := c.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type payload struct {
	Name  string  `json:"name"`
	Count int64   `json:"count"`
	Ratio float64 `json:"ratio,omitempty"`
}

func TestMarshalUnmarshal(t *testing.T) {
	t.Parallel()
	in := payload{Name: "n", Count: 3}
	j := mustMarshal(t, JSON(), in)
	if string(j) != `{"name":"n","count":3}` {
		t.Errorf("json Marshal = %s", j)
	}
	m := mustMarshal(t, MessagePack(), in)
	want := mp(0x82, 0xa4, "name", 0xa1, "n", 0xa5, "count", 0x03) // json tags, compact int
	if !bytes.Equal(m, want) {
		t.Errorf("messagepack Marshal = % x, want % x", m, want)
	}
	for _, c := range []Codec{JSON(), MessagePack()} {
		var out payload
		if err := c.Unmarshal(mustMarshal(t, c, in), &out); err != nil || out != in {
			t.Errorf("%s Unmarshal = %+v, %v", c.Name(), out, err)
		}
		raw := Raw("as is")
		if got := mustMarshal(t, c, raw); !bytes.Equal(got, raw) {
			t.Errorf("%s Marshal(Raw) = %q", c.Name(), got)
		}
		var bad chan int
		if _, err := c.Marshal(bad); err == nil {
			t.Errorf("%s Marshal(chan) succeeded", c.Name())
		}
	}
	var n int
	if err := MessagePack().Unmarshal(Raw{0x01, 0x02}, &n); err == nil {
		t.Error("messagepack Unmarshal accepted trailing bytes")
	}
	if err := JSON().Unmarshal(Raw("{"), &n); err == nil {
		t.Error("json Unmarshal accepted bad JSON")
	}
}

func TestCodecFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, name string
		format   protocol.Format
		ok       bool
	}{
		{"json", ProtocolJSON, protocol.Text, true},
		{"JSON", ProtocolJSON, protocol.Text, true},
		{"messagepack", ProtocolMessagePack, protocol.Binary, true},
		{"MessagePack", ProtocolMessagePack, protocol.Binary, true},
		{"blazorpack", ProtocolBlazorPack, protocol.Binary, true},
		{"BlazorPack", ProtocolBlazorPack, protocol.Binary, true},
		{"xml", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		c, ok := CodecFor(tt.in)
		if ok != tt.ok {
			t.Errorf("CodecFor(%q) ok = %v", tt.in, ok)
			continue
		}
		if ok && (c.Name() != tt.name || c.Format() != tt.format) {
			t.Errorf("CodecFor(%q) = %s/%v", tt.in, c.Name(), c.Format())
		}
	}
	// blazorpack writes the same bytes as messagepack.
	bp, _ := CodecFor("blazorpack")
	a, _ := bp.Append(nil, Ping{})
	b, _ := MessagePack().Append(nil, Ping{})
	if !bytes.Equal(a, b) {
		t.Errorf("blazorpack ping = % x", a)
	}
}

// Callers may compare with == (the brief's contract); no wrapping for unknown types.
func TestUnknownTypeIsBareSentinel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c  Codec
		in []byte
	}{{JSON(), []byte(`{"type":42,"x":1}`)}, {MessagePack(), []byte{0x92, 0x2a, 0x01}}} {
		if m, err := tc.c.Decode(tc.in); m != nil || err != ErrUnknownType { //nolint:errorlint // contract
			t.Errorf("%s Decode = %v, %v", tc.c.Name(), m, err)
		}
		if ty, err := tc.c.PeekType(tc.in); ty != 0 || err != ErrUnknownType { //nolint:errorlint // contract
			t.Errorf("%s PeekType = %v, %v", tc.c.Name(), ty, err)
		}
	}
}

func TestMessageType(t *testing.T) {
	t.Parallel()
	for ty := MessageType(0); ty < 12; ty++ {
		want := ty >= 1 && ty <= 5
		if ty.Trackable() != want {
			t.Errorf("%v.Trackable() = %v", ty, !want)
		}
	}
	if TypeStreamInvocation.String() != "StreamInvocation" || MessageType(42).String() != "MessageType(42)" || MessageType(0).String() != "MessageType(0)" {
		t.Error("String")
	}
	if (Invocation{Stream: true}).Type() != TypeStreamInvocation || (Invocation{}).Type() != TypeInvocation {
		t.Error("Invocation.Type")
	}
}
