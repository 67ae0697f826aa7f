package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// Parser-level tests of the REST API (filter, bodies, MessagePack results); the HTTP behaviour
// is covered by rest_test.go.

func TestODataFilter(t *testing.T) {
	t.Parallel()
	groups := map[string]map[string]bool{
		"c1": {"g1": true, "vip": true},
		"c2": {"g1": true},
		"c3": {},
	}
	subjects := []filterSubject{
		{connID: "c1", userID: "listener-1"},
		{connID: "c2", userID: "bob"},
		{connID: "c3"}, // anonymous
	}
	for i := range subjects {
		id := subjects[i].connID
		subjects[i].inGroup = func(g string) bool { return groups[id][g] }
	}
	for _, tc := range []struct {
		filter string
		want   string // ids of matching subjects
	}{
		{"startswith(userId, 'listener-')", "c1"},
		{"userId eq 'bob'", "c2"},
		{"UserId EQ 'bob'", "c2"},
		{"userId ne 'bob'", "c1 c3"},
		{"userId eq null", "c3"},
		{"null eq userId", "c3"},
		{"userId ne null", "c1 c2"},
		{"connectionId in ('c1', 'c3')", "c1 c3"},
		{"userId in ('bob', null)", "c2 c3"},
		{"'g1' in groups", "c1 c2"},
		{"'g1' in (groups)", "c1 c2"},
		{"'g1' in groups and not ('vip' in groups)", "c2"},
		{"userId in groups", ""},
		{"length(userId) gt 3", "c1"},
		{"length(userId) ge 3 and length(userId) le 3", "c2"},
		{"length(userId) lt 100", "c1 c2"},
		{"endswith(userId, '-1') or connectionId eq 'c3'", "c1 c3"},
		{"not endswith(userId, 'b')", "c1 c3"},
		{"contains(userId, 'ste')", "c1"},
		{"indexof(userId, 'o') eq 1", "c2"},
		{"tolower('BOB') eq userId", "c2"},
		{"toupper(userId) eq 'BOB'", "c2"},
		{"trim('  bob ') eq userId", "c2"},
		{"substring(userId, 0, 3) eq 'lis'", "c1"},
		{"substring(userId, 9) eq '1'", "c1"},
		{"concat(userId, '!') eq 'bob!'", "c2"},
		{"userId gt 'a' and userId lt 'c'", "c2"},
		{"true", "c1 c2 c3"},
		{"false or (connectionId eq 'c2')", "c2"},
		{"((userId eq 'bob'))", "c2"},
		{"userId eq 'it''s'", ""},
		{"startswith(userId, 'b') eq true", "c2"},
		{"length(userId) eq -1", ""},
		{"connectionId eq 'c1' or connectionId eq 'c2' and userId eq 'nobody'", "c1"},
	} {
		f, err := parseODataFilter(tc.filter)
		if err != nil {
			t.Errorf("%q: %v", tc.filter, err)
			continue
		}
		var got []string
		for _, s := range subjects {
			if f.match(s) {
				got = append(got, s.connID)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q matched %v, want %q", tc.filter, got, tc.want)
		}
	}
}

func TestODataFilterErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ filter, msg string }{
		{"", "empty filter"},
		{"userId", "expected a bool"},
		{"userId eq", "expected a value"},
		{"userId eq 'a' extra", "unexpected extra"},
		{"name eq 'a'", "unknown identifier"},
		{"userId eq 1", "compares string with int"},
		{"not length(userId) gt 5", "'not' needs a bool"},
		{"length(groups) gt 1", "length(groups) is not supported"},
		{"groups eq 'a'", "cannot compare a collection"},
		{"'a' in userId", "parenthesised list or groups"},
		{"userId in ('a', 1)", "compares string with int"},
		{"startswith(userId)", "takes 2 argument"},
		{"startswith(userId, 1)", "must be string"},
		{"true gt false", "cannot order bool"},
		{"userId eq 'open", "unterminated string"},
		{"userId eq 99999999999999999999", "out of range"},
		{"userId eq #", "unexpected"},
		{"(userId eq 'a'", "expected ')'"},
		{"userId eq 'a' and 3", "needs bool operands"},
		{strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100), "nested deeper"},
		{strings.Repeat("true or ", 2000) + "true", "more than"},
	} {
		_, err := parseODataFilter(tc.filter)
		if err == nil || !errors.Is(err, errFilter) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one containing %q", tc.filter, err, tc.msg)
		}
	}
}

func FuzzODataFilter(f *testing.F) {
	for _, s := range []string{
		"startswith(userId, 'listener-')", "userId in ('a', 'b') and 'g' in groups",
		"not (length(userId) gt 5) or connectionId eq null", "substring(userId, 1, 2) eq 'x'",
		"(((true)))", "userId eq 'it''s'", "indexof(concat(userId, 'x'), 'x') ge -1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := parseODataFilter(s)
		if err != nil {
			if !errors.Is(err, errFilter) {
				t.Fatalf("error %v does not wrap errFilter", err)
			}
			return
		}
		for _, subj := range []filterSubject{
			{connID: "c", userID: "u", inGroup: func(string) bool { return true }},
			{connID: "c"},
		} {
			flt.match(subj)
		}
	})
}

func TestParsePayloadJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, target, args, err string
	}{
		{`{"target":"m","arguments":["a",1]}`, "m", `["a",1]`, ""},
		{`{"Target":"m","Arguments":[{"x": [1, 2]}]}`, "m", `[{"x":[1,2]}]`, ""},
		{`{"TARGET":"m"}`, "m", `[]`, ""},
		{`{"target":"m","arguments":null}`, "m", `[]`, ""},
		{`{"target":"m","arguments":[null]}`, "m", `[null]`, ""},
		{` `, "", "", textMessageRequired},
		{`null`, "", "", textMessageRequired},
		{`{"arguments":[]}`, "", "", "Target field is required"},
		{`{"target":""}`, "", "", "minimum length"},
		{`{"target":5}`, "", "", "not a JSON PayloadMessage"},
		{`{"target":"m","arguments":"x"}`, "", "", "not a JSON PayloadMessage"},
		{`[1]`, "", "", "not a JSON PayloadMessage"},
		{`{"target":"m"} x`, "", "", "not a JSON PayloadMessage"},
	} {
		p, err := parsePayloadJSON([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(payloadErrorText(err), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		args, _ := json.Marshal(p.Arguments)
		if p.Target != tc.target || string(args) != tc.args {
			t.Errorf("%s: got %q %s", tc.body, p.Target, args)
		}
	}
}

// TestInvocationPayloadsGolden pins the bytes a REST send delivers to JSON and MessagePack
// clients.
func TestInvocationPayloadsGolden(t *testing.T) {
	t.Parallel()
	p, err := parsePayloadJSON([]byte(`{"Target":"hi","Arguments":["a",1,{"k":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := invocationPayloads(p)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := pl.Get("JSON")
	if want := `{"type":1,"target":"hi","arguments":["a",1,{"k":true}]}` + "\x1e"; string(j) != want {
		t.Errorf("json frame %q, want %q", j, want)
	}
	m, _ := pl.Get("messagepack")
	// [1, {}, nil, "hi", ["a", 1, {"k": true}], []] with its VarInt length prefix.
	want := []byte{0x10, 0x96, 0x01, 0x80, 0xc0, 0xa2, 'h', 'i', 0x93, 0xa1, 'a', 0x01, 0x81, 0xa1, 'k', 0xc3, 0x90}
	if !bytes.Equal(m, want) {
		t.Errorf("messagepack frame % x, want % x", m, want)
	}
	if b, _ := pl.Get("blazorpack"); !bytes.Equal(b, m) {
		t.Error("blazorpack must share the MessagePack frame")
	}
}

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePayloadMap(t *testing.T) {
	t.Parallel()
	jf := []byte(`{"type":1,"target":"m","arguments":[]}` + "\x1e")
	mf, _ := hubproto.MessagePack().Append(nil, &hubproto.Invocation{Target: "m"})
	p, err := parsePayloadMap(mustMsgpack(t, map[string][]byte{"json": jf, "messagepack": mf}))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := p.Get("json"); !bytes.Equal(b, jf) {
		t.Errorf("json %q", b)
	}
	if b, _ := p.Get("blazorpack"); !bytes.Equal(b, mf) {
		t.Errorf("blazorpack %q", b)
	}
	for name, body := range map[string][]byte{
		"empty":       nil,
		"not a map":   mustMsgpack(t, []string{"json"}),
		"empty map":   mustMsgpack(t, map[string][]byte{}),
		"bad json":    mustMsgpack(t, map[string][]byte{"json": []byte(`{"type":1}`)}),
		"bad msgpack": mustMsgpack(t, map[string][]byte{"messagepack": {0x05, 0x91}}),
		"int value":   mustMsgpack(t, map[string]int{"json": 1}),
		"trailing":    append(mustMsgpack(t, map[string][]byte{"json": jf}), 0xc0),
	} {
		if _, err := parsePayloadMap(body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzPayloadJSON(f *testing.F) {
	for _, s := range []string{`{"target":"m","arguments":["a",1,{"b":[null,true]}]}`, `{"Target":"x"}`, `{"target":"m","arguments":[1e400]}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayloadJSON(b)
		if err != nil {
			return
		}
		pl, err := invocationPayloads(p)
		if err != nil {
			return // e.g. numbers MessagePack cannot hold
		}
		for _, proto := range []string{"json", "messagepack"} {
			frame, _ := pl.Get(proto)
			codec, _ := hubproto.CodecFor(proto)
			msg, _, rest, err := codec.Cut(frame, len(frame))
			if err != nil || len(rest) != 0 {
				t.Fatalf("%s frame %q does not cut: %v", proto, frame, err)
			}
			m, err := codec.Decode(msg)
			if err != nil {
				t.Fatalf("%s frame %q does not decode: %v", proto, frame, err)
			}
			inv := m.(hubproto.Invocation)
			if inv.Target != p.Target || len(inv.Arguments) != len(p.Arguments) {
				t.Fatalf("%s round trip: %+v", proto, inv)
			}
		}
	})
}

func FuzzPayloadMap(f *testing.F) {
	jf := []byte(`{"type":1,"target":"m","arguments":[]}` + "\x1e")
	f.Add(mustMsgpack(f, map[string][]byte{"json": jf}))
	f.Add(mustMsgpack(f, map[string][]byte{"messagepack": {0x03, 0x91, 0x01, 0x02}, "x": {1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayloadMap(b)
		if err != nil {
			return
		}
		for _, e := range p {
			if codec, ok := hubproto.CodecFor(e.Protocol); ok && !wholeFrames(codec, e.Data) {
				t.Fatalf("accepted partial %s frames %q", e.Protocol, e.Data)
			}
		}
	})
}

func TestMsgpackToJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{true, `true`},
		{int64(-5), `-5`},
		{int64(-300), `-300`},
		{uint64(1 << 63), `9223372036854775808`},
		{1.5, `1.5`},
		{float32(0.25), `0.25`},
		{1e300, `1e+300`},
		{"a\"b\n", `"a\"b\n"`},
		{[]byte{1, 2, 3}, `"AQID"`},
		{[]any{1, "x", []any{}}, `[1,"x",[]]`},
		{map[string]any{"k": map[string]any{"n": nil}}, `{"k":{"n":null}}`},
		{map[int]string{7: "seven"}, `{"7":"seven"}`},
	} {
		got, err := msgpackToJSON(nil, mustMsgpack(t, tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%#v: %s %v, want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{{}, {0xc1}, {0x92, 0x01}, {0xd9, 0x05, 'a'}, {0x01, 0x02}, {0xdf, 0xff, 0xff, 0xff, 0xff}} {
		if _, err := msgpackToJSON(nil, bad); err == nil {
			t.Errorf("% x accepted", bad)
		}
	}
}

func FuzzMsgpackToJSON(f *testing.F) {
	f.Add([]byte{0x82, 0xa1, 'a', 0x01, 0x01, 0x93, 0xc0, 0xc3, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xd6, 0xff, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := msgpackToJSON(nil, b)
		if err == nil && !json.Valid(out) {
			t.Fatalf("% x converted to invalid JSON %q", b, out)
		}
	})
}
