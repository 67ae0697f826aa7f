package router

import (
	"bytes"
	"maps"
	"testing"
	"time"
)

// sendWorld is the hub every send case starts from:
//
//	a1, a2  alice (json)      b1  bob (messagepack)     c1  carol (json)
//	n1, n2  anonymous (json)
//	group "direct": a1, b1, n1 joined directly
//	group "users":  alice as a user-level member (no TTL)
//	group "mixed":  a1 and n2 directly, plus alice as a user-level member (a1 is in it twice)
//	group "ttl":    carol as a user-level member with a one-minute TTL
func sendWorld(t *testing.T) *fixture {
	t.Helper()
	fx := newFixture(t,
		newConn("a1", "alice"), newConn("a2", "alice"),
		newConnP("b1", "bob", "messagepack"),
		newConn("c1", "carol"),
		newConn("n1", ""), newConn("n2", ""),
	)
	fx.join("a1", "direct", "mixed")
	fx.join("b1", "direct")
	fx.join("n1", "direct")
	fx.join("n2", "mixed")
	fx.h.UserJoinGroup("alice", "users", 0)
	fx.h.UserJoinGroup("alice", "mixed", 0)
	fx.h.UserJoinGroup("carol", "ttl", time.Minute)
	return fx
}

func counts(ids ...string) map[string]int {
	m := make(map[string]int, len(ids))
	for _, id := range ids {
		m[id]++
	}
	return m
}

var everyone = []string{"a1", "a2", "b1", "c1", "n1", "n2"}

func TestSends(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send func(h *Hub, p Payloads) Result
		want map[string]int
	}{
		// SendConnections
		{"connections", func(h *Hub, p Payloads) Result {
			return h.SendConnections([]string{"a1", "b1"}, p)
		}, counts("a1", "b1")},
		{"connections duplicates delivered once", func(h *Hub, p Payloads) Result {
			return h.SendConnections([]string{"a1", "a1", "b1", "a1", "b1"}, p)
		}, counts("a1", "b1")},
		{"connections unknown ids skipped", func(h *Hub, p Payloads) Result {
			return h.SendConnections([]string{"zz", "a1", "", "zz"}, p)
		}, counts("a1")},
		{"connections empty list", func(h *Hub, p Payloads) Result {
			return h.SendConnections(nil, p)
		}, counts()},

		// SendUsers
		{"users multi-connection user", func(h *Hub, p Payloads) Result {
			return h.SendUsers([]string{"alice"}, p)
		}, counts("a1", "a2")},
		{"users duplicates delivered once", func(h *Hub, p Payloads) Result {
			return h.SendUsers([]string{"alice", "bob", "alice", "bob"}, p)
		}, counts("a1", "a2", "b1")},
		{"users unknown", func(h *Hub, p Payloads) Result {
			return h.SendUsers([]string{"nobody"}, p)
		}, counts()},
		{"users empty id does not address anonymous connections", func(h *Hub, p Payloads) Result {
			return h.SendUsers([]string{""}, p)
		}, counts()},

		// Broadcast
		{"broadcast", func(h *Hub, p Payloads) Result {
			return h.Broadcast(p, nil)
		}, counts(everyone...)},
		{"broadcast with exclusions", func(h *Hub, p Payloads) Result {
			return h.Broadcast(p, []string{"a1", "n1"})
		}, counts("a2", "b1", "c1", "n2")},
		{"broadcast unknown and duplicate exclusions", func(h *Hub, p Payloads) Result {
			return h.Broadcast(p, []string{"zz", "b1", "b1", ""})
		}, counts("a1", "a2", "c1", "n1", "n2")},
		{"broadcast excluding everyone", func(h *Hub, p Payloads) Result {
			return h.Broadcast(p, everyone)
		}, counts()},

		// SendGroup
		{"group direct members", func(h *Hub, p Payloads) Result {
			return h.SendGroup("direct", p, nil, nil)
		}, counts("a1", "b1", "n1")},
		{"group excluded connection", func(h *Hub, p Payloads) Result {
			return h.SendGroup("direct", p, []string{"b1", "zz"}, nil)
		}, counts("a1", "n1")},
		{"group excluded user", func(h *Hub, p Payloads) Result {
			return h.SendGroup("direct", p, nil, []string{"alice"})
		}, counts("b1", "n1")},
		{"group excluded empty user does not exclude anonymous", func(h *Hub, p Payloads) Result {
			return h.SendGroup("direct", p, nil, []string{""})
		}, counts("a1", "b1", "n1")},
		{"group excluded connections and users together", func(h *Hub, p Payloads) Result {
			return h.SendGroup("direct", p, []string{"n1"}, []string{"bob"})
		}, counts("a1")},
		{"group user-level member reaches every connection", func(h *Hub, p Payloads) Result {
			return h.SendGroup("users", p, nil, nil)
		}, counts("a1", "a2")},
		{"group user-level member excluded by user", func(h *Hub, p Payloads) Result {
			return h.SendGroup("users", p, nil, []string{"alice"})
		}, counts()},
		{"group user-level member excluded by connection", func(h *Hub, p Payloads) Result {
			return h.SendGroup("users", p, []string{"a2"}, nil)
		}, counts("a1")},
		{"group direct and user-level member delivered once", func(h *Hub, p Payloads) Result {
			return h.SendGroup("mixed", p, nil, nil)
		}, counts("a1", "a2", "n2")},
		{"group with TTL member", func(h *Hub, p Payloads) Result {
			return h.SendGroup("ttl", p, nil, nil)
		}, counts("c1")},
		{"group unknown", func(h *Hub, p Payloads) Result {
			return h.SendGroup("nope", p, nil, nil)
		}, counts()},

		// SendGroups
		{"groups overlapping delivered once", func(h *Hub, p Payloads) Result {
			return h.SendGroups([]string{"direct", "users"}, p)
		}, counts("a1", "a2", "b1", "n1")},
		{"groups repeated name", func(h *Hub, p Payloads) Result {
			return h.SendGroups([]string{"direct", "direct"}, p)
		}, counts("a1", "b1", "n1")},
		{"groups user-level overlap", func(h *Hub, p Payloads) Result {
			return h.SendGroups([]string{"users", "mixed"}, p)
		}, counts("a1", "a2", "n2")},
		{"groups user-level first then direct", func(h *Hub, p Payloads) Result {
			return h.SendGroups([]string{"mixed", "users", "direct", "ttl"}, p)
		}, counts("a1", "a2", "b1", "c1", "n1", "n2")},
		{"groups unknown names", func(h *Hub, p Payloads) Result {
			return h.SendGroups([]string{"nope", "direct", "nope2"}, p)
		}, counts("a1", "b1", "n1")},
		{"groups empty list", func(h *Hub, p Payloads) Result {
			return h.SendGroups(nil, p)
		}, counts()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := sendWorld(t)
			p := newMulti()
			res := tt.send(fx.h, p)
			got := fx.got()
			if !maps.Equal(got, tt.want) {
				t.Fatalf("delivered %v, want %v", got, tt.want)
			}
			if want := (Result{Delivered: len(tt.want)}); res != want {
				t.Fatalf("Result = %+v, want %+v", res, want)
			}
			// Every recipient gets the caller's slice for its protocol, not a copy.
			for id := range got {
				c := fx.conns[id]
				want, _ := p.Get(c.proto)
				if f := c.received()[0]; &f[0] != &want[0] {
					t.Errorf("%s (%s) got %q, want the shared %s frame", id, c.proto, f, c.proto)
				}
			}
		})
	}
}

func TestSendConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     string
		closed bool
		ok     bool
		want   Result
	}{
		{"known", "a1", false, true, Result{Delivered: 1}},
		{"unknown", "zz", false, false, Result{}},
		{"empty id", "", false, false, Result{}},
		{"closed connection is not counted", "a1", true, true, Result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := sendWorld(t)
			fx.conns["a1"].closed.Store(tt.closed)
			res, ok := fx.h.SendConnection(tt.id, newMulti())
			if ok != tt.ok || res != tt.want {
				t.Fatalf("SendConnection(%q) = %+v, %v; want %+v, %v", tt.id, res, ok, tt.want, tt.ok)
			}
			want := map[string]int{}
			if tt.want.Delivered > 0 {
				want[tt.id] = 1
			}
			if got := fx.got(); !maps.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
		})
	}
}

// TestPayloadSelection checks that each connection gets the frame for its own protocol, that
// connections without one are counted in Missing, and that refused frames are not Delivered.
func TestPayloadSelection(t *testing.T) {
	t.Parallel()
	jsonFrame := []byte("json\x1e")
	msgp := []byte{0x01, 0x02}
	tests := []struct {
		name    string
		payload Payloads
		closed  []string
		want    Result
		frames  map[string][]byte // conn id -> expected frame; the rest receive nothing
	}{
		{
			name:    "single json frame",
			payload: Frame{Protocol: "json", Data: jsonFrame},
			want:    Result{Delivered: 2, Missing: 2},
			frames:  map[string][]byte{"j1": jsonFrame, "j2": jsonFrame},
		},
		{
			name:    "single frame protocol compared case-insensitively",
			payload: Frame{Protocol: "MessagePack", Data: msgp},
			want:    Result{Delivered: 1, Missing: 3},
			frames:  map[string][]byte{"m1": msgp},
		},
		{
			name:    "multi-protocol",
			payload: &multi{json: jsonFrame, msgpack: msgp},
			want:    Result{Delivered: 3, Missing: 1},
			frames:  map[string][]byte{"j1": jsonFrame, "j2": jsonFrame, "m1": msgp},
		},
		{
			name:    "no frame for anyone",
			payload: Frame{Protocol: "xml", Data: jsonFrame},
			want:    Result{Missing: 4},
		},
		{
			name:    "refused sends are not counted",
			payload: &multi{json: jsonFrame, msgpack: msgp},
			closed:  []string{"j2", "m1"},
			want:    Result{Delivered: 1, Missing: 1},
			frames:  map[string][]byte{"j1": jsonFrame},
		},
		{
			name:    "missing beats closed",
			payload: Frame{Protocol: "json", Data: jsonFrame},
			closed:  []string{"j1", "m1", "x1"},
			want:    Result{Delivered: 1, Missing: 2},
			frames:  map[string][]byte{"j2": jsonFrame},
		},
	}
	// Each send method gets the same four recipients: j1, j2 (json), m1 (messagepack), x1 (custom).
	sends := []struct {
		name string
		send func(h *Hub, p Payloads) Result
	}{
		{"Broadcast", func(h *Hub, p Payloads) Result { return h.Broadcast(p, nil) }},
		{"SendConnections", func(h *Hub, p Payloads) Result {
			return h.SendConnections([]string{"j1", "j2", "m1", "x1"}, p)
		}},
		{"SendUsers", func(h *Hub, p Payloads) Result { return h.SendUsers([]string{"u", "v"}, p) }},
		{"SendGroup", func(h *Hub, p Payloads) Result { return h.SendGroup("g", p, nil, nil) }},
		{"SendGroups", func(h *Hub, p Payloads) Result { return h.SendGroups([]string{"g", "h"}, p) }},
	}
	for _, tt := range tests {
		for _, s := range sends {
			t.Run(tt.name+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				fx := newFixture(t,
					newConnP("j1", "u", "json"), newConnP("j2", "v", "json"),
					newConnP("m1", "u", "messagepack"), newConnP("x1", "v", "custom"),
				)
				// g reaches all four (v through a user-level membership); h overlaps g.
				fx.join("j1", "g")
				fx.join("m1", "g", "h")
				fx.h.UserJoinGroup("v", "g", 0)
				fx.h.UserJoinGroup("u", "h", 0)
				for _, id := range tt.closed {
					fx.conns[id].closed.Store(true)
				}
				if res := s.send(fx.h, tt.payload); res != tt.want {
					t.Fatalf("Result = %+v, want %+v", res, tt.want)
				}
				for id, c := range fx.conns {
					got := c.received()
					want, ok := tt.frames[id]
					switch {
					case !ok && len(got) != 0:
						t.Errorf("%s received %q, want nothing", id, got)
					case ok && (len(got) != 1 || !bytes.Equal(got[0], want)):
						t.Errorf("%s received %q, want [%q]", id, got, want)
					}
				}
			})
		}
	}
}

// TestSendConnectionMissingPayload covers the single-connection path on its own.
func TestSendConnectionMissingPayload(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, newConnP("m1", "", "messagepack"))
	res, ok := fx.h.SendConnection("m1", Frame{Protocol: "json", Data: []byte("x")})
	if !ok || res != (Result{Missing: 1}) {
		t.Fatalf("SendConnection = %+v, %v; want {Missing:1}, true", res, ok)
	}
	if n := len(fx.conns["m1"].received()); n != 0 {
		t.Fatalf("m1 received %d frames", n)
	}
}
