package router

import (
	"fmt"
	"testing"
)

// benchHub builds a hub on the wall clock (as in production) with n allocation-free connections
// c0..c(n-1), two per user (u0..), all speaking json.
func benchHub(n int) (*Hub, []*countConn) {
	h := New(nil).Hub("bench")
	conns := make([]*countConn, n)
	for i := range conns {
		conns[i] = &countConn{id: fmt.Sprintf("c%d", i), user: fmt.Sprintf("u%d", i/2), proto: "json"}
		h.Add(conns[i])
	}
	return h, conns
}

func total(conns []*countConn) int64 {
	var n int64
	for _, c := range conns {
		n += c.n.Load()
	}
	return n
}

var benchPayload Payloads = Frame{Protocol: "json", Data: []byte(`{"type":1,"target":"m","arguments":[]}` + "\x1e")}

// fanOuts are the sends whose cost must not grow allocations with the number of recipients.
// setup prepares a hub of n connections and returns the send; every send reaches all n.
var fanOuts = []struct {
	name  string
	setup func(h *Hub, n int) func(p Payloads) Result
}{
	{"Broadcast", func(h *Hub, n int) func(Payloads) Result {
		excluded := []string{"nobody"}
		return func(p Payloads) Result { return h.Broadcast(p, excluded) }
	}},
	{"SendGroup/direct", func(h *Hub, n int) func(Payloads) Result {
		for i := range n {
			h.JoinGroup(fmt.Sprintf("c%d", i), "g")
		}
		ex := []string{"nobody"}
		return func(p Payloads) Result { return h.SendGroup("g", p, ex, ex) }
	}},
	{"SendGroup/users", func(h *Hub, n int) func(Payloads) Result {
		for u := range n / 2 {
			h.UserJoinGroup(fmt.Sprintf("u%d", u), "g", 0)
		}
		return func(p Payloads) Result { return h.SendGroup("g", p, nil, nil) }
	}},
	{"SendGroups", func(h *Hub, n int) func(Payloads) Result {
		for i := range n {
			h.JoinGroup(fmt.Sprintf("c%d", i), fmt.Sprintf("g%d", i%3))
			h.JoinGroup(fmt.Sprintf("c%d", i), fmt.Sprintf("g%d", (i+1)%3))
		}
		names := []string{"g0", "g1", "g2"}
		return func(p Payloads) Result { return h.SendGroups(names, p) }
	}},
	{"SendUsers", func(h *Hub, n int) func(Payloads) Result {
		users := make([]string, n/2)
		for u := range users {
			users[u] = fmt.Sprintf("u%d", u)
		}
		return func(p Payloads) Result { return h.SendUsers(users, p) }
	}},
	{"SendConnections", func(h *Hub, n int) func(Payloads) Result {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%d", i)
		}
		return func(p Payloads) Result { return h.SendConnections(ids, p) }
	}},
}

// TestFanOutAllocs asserts the "no per-recipient allocation on fan-out" principle: a send to 1,000
// connections allocates nothing with a prepared Payloads, and no more than a send to 10 when the
// caller converts a Frame to the interface at the call site.
//
// Not parallel: AllocsPerRun counts process-wide mallocs and panics inside a parallel test.
func TestFanOutAllocs(t *testing.T) {
	frame := Frame{Protocol: "json", Data: []byte("x\x1e")}
	for _, f := range fanOuts {
		t.Run(f.name, func(t *testing.T) {
			allocs := func(n int, p func() Payloads) float64 {
				h, conns := benchHub(n)
				send := f.setup(h, n)
				if res := send(p()); res.Delivered != n {
					t.Fatalf("send to %d reached %d (total %d)", n, res.Delivered, total(conns))
				}
				return testing.AllocsPerRun(20, func() { send(p()) })
			}
			// A send naming more than smallList recipients makes one sorted copy of the list:
			// one allocation per message, never one per recipient.
			perMessage := 0.0
			if f.name == "SendUsers" || f.name == "SendConnections" {
				perMessage = 1
			}
			prepared := func() Payloads { return benchPayload }
			if a := allocs(1000, prepared); a != perMessage {
				t.Errorf("send to 1000 with a prepared Payloads: %v allocs, want %v", a, perMessage)
			}
			inline := func() Payloads { return frame } // converts to the interface on each call
			small, large := allocs(10, inline), allocs(1000, inline)
			if large > small+perMessage || large > 1+perMessage {
				t.Errorf("send with an inline Frame: %v allocs to 10, %v to 1000; want at most one more per message", small, large)
			}
		})
	}
}

func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			h, conns := benchHub(n)
			b.ReportAllocs()
			for b.Loop() {
				h.Broadcast(benchPayload, nil)
			}
			b.StopTimer()
			if got := total(conns); got != int64(b.N)*int64(n) {
				b.Fatalf("delivered %d, want %d", got, int64(b.N)*int64(n))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
		})
	}
}

// BenchmarkSendGroup sends to a 10-member group in a hub of 10,000 connections.
func BenchmarkSendGroup(b *testing.B) {
	cases := []struct {
		name  string
		setup func(h *Hub)
	}{
		{"direct", func(h *Hub) {
			for i := range 10 {
				h.JoinGroup(fmt.Sprintf("c%d", i*997), "g")
			}
		}},
		{"users", func(h *Hub) { // 5 users x 2 connections
			for u := range 5 {
				h.UserJoinGroup(fmt.Sprintf("u%d", u*503), "g", 0)
			}
		}},
		{"mixed", func(h *Hub) { // 5 direct, 3 users of which one also joined directly
			for i := range 5 {
				h.JoinGroup(fmt.Sprintf("c%d", i*997), "g")
			}
			for _, u := range []string{"u0", "u1000", "u2000"} {
				h.UserJoinGroup(u, "g", 0)
			}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			h, _ := benchHub(10_000)
			tc.setup(h)
			if res := h.SendGroup("g", benchPayload, nil, nil); res.Delivered != 10 {
				b.Fatalf("group reaches %d, want 10", res.Delivered)
			}
			excluded := []string{"nobody"}
			b.ReportAllocs()
			for b.Loop() {
				h.SendGroup("g", benchPayload, excluded, excluded)
			}
		})
	}
}

func BenchmarkSendGroups(b *testing.B) {
	h, _ := benchHub(10_000)
	// Three groups of 10 with overlaps: 20 distinct recipients.
	for i := range 20 {
		id := fmt.Sprintf("c%d", i*401)
		h.JoinGroup(id, fmt.Sprintf("g%d", i%3))
		if i%2 == 0 {
			h.JoinGroup(id, fmt.Sprintf("g%d", (i+1)%3))
		}
	}
	names := []string{"g0", "g1", "g2"}
	if res := h.SendGroups(names, benchPayload); res.Delivered != 20 {
		b.Fatalf("groups reach %d, want 20", res.Delivered)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.SendGroups(names, benchPayload)
	}
}

func BenchmarkSendConnection(b *testing.B) {
	h, conns := benchHub(10_000)
	target := conns[4242]
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.SendConnection(target.id, benchPayload)
		}
	})
	// Many producers (app-server links, REST handlers) share the hub's read lock.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.SendConnection(target.id, benchPayload)
			}
		})
	})
}

func BenchmarkSendUser(b *testing.B) {
	h, _ := benchHub(10_000)
	users := []string{"u1234"}
	b.ReportAllocs()
	for b.Loop() {
		h.SendUsers(users, benchPayload)
	}
}

// BenchmarkAddRemove measures connection churn with two group memberships each.
func BenchmarkAddRemove(b *testing.B) {
	h, _ := benchHub(10_000)
	c := &countConn{id: "churn", user: "u1", proto: "json"}
	b.ReportAllocs()
	for b.Loop() {
		h.Add(c)
		h.JoinGroup(c.id, "g1")
		h.JoinGroup(c.id, "g2")
		h.Remove(c)
	}
}

// BenchmarkSendConnections shows the cost of the linear duplicate check as the id list grows.
func BenchmarkSendConnections(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("ids=%d", n), func(b *testing.B) {
			h, _ := benchHub(10_000)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("c%d", i*7)
			}
			b.ReportAllocs()
			for b.Loop() {
				h.SendConnections(ids, benchPayload)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
		})
	}
}
