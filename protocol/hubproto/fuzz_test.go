package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/signalrd/signalrd/protocol"
	"github.com/vmihailenco/msgpack/v5"
)

func FuzzParseHandshakeRequest(f *testing.F) {
	for _, s := range []string{
		`{"protocol":"json","version":1}`, `{"protocol":"messagepack","version":2}`,
		`{"version":1}`, `{"protocol":"json","version":"1"}`, `{"protocol":"json","version":1}x`,
		`{"protocol":"a\u0062","version":1e0,"x":[{}]}`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseHandshakeRequest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		b := AppendHandshakeRequest(nil, r)
		if b[len(b)-1] != protocol.RecordSeparator || bytes.IndexByte(b[:len(b)-1], protocol.RecordSeparator) >= 0 {
			t.Fatalf("bad framing %q", b)
		}
		r2, err := ParseHandshakeRequest(b[:len(b)-1])
		if err != nil || r2 != r {
			t.Fatalf("re-parse %q = %+v, %v; want %+v", b, r2, err, r)
		}
		// The response parser must cope with anything too.
		_, _ = ParseHandshakeResponse(data)
	})
}

// checkReencode asserts decode => encode => decode is stable and PeekType agrees with Decode.
func checkReencode(t *testing.T, c Codec, msg []byte) {
	t.Helper()
	pt, perr := c.PeekType(msg)
	m, err := c.Decode(msg)
	if err != nil {
		if m != nil {
			t.Fatalf("Decode returned a message with error %v", err)
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
			t.Fatalf("unexpected error kind %v", err)
		}
		if errors.Is(err, ErrUnknownType) && !errors.Is(perr, ErrUnknownType) {
			t.Fatalf("Decode says unknown type, PeekType says %v, %v", pt, perr)
		}
		return
	}
	if perr != nil || pt != m.Type() {
		t.Fatalf("PeekType = %v, %v; Decode type %v", pt, perr, m.Type())
	}
	b, err := c.Append(nil, m)
	if err != nil {
		t.Fatalf("Append(%#v): %v", m, err)
	}
	body, frame, rest, err := c.Cut(b, 0)
	if err != nil || len(rest) != 0 || len(frame) != len(b) {
		t.Fatalf("Cut of re-encoded message: %v, rest %d", err, len(rest))
	}
	m2, err := c.Decode(body)
	if err != nil {
		t.Fatalf("Decode of re-encoded %q: %v", body, err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("re-decode differs:\n first %#v\nsecond %#v", m, m2)
	}
}

func FuzzJSONDecode(f *testing.F) {
	for _, m := range sampleMessages(JSON()) {
		b, _ := JSON().Append(nil, m)
		f.Add(b[:len(b)-1])
	}
	for _, s := range []string{
		`{"arguments":[1,{"a":[]}],"target":"x","type":1}`, `{"type":3,"invocationId":"1","result":1,"error":null}`,
		`{"type":1,"target":"a\ud800b","arguments":[],"headers":{"k\u0000":"v"}}`, `{"type":6,"type":1}`,
		`{"type":99}`, `{"type":7,"allowReconnect":true}`, `{"type":8,"sequenceId":1e3}`, `{"type"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReencode(t, JSON(), data)
	})
}

func FuzzMessagePackDecode(f *testing.F) {
	for _, m := range sampleMessages(MessagePack()) {
		b, _ := MessagePack().Append(nil, m)
		msg, _, _, _ := MessagePack().Cut(b, 0)
		f.Add(msg)
	}
	for _, b := range [][]byte{
		mp(0x95, 0x01, 0x80, 0xc0, 0xa1, "m", 0x90),
		mp(0x98, 0x01, 0x80, 0xc0, 0xa1, "m", 0x90, 0x90, 0x81, 0xa1, "k", 0xc3, 0xc7, 0x01, 0x01, 0x00),
		mp(0x92, 0x07, 0xc0), mp(0x95, 0x03, 0x80, 0xa1, "1", 0x01, 0xc0), mp(0x91, 0x0a),
		mp(0x94, 0x02, 0x80, 0xa1, "1", 0xdd, 0xff, 0xff, 0xff, 0xff),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReencode(t, MessagePack(), data)
	})
}

// FuzzCutChunked treats the input as a connection's byte stream: cutting it in arbitrary chunks
// must yield the same messages as cutting it whole, and every decodable one must re-encode.
func FuzzCutChunked(f *testing.F) {
	for _, c := range []Codec{JSON(), MessagePack()} {
		var b []byte
		for _, m := range sampleMessages(c)[:6] {
			b, _ = c.Append(b, m)
		}
		f.Add(b, uint8(3), c == JSON())
	}
	f.Add([]byte("{\"type\":6}\x1e{\"type\":1,\"target\":\"x\"}\x1e{"), uint8(1), true)
	f.Add([]byte{0x80, 0x01, 0x91}, uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, useJSON bool) {
		c := MessagePack()
		if useJSON {
			c = JSON()
		}
		n := int(chunk)%64 + 1
		const max = 1 << 16

		var whole [][]byte
		var wholeErr error
		for rest := data; ; {
			msg, _, r, err := c.Cut(rest, max)
			if err != nil {
				wholeErr = err
				break
			}
			whole = append(whole, bytes.Clone(msg))
			rest = r
		}

		var chunked [][]byte
		var chunkErr error
		var buf []byte
	feed:
		for off := 0; off < len(data); off += n {
			buf = append(buf, data[off:min(off+n, len(data))]...)
			for {
				msg, _, rest, err := c.Cut(buf, max)
				if errors.Is(err, protocol.ErrIncomplete) {
					break
				}
				if err != nil {
					chunkErr = err
					break feed
				}
				chunked = append(chunked, bytes.Clone(msg))
				buf = append(buf[:0], rest...)
			}
		}
		if chunkErr == nil { // ran out of input, possibly mid-message
			chunkErr = protocol.ErrIncomplete
		}
		if !reflect.DeepEqual(whole, chunked) {
			t.Fatalf("whole cut %d messages, chunked %d", len(whole), len(chunked))
		}
		// A stream ending mid-message is incomplete either way; a hard error must show up in both.
		if errors.Is(wholeErr, protocol.ErrIncomplete) != errors.Is(chunkErr, protocol.ErrIncomplete) {
			t.Fatalf("whole error %v, chunked error %v", wholeErr, chunkErr)
		}
		for _, msg := range whole {
			checkReencode(t, c, msg)
		}
	})
}

func FuzzJSONToMessagePack(f *testing.F) {
	for _, s := range []string{`1`, `-1.5e3`, `"a\u00e9\ud83d"`, `[1,[2,{}]]`, `{"a":1,"a":2}`, `{"a":{"b":[null,true]}}`, `18446744073709551616`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := JSONToMessagePack(data)
		if err != nil {
			if json.Valid(data) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("valid JSON rejected: %v", err)
			}
			return
		}
		// Exactly one well-formed MessagePack value, readable by the library.
		r := mpReader{b: got}
		if _, end, ok := r.skip(); !ok || end != len(got) {
			t.Fatalf("not one value: % x", got)
		}
		var v any
		if err := msgpack.Unmarshal(got, &v); err != nil {
			t.Fatalf("library cannot read % x: %v", got, err)
		}
		// Same value as encoding/json sees, modulo number types.
		var j any
		if err := json.Unmarshal(data, &j); err != nil {
			return // numbers beyond float64: encoding/json errors, the converter writes ±Inf like JSON.parse
		}
		if !sameValue(j, v) {
			t.Fatalf("json %#v vs messagepack %#v", j, v)
		}
	})
}

// sameValue compares a JSON-decoded value with a MessagePack-decoded one, numbers by float64.
func sameValue(j, m any) bool {
	switch jv := j.(type) {
	case float64:
		var f float64
		switch mv := m.(type) {
		case int8:
			f = float64(mv)
		case int16:
			f = float64(mv)
		case int32:
			f = float64(mv)
		case int64:
			f = float64(mv)
		case uint8:
			f = float64(mv)
		case uint16:
			f = float64(mv)
		case uint32:
			f = float64(mv)
		case uint64:
			f = float64(mv)
		case float64:
			f = mv
		default:
			return false
		}
		return f == jv
	case []any:
		mv, ok := m.([]any)
		if !ok || len(mv) != len(jv) {
			return false
		}
		for i := range jv {
			if !sameValue(jv[i], mv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		mv, ok := m.(map[string]any)
		if !ok || len(mv) != len(jv) {
			return false
		}
		for k, v := range jv {
			if !sameValue(v, mv[k]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(j, m)
	}
}

// FuzzUnescape checks the hand-written string decoder against encoding/json.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`"a"`, `"\ud83d\ude00"`, `"\ud800\u0041"`, `"\udc00"`, "\"\xff\"", `"\/\b\f\n\r\t\\\""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.Trim(data, " \t\r\n") // json.Unmarshal allows surrounding whitespace; tokens have none
		var want string
		if json.Unmarshal(data, &want) != nil {
			_, _ = jsonStringValue(data) // must not panic
			return
		}
		got, ok := jsonStringValue(data)
		if !ok || got != want {
			t.Fatalf("jsonStringValue(%q) = %q, %v; want %q", data, got, ok, want)
		}
		// And our encoder's output decodes back to the same string.
		var back string
		enc := appendJSONString(nil, want)
		if err := json.Unmarshal(enc, &back); err != nil || back != want {
			t.Fatalf("appendJSONString(%q) = %s, decodes to %q, %v", want, enc, back, err)
		}
	})
}

// FuzzMPSkip checks the iterative skipper against the msgpack library on arbitrary bytes.
func FuzzMPSkip(f *testing.F) {
	for _, b := range [][]byte{
		{0x93, 0x01, 0xa1, 'a', 0x81, 0xc0, 0xc3}, {0xc7, 0x02, 0x01, 0xaa, 0xbb}, {0xd8, 0x01},
		{0xdc, 0x00, 0x02, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc4, 0x01, 0xff}, {0xc1},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := mpReader{b: data}
		_, end, ok := r.skip()
		rd := bytes.NewReader(data)
		dec := msgpack.NewDecoder(rd)
		libErr := dec.Skip()
		libEnd := len(data) - rd.Len()
		if ok && libErr == nil && end != libEnd {
			t.Fatalf("skip end %d, library %d for % x", end, libEnd, data)
		}
		if ok && libErr != nil {
			t.Fatalf("skip accepted % x (end %d), library: %v", data, end, libErr)
		}
	})
}
