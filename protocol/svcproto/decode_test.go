package svcproto

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// build encodes a MessagePack byte string with the independent vmihailenco encoder.
func build(t *testing.T, f func(e *msgpack.Encoder)) []byte {
	t.Helper()
	var buf bytes.Buffer
	f(msgpack.NewEncoder(&buf))
	return buf.Bytes()
}

func hexBytes(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			panic(p)
		}
	}
	return b
}

// TestDecodeTolerance decodes non-canonical but valid encodings: every integer width, every str
// width, nil strings, bin16/32, str as bytes, nil collections, unknown ext keys with nested
// values, and extra trailing elements.
func TestDecodeTolerance(t *testing.T) {
	t.Parallel()
	payload := []byte{1, 2, 3}
	tests := []struct {
		name string
		body []byte
		want Message
	}{
		{
			name: "ConnectionData with wide ints and strings",
			body: build(t, func(e *msgpack.Encoder) {
				_ = e.EncodeArrayLen(4)
				_ = e.EncodeInt64(6)
				_ = e.EncodeString("c1")
				_ = e.EncodeBytes(payload)
				_ = e.EncodeMapLen(3)
				_ = e.EncodeInt32(1)
				_ = e.EncodeUint64(1234)
				_ = e.EncodeInt16(5)
				_ = e.EncodeInt64(2)
				_ = e.EncodeUint8(6)
				_ = e.EncodeBool(true)
			}),
			want: ConnectionData{ConnectionID: "c1", Payload: payload,
				Ext: Ext{TracingID: 1234, HasTracingID: true, DataMessageType: DataInvocation, IsPartial: true}},
		},
		{
			name: "str16/str32/bin16/bin32 and array16/map16 headers",
			body: hexBytes(0xdc, 0, 4, 0xcd, 0, 10,
				0xdd, 0, 0, 0, 1, 0xda, 0, 2, "c9",
				0xde, 0, 2, 0xdb, 0, 0, 0, 4, "json", 0xc5, 0, 3, payload, 0xd9, 11, "messagepack", 0xc6, 0, 0, 0, 0,
				0xdf, 0, 0, 0, 0),
			want: BroadcastData{ExcludedConnections: []string{"c9"},
				Payloads: Payloads{{"json", payload}, {"messagepack", []byte{}}}},
		},
		{
			name: "nil strings, nil payload, str payload, nil collections",
			body: hexBytes(0x97, 13, 0xc0, 0xc0, 0x82, 0xa4, "json", 0xc0, 0xa2, "mp", 0xa3, "abc", 0xc0, 0xc0, 0xc0),
			want: GroupBroadcastData{Payloads: Payloads{{"json", []byte{}}, {"mp", []byte("abc")}}},
		},
		{
			name: "unknown ext keys with nested values are skipped",
			body: hexBytes(0x94, 6, 0xa1, "c", 0xc4, 0,
				0x85,
				7, 0x92, 0x81, 0xa1, "k", 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd6, 1, 0, 0, 0, 0,
				0xff, 0xc7, 2, 9, 1, 2, // key -1: ext8
				0xd2, 0x7f, 0xff, 0xff, 0xff, 0xca, 0, 0, 0, 0, // key MaxInt32: float32
				2, 0x64, // ttl is not a ConnectionData member: skipped, not stored
				1, 0x07),
			want: ConnectionData{ConnectionID: "c", Payload: []byte{}, Ext: Ext{TracingID: 7, HasTracingID: true}},
		},
		{
			name: "extra trailing elements are ignored",
			body: hexBytes(0x99, 11, 0xa1, "c", 0xa1, "g", 0x80, 0xc3, 0x90, 0x01, 0xc0, 0xa1, "x"),
			want: JoinGroup{ConnectionID: "c", Group: "g"},
		},
		{
			name: "4-element OpenConnection reads as the 3-element layout",
			body: hexBytes(0x94, 4, 0xa1, "c", 0x82, 0xa1, "r", 0xa1, "a", 0xa1, "r", 0xa1, "b", 0x80),
			want: OpenConnection{ConnectionID: "c", Claims: []Claim{{"r", "a"}, {"r", "b"}}},
		},
		{
			name: "6-element GroupBroadcastData reads as the 5-element layout",
			body: hexBytes(0x96, 13, 0xa1, "g", 0x90, 0x80, 0x81, 4, 0xa1, "f", 0x91, 0xa1, "u"),
			want: GroupBroadcastData{Group: "g", Ext: Ext{Filter: "f"}},
		},
		{
			name: "3-element HandshakeRequest reads as the 2-element layout",
			body: hexBytes(0x93, 1, 1, 2),
			want: HandshakeRequest{Version: 1, Fields: 2},
		},
		{
			name: "8-element HandshakeRequest reads as the 7-element layout",
			body: hexBytes(0x98, 1, 1, 2, 0xa1, "t", 1, 0x80, 0xc3, 0xc0),
			want: HandshakeRequest{Version: 1, ConnectionType: ConnWeak, Target: "t", MigrationLevel: 1,
				AllowStatefulReconnect: true, Fields: 7},
		},
		{
			name: "Ack with nil payload",
			body: hexBytes(0x96, 20, 0xd0, 0xff, 0xd1, 0xff, 0x00, 0xc0, 0x80, 0xc0),
			want: Ack{AckID: -1, Status: -256},
		},
		{
			name: "Ack with empty payload keeps it non-nil",
			body: hexBytes(0x96, 20, 1, 1, 0xa0, 0x80, 0xc4, 0),
			want: Ack{AckID: 1, Status: AckOK, Payload: []byte{}},
		},
		{
			name: "Ping with nil value",
			body: hexBytes(0x93, 3, 0xa4, "echo", 0xc0),
			want: Ping{Values: []string{"echo", ""}},
		},
		{
			name: "ConnectionFlowControl with compact ints and without ext",
			body: hexBytes(0x94, 39, 0xa1, "c", 2, 4),
			want: ConnectionFlowControl{ConnectionID: "c", Target: FlowServer, Op: FlowOffline},
		},
		{
			name: "int32 extremes",
			body: hexBytes(0x94, 23, 0xa1, "g", 0xd2, 0x80, 0, 0, 0, 0x80),
			want: CheckGroupExistenceWithAck{Group: "g", AckID: math.MinInt32},
		},
		{
			name: "uint32 max int32",
			body: hexBytes(0x94, 23, 0xa1, "g", 0xce, 0x7f, 0xff, 0xff, 0xff, 0x80),
			want: CheckGroupExistenceWithAck{Group: "g", AckID: math.MaxInt32},
		},
		{
			name: "ConnectionReconnect",
			body: hexBytes(0x93, 38, 0xa1, "c", 0x80),
			want: ConnectionReconnect{ConnectionID: "c"},
		},
		{
			name: "largest tracing id",
			body: hexBytes(0x94, 11, 0xa1, "c", 0xa1, "g", 0x81, 0x01, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
			want: JoinGroup{ConnectionID: "c", Group: "g", Ext: Ext{TracingID: math.MaxUint64, HasTracingID: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(tt.body)
			if err != nil {
				t.Fatalf("Decode(% x): %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode(% x)\n got %#v\nwant %#v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeUnknownType(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{
		{0x91, 0},
		{0x92, 41, 0xa1, 'x'},
		{0x91, 0xff},                         // -1
		{0x91, 0xcd, 0x01, 0x00},             // 256
		{0x91, 0xd2, 0x7f, 0xff, 0xff, 0xff}, // MaxInt32
		{0x93, 0xcc, 200, 0xc1, 0xc1},        // body after an unknown id is never read
	} {
		m, err := Decode(body)
		if m != nil || err != nil {
			t.Errorf("Decode(% x) = %#v, %v; want nil, nil", body, m, err)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0x81, 1, 1}},
		{"empty array", []byte{0x90}},
		{"type is a string", []byte{0x91, 0xa1, '6'}},
		{"type above int32", []byte{0x91, 0xce, 0x80, 0, 0, 0}},
		{"type truncated", []byte{0x91, 0xcd, 0}},
		{"array longer than data", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 6}},
		{"too few elements", []byte{0x92, 6, 0xa1, 'c'}},
		{"ServiceEvent without ext", []byte{0x95, 22, 0, 0xa0, 0, 0xa0}},
		{"ClientCompletion without ext", hexBytes(0x96, 35, 0xa0, 0xa0, 0xa0, 0xa0, 0xc4, 0)},
		{"missing elements", []byte{0x94, 6, 0xa1, 'c'}},
		{"truncated string", []byte{0x93, 6, 0xa5, 'c', 0xc4, 0}},
		{"truncated bin", []byte{0x93, 6, 0xa1, 'c', 0xc5, 0, 9, 1}},
		{"payload is an int", []byte{0x93, 6, 0xa1, 'c', 0x01}},
		{"connection id is bin", []byte{0x93, 6, 0xc4, 1, 'c', 0xc4, 0}},
		{"string list is a map", []byte{0x93, 10, 0x80, 0x80}},
		{"payloads is an array", []byte{0x93, 10, 0x90, 0x90}},
		{"map longer than data", []byte{0x93, 10, 0x90, 0xdf, 0, 0, 0x10, 0}},
		{"ack id above int32", []byte{0x94, 18, 0xa0, 0xa0, 0xce, 0x80, 0, 0, 0}},
		{"ack id below int32", []byte{0x94, 18, 0xa0, 0xa0, 0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}},
		{"negative tracing id", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x81, 1, 0xff}},
		{"ttl above int32", []byte{0x94, 16, 0xa1, 'u', 0xa1, 'g', 0x81, 2, 0xce, 0x80, 0, 0, 0}},
		{"isPartial not a bool", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x81, 6, 1}},
		{"protocol not a string", []byte{0x96, 4, 0xa1, 'c', 0x80, 0x80, 0xa0, 0x81, 3, 1}},
		{"ext key is a string", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x81, 0xa1, '1', 1}},
		{"ext value truncated", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x81, 9, 0xcb, 0}},
		{"ext value uses reserved c1", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x81, 9, 0xc1}},
		{"ext is an array", []byte{0x94, 6, 0xa1, 'c', 0xc4, 0, 0x90}},
		{"bool is an int", []byte{0x97, 1, 1, 0, 0xa0, 0, 0x80, 0}},
		{"flow control target 0", []byte{0x95, 39, 0xa1, 'c', 0, 1, 0x80}},
		{"flow control op 5", []byte{0x95, 39, 0xa1, 'c', 1, 5, 0x80}},
		{"header values not an array", []byte{0x95, 5, 0xa1, 'c', 0xa0, 0x81, 0xa1, 'h', 0xa1, 'v'}},
		{"claim value is an int", []byte{0x93, 4, 0xa1, 'c', 0x81, 0xa1, 't', 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.body)
			if !errors.Is(err, ErrMalformed) || m != nil {
				t.Errorf("Decode(% x) = %#v, %v; want ErrMalformed", tt.body, m, err)
			}
		})
	}
}

// TestDecodeAliasesBody documents that binary fields alias the body and strings do not.
func TestDecodeAliasesBody(t *testing.T) {
	t.Parallel()
	body := hexBytes(0x94, 6, 0xa1, "c", 0xc4, 2, 7, 8, 0x80)
	m, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	cd := m.(ConnectionData)
	body[4], body[6] = 'x', 9
	if cd.ConnectionID != "c" || cd.Payload[0] != 9 {
		t.Errorf("got %q % x; want the id copied and the payload aliased", cd.ConnectionID, cd.Payload)
	}
	if cap(cd.Payload) != len(cd.Payload) {
		t.Errorf("payload cap %d > len %d: appending to it would overwrite the body", cap(cd.Payload), len(cd.Payload))
	}
}
