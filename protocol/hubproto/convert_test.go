package hubproto

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestJSONToMessagePack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []byte
	}{
		{"zero", `0`, mp(0x00)},
		{"small int", `42`, mp(0x2a)},
		{"uint8", `200`, mp(0xcc, 0xc8)},
		{"uint16", `65535`, mp(0xcd, 0xff, 0xff)},
		{"uint32", `4294967295`, mp(0xce, 0xff, 0xff, 0xff, 0xff)},
		{"int64 max", `9223372036854775807`, mp(0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"uint64 max", `18446744073709551615`, mp(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"beyond uint64", `18446744073709551616`, mpAppendFloat64(nil, 18446744073709551616)},
		{"negative fixint", `-5`, mp(0xfb)},
		{"int8", `-100`, mp(0xd0, 0x9c)},
		{"int64 min", `-9223372036854775808`, mp(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)},
		{"integral float", `2.0`, mp(0x02)},
		{"exponent", `1e3`, mp(0xcd, 0x03, 0xe8)},
		{"negative zero", `-0.0`, mp(0x00)},
		{"fraction", `1.5`, mp(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)},
		{"big exponent", `1e300`, mpAppendFloat64(nil, 1e300)},
		{"overflow", `1e400`, mpAppendFloat64(nil, math.Inf(1))},
		{"string", `"xyz"`, mp(0xa3, "xyz")},
		{"escaped string", `"a\nb\u00e9\ud83d\ude00"`, mp(0xa9, "a\nb\u00e9\U0001F600")},
		{"lone surrogate", `"\ud800"`, mp(0xa3, "\uFFFD")},
		{"str8", `"` + strings.Repeat("x", 40) + `"`, mp(0xd9, 40, strings.Repeat("x", 40))},
		{"true", `true`, mp(0xc3)},
		{"false", `false`, mp(0xc2)},
		{"null", ` null `, mp(0xc0)},
		{"empty array", `[]`, mp(0x90)},
		{"empty object", `{ }`, mp(0x80)},
		{"array", `[1, "a", [true], {}]`, mp(0x94, 0x01, 0xa1, "a", 0x91, 0xc3, 0x80)},
		{"object keeps order", `{"b":1,"a":{"c":null}}`, mp(0x82, 0xa1, "b", 0x01, 0xa1, "a", 0x81, 0xa1, "c", 0xc0)},
		{"escaped key", `{"\u0061":1}`, mp(0x81, 0xa1, "a", 0x01)},
		{"duplicate key last wins", `{"a":1,"b":2,"a":[3]}`, mp(0x82, 0xa1, "b", 0x02, 0xa1, "a", 0x91, 0x03)},
		{"duplicate escaped key", `{"a":1,"\u0061":2}`, mp(0x81, 0xa1, "a", 0x02)},
		{"triple duplicate", `{"a":1,"a":2,"a":3}`, mp(0x81, 0xa1, "a", 0x03)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := JSONToMessagePack(Raw(tt.in))
			if err != nil {
				t.Fatalf("JSONToMessagePack: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("JSONToMessagePack(%s) = % x, want % x", tt.in, got, tt.want)
			}
		})
	}
}

func TestJSONToMessagePackContainers(t *testing.T) {
	t.Parallel()
	// Sizes that need 16- and 32-bit container headers, and many duplicate keys (map index path).
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 70000 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("1")
	}
	sb.WriteString("]")
	got, err := JSONToMessagePack(Raw(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:5], []byte{0xdd, 0, 1, 0x11, 0x70}) || len(got) != 5+70000 {
		t.Fatalf("array32 header % x len %d", got[:5], len(got))
	}

	sb.Reset()
	sb.WriteString("{")
	for i := range 40 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"k` + string(rune('a'+i%20)) + `":` + string(rune('0'+i%10)))
	}
	sb.WriteString("}")
	got, err = JSONToMessagePack(Raw(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 20 || !bytes.Equal(got[:3], []byte{0xde, 0, 20}) {
		t.Fatalf("deduplicated map has %d keys, header % x", len(m), got[:3])
	}
	for i := 20; i < 40; i++ { // the second occurrence wins
		k := "k" + string(rune('a'+i%20))
		if m[k] != int8(i%10) {
			t.Errorf("%s = %#v, want %d", k, m[k], i%10)
		}
	}
}

// The converter must agree with a generic decode of the same JSON through the msgpack library.
func TestJSONToMessagePackSemantics(t *testing.T) {
	t.Parallel()
	in := `{"s":"x","n":-12,"f":0.25,"b":[true,false,null],"o":{"nested":[1,[2,[3]]]}}`
	got, err := JSONToMessagePack(Raw(in))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := msgpack.Unmarshal(got, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"s": "x", "n": int8(-12), "f": 0.25,
		"b": []any{true, false, nil},
		"o": map[string]any{"nested": []any{int8(1), []any{int8(2), []any{int8(3)}}}},
	}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("decoded %#v\nwant %#v", v, want)
	}
}

func TestJSONToMessagePackRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, ` `, `{`, `[1,]`, `"\x01"`, `1 2`, `{"a"}`, `nul`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001)} {
		if _, err := JSONToMessagePack(Raw(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("JSONToMessagePack(%.20q) err = %v, want ErrMalformed", in, err)
		}
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	got, err := JSONToMessagePack(Raw(deep))
	if err != nil || len(got) != 10000 {
		t.Errorf("depth 10000: len %d, %v", len(got), err)
	}
}
