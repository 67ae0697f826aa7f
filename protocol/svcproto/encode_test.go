package svcproto

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/protocol"
	"github.com/vmihailenco/msgpack/v5"
)

// TestPrimitivesMatchReference compares the hand-written encoders with vmihailenco/msgpack, whose
// EncodeInt/EncodeUint/EncodeString/EncodeBytes/Encode*Len pick the same smallest forms as
// MessagePack-CSharp, around every size-class boundary.
func TestPrimitivesMatchReference(t *testing.T) {
	t.Parallel()
	ints := []int64{0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, math.MaxInt32, math.MaxInt32 + 1,
		math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, -1, -31, -32, -33, -127, -128, -129,
		-32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, v := range ints {
		want := build(t, func(e *msgpack.Encoder) { _ = e.EncodeInt(v) })
		if got := appendInt(nil, v); !bytes.Equal(got, want) {
			t.Errorf("appendInt(%d) = % x, want % x", v, got, want)
		}
		d := decoder{b: want}
		u, neg := d.rawInt()
		if d.err != nil || int64(u) != v || neg != (v < 0) || d.i != len(want) {
			t.Errorf("rawInt(% x) = %d, %v, %v", want, u, neg, d.err)
		}
	}
	for _, v := range []uint64{0, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		want := build(t, func(e *msgpack.Encoder) { _ = e.EncodeUint(v) })
		if got := appendUint(nil, v); !bytes.Equal(got, want) {
			t.Errorf("appendUint(%d) = % x, want % x", v, got, want)
		}
		d := decoder{b: want}
		if got := d.uint64(); d.err != nil || got != v {
			t.Errorf("uint64(% x) = %d, %v", want, got, d.err)
		}
	}
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("s", n)
		want := build(t, func(e *msgpack.Encoder) { _ = e.EncodeString(s) })
		if got := appendStr(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendStr(len %d) header % x, want % x", n, got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
		d := decoder{b: want}
		if got := d.str(); d.err != nil || got != s {
			t.Errorf("str(len %d): len %d, %v", n, len(got), d.err)
		}
		p := []byte(s)
		want = build(t, func(e *msgpack.Encoder) { _ = e.EncodeBytes(p) })
		if got := appendBin(nil, p); !bytes.Equal(got, want) {
			t.Errorf("appendBin(len %d) header % x, want % x", n, got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
		d = decoder{b: want}
		if got, _ := d.bin(); d.err != nil || !bytes.Equal(got, p) {
			t.Errorf("bin(len %d): len %d, %v", n, len(got), d.err)
		}
	}
	for _, n := range []int{0, 15, 16, 65535, 65536} {
		want := build(t, func(e *msgpack.Encoder) { _ = e.EncodeArrayLen(n) })
		if got := appendArrayLen(nil, n); !bytes.Equal(got, want) {
			t.Errorf("appendArrayLen(%d) = % x, want % x", n, got, want)
		}
		want = build(t, func(e *msgpack.Encoder) { _ = e.EncodeMapLen(n) })
		if got := appendMapLen(nil, n); !bytes.Equal(got, want) {
			t.Errorf("appendMapLen(%d) = % x, want % x", n, got, want)
		}
	}
}

func TestAppendLayouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Message
		want []byte
	}{
		{"nullable strings written as nil", AccessKeyResponse{},
			hexBytes(0x96, 29, 0xc0, 0xc0, 0xc0, 0xc0, 0x80)},
		{"LeaveGroup all groups", LeaveGroup{ConnectionID: "c"}, hexBytes(0x94, 12, 0xa1, "c", 0xc0, 0x80)},
		{"UserLeaveGroup all groups", UserLeaveGroup{UserID: "u"}, hexBytes(0x94, 17, 0xa1, "u", 0xc0, 0x80)},
		{"LeaveGroupWithAck all groups", LeaveGroupWithAck{ConnectionID: "c", AckID: 3},
			hexBytes(0x95, 19, 0xa1, "c", 0xc0, 3, 0x80)},
		{"UserLeaveGroupWithAck all groups", UserLeaveGroupWithAck{UserID: "u", AckID: 300},
			hexBytes(0x95, 27, 0xa1, "u", 0xc0, 0xcd, 1, 0x2c, 0x80)},
		{"JoinGroup empty group stays a string", JoinGroup{}, hexBytes(0x94, 11, 0xa0, 0xa0, 0x80)},
		{"GroupMemberQuery first page", GroupMemberQuery{Group: "g", AckID: 1, Max: 100},
			hexBytes(0x96, 40, 0x80, 0xa1, "g", 1, 100, 0xc0)},
		{"HandshakeResponse recommended reply", HandshakeResponse{ConnectionID: "cid"},
			hexBytes(0x94, 2, 0xa0, 0x80, 0xa3, "cid")},
		{"HandshakeRequest 6 fields", HandshakeRequest{Version: 1, ConnectionType: ConnOnDemand, Target: "t", Fields: 6},
			hexBytes(0x96, 1, 1, 1, 0xa1, "t", 0, 0x80)},
		{"HandshakeRequest 2 fields", HandshakeRequest{Version: 1, Fields: 2}, hexBytes(0x92, 1, 1)},
		{"empty ping", Ping{}, hexBytes(0x91, 3)},
		{"ping keys", Ping{Values: []string{"status", "1"}}, hexBytes(0x93, 3, 0xa6, "status", 0xa1, "1")},
		{"Ack negative values", Ack{AckID: -1, Status: -200}, hexBytes(0x95, 20, 0xff, 0xd1, 0xff, 0x38, 0xa0, 0x80)},
		{"Ack empty payload keeps 6 elements", Ack{AckID: 1, Status: AckOK, Payload: []byte{}},
			hexBytes(0x96, 20, 1, 1, 0xa0, 0x80, 0xc4, 0)},
		{"ServiceError", ServiceError{}, hexBytes(0x92, 15, 0xa0)},
		{"ConnectionData all ext members in key order",
			ConnectionData{ConnectionID: "c", Ext: Ext{IsPartial: true, DataMessageType: DataClose, TracingID: 1, HasTracingID: true}},
			hexBytes(0x94, 6, 0xa1, "c", 0xc4, 0, 0x83, 1, 1, 5, 4, 6, 0xc3)},
		{"UserJoinGroupWithAck zero ttl is written when present",
			UserJoinGroupWithAck{UserID: "u", Group: "g", Ext: Ext{HasTTL: true}},
			hexBytes(0x95, 26, 0xa1, "u", 0xa1, "g", 0, 0x81, 2, 0)},
		{"UserJoinGroup negative ttl", UserJoinGroup{UserID: "u", Group: "g", Ext: Ext{TTL: -1, HasTTL: true}},
			hexBytes(0x94, 16, 0xa1, "u", 0xa1, "g", 0x81, 2, 0xff)},
		{"filter on broadcast", BroadcastData{Ext: Ext{Filter: "f"}}, hexBytes(0x94, 10, 0x90, 0x80, 0x81, 4, 0xa1, "f")},
		{"ext members a type lacks are dropped",
			Ack{AckID: 1, Ext: Ext{TracingID: 5, HasTracingID: true, Protocol: "json", TTL: 1, HasTTL: true}},
			hexBytes(0x95, 20, 1, 0, 0xa0, 0x80)},
		{"ttl and data members dropped from JoinGroup",
			JoinGroup{ConnectionID: "c", Group: "g", Ext: Ext{HasTTL: true, DataMessageType: DataOther, IsPartial: true, Filter: "f"}},
			hexBytes(0x94, 11, 0xa1, "c", 0xa1, "g", 0x80)},
		{"flow control uses int32", ConnectionFlowControl{ConnectionID: "c", Target: FlowClient, Op: FlowResume},
			hexBytes(0x95, 39, 0xa1, "c", 0xd2, 0, 0, 0, 1, 0xd2, 0, 0, 0, 3, 0x80)},
		{"duplicate claims keep order", OpenConnection{ConnectionID: "c", Claims: []Claim{{"role", "a"}, {"role", "b"}}},
			hexBytes(0x96, 4, 0xa1, "c", 0x82, 0xa4, "role", 0xa1, "a", 0xa4, "role", 0xa1, "b", 0x80, 0xa0, 0x80)},
		{"16 excluded connections use array16",
			BroadcastData{ExcludedConnections: make([]string, 16)},
			append(append(hexBytes(0x94, 10, 0xdc, 0, 16), bytes.Repeat([]byte{0xa0}, 16)...), 0x80, 0x80)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Append(nil, tt.m)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Append\n got % x\nwant % x", got, tt.want)
			}
			if err := wellFormed(got); err != nil {
				t.Errorf("reference decoder: % x: %v", got, err)
			}
		})
	}
}

func TestAppendInvalid(t *testing.T) {
	t.Parallel()
	type foreign struct{ Ping }
	tests := []struct {
		name string
		m    Message
	}{
		{"nil", nil},
		{"nil pointer", (*ConnectionData)(nil)},
		{"foreign implementation", foreign{}},
		{"ack id above int32", JoinGroupWithAck{AckID: math.MaxInt32 + 1}},
		{"ack id below int32", Ack{AckID: math.MinInt32 - 1}},
		{"ack status above int32", Ack{Status: math.MaxInt32 + 1}},
		{"max above int32", GroupMemberQuery{Max: math.MaxInt32 + 1}},
		{"service event kind", ServiceEvent{Kind: math.MaxInt32 + 1}},
		{"handshake version", HandshakeRequest{Version: math.MaxInt32 + 1}},
		{"handshake fields 3", HandshakeRequest{Fields: 3}},
		{"handshake fields 8", HandshakeRequest{Fields: 8}},
		{"flow control target 0", ConnectionFlowControl{Op: FlowPause}},
		{"flow control op 5", ConnectionFlowControl{Target: FlowServer, Op: 5}},
		{"close ack id", &CloseUserConnectionsWithAck{AckID: math.MinInt32 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := []byte("keep")
			got, err := Append(dst, tt.m)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Append err = %v, want ErrInvalid", err)
			}
			if string(got) != "keep" {
				t.Errorf("Append changed dst to %q", got)
			}
			got, err = AppendFrame(dst, tt.m)
			if !errors.Is(err, ErrInvalid) || string(got) != "keep" {
				t.Errorf("AppendFrame = %q, %v; want dst unchanged, ErrInvalid", got, err)
			}
		})
	}
}

// TestAppendFramePrefixSizes crosses every VarInt size class with messages whose size hint is
// exact-ish (ConnectionData) and ones without a hint (OpenConnection), so both the in-place and
// the moving paths run.
func TestAppendFramePrefixSizes(t *testing.T) {
	t.Parallel()
	var msgs []Message
	for _, n := range []int{0, 100, 117, 118, 119, 120, 121, 122, 127, 128, 16370, 16376, 16377, 16378, 16384, 2097140, 2097150} {
		p := bytes.Repeat([]byte{7}, n)
		msgs = append(msgs,
			ConnectionData{ConnectionID: "c", Payload: p},
			ConnectionData{ConnectionID: "c", Payload: p, Ext: Ext{TracingID: math.MaxUint64, HasTracingID: true, IsPartial: true}},
			OpenConnection{ConnectionID: "c", QueryString: string(p)},
			BroadcastData{Payloads: Payloads{{"json", p}}, ExcludedConnections: []string{strings.Repeat("x", 40)}},
			Ack{Payload: p, Message: strings.Repeat("m", 300)},
		)
	}
	for _, m := range append(msgs, pointerTo(msgs[len(msgs)-5]), pointerTo(msgs[len(msgs)-2])) {
		body, err := Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		want := protocol.AppendFrame([]byte{0xee}, body)
		got, err := AppendFrame([]byte{0xee}, m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%T with %d-byte body: AppendFrame differs from prefix+Append", m, len(body))
		}
	}
}

// TestAppendAllocs is not parallel: AllocsPerRun counts allocations process-wide.
func TestAppendAllocs(t *testing.T) {
	cd, bd := benchConnectionData(), benchBroadcastData()
	open := OpenConnection{ConnectionID: "c", QueryString: strings.Repeat("q", 200)}
	buf := make([]byte, 0, 4096)
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Append ConnectionData", func() { buf, _ = Append(buf[:0], cd) }},
		{"AppendFrame ConnectionData", func() { buf, _ = AppendFrame(buf[:0], cd) }},
		{"Append *ConnectionData", func() { buf, _ = Append(buf[:0], &cd) }},
		{"Append BroadcastData", func() { buf, _ = Append(buf[:0], bd) }},
		{"AppendFrame BroadcastData", func() { buf, _ = AppendFrame(buf[:0], bd) }},
		{"AppendFrame OpenConnection (moving prefix)", func() { buf, _ = AppendFrame(buf[:0], open) }},
		{"Payloads.Get", func() { _, _ = bd.Payloads.Get("MessagePack") }},
	} {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tt.name, n)
		}
	}
}

func TestLegacy(t *testing.T) {
	t.Parallel()
	e := Ext{TracingID: 1, HasTracingID: true, TTL: 2, HasTTL: true, Protocol: "json", Filter: "f",
		DataMessageType: DataInvocation, IsPartial: true}
	want := Ext{TracingID: 1, HasTracingID: true, TTL: 2, HasTTL: true, Protocol: "json", Filter: "f"}
	if got := e.Legacy(); got != want {
		t.Errorf("Legacy() = %+v, want %+v", got, want)
	}
	b, _ := Append(nil, ConnectionData{ConnectionID: "c", Ext: e.Legacy()})
	if want := hexBytes(0x94, 6, 0xa1, "c", 0xc4, 0, 0x81, 1, 1); !bytes.Equal(b, want) {
		t.Errorf("legacy ConnectionData = % x, want % x", b, want)
	}
}

func TestGetters(t *testing.T) {
	t.Parallel()
	p := Payloads{{"json", []byte("j")}, {"MessagePack", []byte("m")}, {"messagepack", []byte("second")}}
	if got, ok := p.Get("messagepack"); !ok || string(got) != "m" {
		t.Errorf("Payloads.Get(messagepack) = %q, %v", got, ok)
	}
	if got, ok := p.Get("JSON"); !ok || string(got) != "j" {
		t.Errorf("Payloads.Get(JSON) = %q, %v", got, ok)
	}
	if _, ok := p.Get("blazorpack"); ok {
		t.Error("Payloads.Get(blazorpack) found")
	}
	h := Headers{{"X-Forwarded-For", []string{"1.2.3.4"}}, {"asrs-migrate-from", []string{"s1"}}}
	if got := h.Get("Asrs-Migrate-From"); len(got) != 1 || got[0] != "s1" {
		t.Errorf("Headers.Get = %q", got)
	}
	if got := h.Get("Asrs-Migrate-To"); got != nil {
		t.Errorf("Headers.Get(missing) = %q", got)
	}
	ping := Ping{Values: []string{"status", "1", "echo", "x", "odd"}}
	for _, tt := range []struct {
		key, want string
		ok        bool
	}{{"status", "1", true}, {"echo", "x", true}, {"odd", "", false}, {"1", "", false}, {"missing", "", false}} {
		if got, ok := ping.Get(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Ping.Get(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	dup := Ping{Values: []string{"a", "1", "a", "2"}}
	if got, _ := dup.Get("a"); got != "1" {
		t.Errorf("Ping.Get first match = %q", got)
	}
}

func TestMessageTypeString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		t    MessageType
		want string
	}{{TypeHandshakeRequest, "HandshakeRequest"}, {TypeConnectionData, "ConnectionData"},
		{TypeGroupMemberQuery, "GroupMemberQuery"}, {0, "MessageType(0)"}, {41, "MessageType(41)"}, {255, "MessageType(255)"}} {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("MessageType(%d).String() = %q, want %q", tt.t, got, tt.want)
		}
	}
	for id := TypeHandshakeRequest; id <= maxKnownType; id++ {
		if strings.HasPrefix(id.String(), "MessageType(") {
			t.Errorf("type %d has no name", id)
		}
	}
}

// wellFormed checks with the independent vmihailenco decoder that b is exactly one MessagePack value.
func wellFormed(b []byte) error {
	r := bytes.NewReader(b)
	if err := msgpack.NewDecoder(r).Skip(); err != nil {
		return err
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d trailing bytes", r.Len())
	}
	return nil
}
