package hubproto

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONValid(t *testing.T) {
	t.Parallel()
	cases := []string{
		``, ` `, `{}`, `[]`, `{ }`, `[ ]`, `1`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-`, `1e`,
		`-1.5e-10`, `true`, `tru`, `truex`, `false`, `null`, `nul`, `"a"`, `"a`, `"\u00e9"`, `"\u00g9"`, `"\x"`,
		`"\/"`, "\"\x01\"", "\"\xff\"", `{"a":1}`, `{"a" : 1 , "b":[1,2,{"c":null}]}`, `{"a":1,}`, `{,}`, `[1,]`,
		`[,1]`, `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `[1}`, `{"a":1]`, `{}}`, `[]]`, `{} {}`, ` [1] `, "\t\n\r1\r",
		`[[[[]]]]`, `[[[[]]]`, `{"a":{"b":{"c":[]}}}`, `"\ud800"`, `[true,false,null]`, `[truefalse]`, `1 x`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	}
	for _, c := range cases {
		if got, want := jsonValid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("jsonValid(%.30q) = %v, json.Valid = %v", c, got, want)
		}
	}
}

func FuzzJSONValid(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x\n",true,null,{}]}`, `[1,]`, `"\u12"`, `{"a" 1}`, `-01`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := jsonValid(data), json.Valid(data); got != want {
			t.Fatalf("jsonValid(%q) = %v, json.Valid = %v", data, got, want)
		}
	})
}

func TestUnescape(t *testing.T) {
	t.Parallel()
	cases := []string{
		`""`, `"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u0041\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`,
		`"\ud83dx"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`, "\"a\xffb\"", "\"\xe4\xb8\"", `"\u2028"`,
	}
	for _, c := range cases {
		var want string
		if err := json.Unmarshal([]byte(c), &want); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got, ok := jsonStringValue([]byte(c)); !ok || got != want {
			t.Errorf("jsonStringValue(%s) = %q, %v; want %q", c, got, ok, want)
		}
	}
	for _, bad := range []string{``, `"`, `x`, `"a"b`, `"a\"`} {
		if _, ok := jsonStringValue([]byte(bad)); ok {
			t.Errorf("jsonStringValue(%s) accepted", bad)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", `""`},
		{"abc", `"abc"`},
		{"a\"b\\c", `"a\"b\\c"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x1f\x7f", `"\u0000\u001f` + "\x7f" + `"`},
		{"<&>", `"<&>"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"é中😀", `"é中😀"`},
		{"a\xffb\xe4\xb8", `"a\ufffdb\ufffd\ufffd"`},
	}
	for _, c := range cases {
		if got := string(appendJSONString(nil, c.in)); got != c.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestSkipJSONValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in  string
		end int
		ok  bool
	}{
		{`"a\"b" x`, 6, true}, {`"a\\" x`, 5, true}, {`"a\\\"" x`, 7, true}, {`{"a":"}"} x`, 9, true},
		{`[1,[2],"]"]x`, 11, true}, {`123,`, 3, true}, {`true}`, 4, true}, {`"abc`, 0, false}, {`[1,2`, 0, false},
		{``, 0, false}, {`,`, 0, false}, {`}`, 0, false},
	}
	for _, c := range cases {
		end, ok := skipJSONValue([]byte(c.in), 0)
		if end != c.end || ok != c.ok {
			t.Errorf("skipJSONValue(%s) = %d, %v; want %d, %v", c.in, end, ok, c.end, c.ok)
		}
	}
}

func TestParseJSONInt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"-7", -7, true}, {"123456789012345678", 123456789012345678, true},
		{"9223372036854775807", 9223372036854775807, true}, {"-9223372036854775808", -9223372036854775808, true},
		{"9223372036854775808", 0, false}, {"1.0", 1, true}, {"1e2", 100, true}, {"1.5", 0, false},
		{"", 0, false}, {"x", 0, false}, {"-", 0, false}, {"NaN", 0, false}, {"Inf", 0, false},
	}
	for _, c := range cases {
		n, ok := parseJSONInt([]byte(c.in))
		if n != c.n || ok != c.ok {
			t.Errorf("parseJSONInt(%s) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.ok)
		}
	}
}

func TestHasStringSpecial(t *testing.T) {
	t.Parallel()
	special := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' }
	for pos := range 8 {
		for v := range 256 {
			for _, fill := range []byte{'a', 0xff, 0x20, 0x80} {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(v)
				x := uint64(0)
				for i := 7; i >= 0; i-- {
					x = x<<8 | uint64(w[i])
				}
				want := special(byte(v)) || special(fill)
				if got := hasStringSpecial(x); got != want {
					t.Fatalf("hasStringSpecial(% x) = %v", w, got)
				}
			}
		}
	}
}
