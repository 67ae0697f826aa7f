package router

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeConn records every frame it accepts; closed makes Send report false (and record nothing).
type fakeConn struct {
	id, user, proto string
	closed          atomic.Bool

	mu     sync.Mutex
	frames [][]byte
}

func newConn(id, user string) *fakeConn { return newConnP(id, user, "json") }

func newConnP(id, user, proto string) *fakeConn {
	return &fakeConn{id: id, user: user, proto: proto}
}

func (c *fakeConn) ID() string       { return c.id }
func (c *fakeConn) UserID() string   { return c.user }
func (c *fakeConn) Protocol() string { return c.proto }

func (c *fakeConn) Send(frame []byte) bool {
	if c.closed.Load() {
		return false
	}
	c.mu.Lock()
	c.frames = append(c.frames, frame)
	c.mu.Unlock()
	return true
}

func (c *fakeConn) received() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

func (c *fakeConn) reset() {
	c.mu.Lock()
	c.frames = nil
	c.mu.Unlock()
}

// countConn is the allocation-free Conn used by benchmarks, allocation tests and the race test.
type countConn struct {
	id, user, proto string
	n               atomic.Int64
}

func (c *countConn) ID() string       { return c.id }
func (c *countConn) UserID() string   { return c.user }
func (c *countConn) Protocol() string { return c.proto }
func (c *countConn) Send([]byte) bool { c.n.Add(1); return true }

// fakeClock is safe for concurrent use: the hub reads it under its read lock from many goroutines.
// When step is non-zero every Now call advances the clock by step after reading it, which models
// wall time passing in the middle of an operation.
type fakeClock struct {
	ns   atomic.Int64
	step atomic.Int64
}

var clockBase = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(clockBase.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time {
	step := c.step.Load()
	return time.Unix(0, c.ns.Add(step)-step).UTC()
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// multi is a Payloads with one frame per protocol, as the server builds for a REST send.
type multi struct {
	json, msgpack []byte
}

func (m *multi) Get(protocol string) ([]byte, bool) {
	switch {
	case strings.EqualFold(protocol, "json"):
		return m.json, m.json != nil
	case strings.EqualFold(protocol, "messagepack"):
		return m.msgpack, m.msgpack != nil
	}
	return nil, false
}

func newMulti() *multi {
	return &multi{json: []byte(`{"type":1}` + "\x1e"), msgpack: []byte{0x03, 0x91, 0x01}}
}

// fixture is one hub on a fake clock plus the fake connections added to it, by id.
type fixture struct {
	t     *testing.T
	clk   *fakeClock
	r     *Router
	h     *Hub
	conns map[string]*fakeConn
}

func newFixture(t *testing.T, conns ...*fakeConn) *fixture {
	t.Helper()
	clk := newFakeClock()
	r := New(clk.Now)
	fx := &fixture{t: t, clk: clk, r: r, h: r.Hub("chat"), conns: make(map[string]*fakeConn)}
	for _, c := range conns {
		fx.add(c)
	}
	t.Cleanup(func() { checkInvariants(t, fx.h) })
	return fx
}

func (fx *fixture) add(c *fakeConn) *fakeConn {
	fx.h.Add(c)
	fx.conns[c.id] = c
	return c
}

func (fx *fixture) join(connID string, groups ...string) {
	fx.t.Helper()
	for _, g := range groups {
		if !fx.h.JoinGroup(connID, g) {
			fx.t.Fatalf("JoinGroup(%q, %q) = false, want true", connID, g)
		}
	}
}

// got returns how many frames each connection received (connections with none are left out).
func (fx *fixture) got() map[string]int {
	out := make(map[string]int)
	for id, c := range fx.conns {
		if n := len(c.received()); n > 0 {
			out[id] = n
		}
	}
	return out
}

func (fx *fixture) reset() {
	for _, c := range fx.conns {
		c.reset()
	}
}

// groupSet returns the ids of the connections that SendGroup(name) reaches, sorted, and checks
// that GroupConns agrees and that GroupExists matches non-emptiness.
func (fx *fixture) groupSet(name string) []string {
	fx.t.Helper()
	fx.reset()
	res := fx.h.SendGroup(name, newMulti(), nil, nil)
	got := fx.got()
	fx.reset()
	for id, n := range got {
		if n != 1 {
			fx.t.Errorf("SendGroup(%q): %s received %d frames, want 1", name, id, n)
		}
	}
	if res.Delivered != len(got) {
		fx.t.Errorf("SendGroup(%q).Delivered = %d, want %d", name, res.Delivered, len(got))
	}
	ids := slices.Sorted(maps.Keys(got))
	var fromConns []string
	for _, c := range fx.h.GroupConns(name) {
		fromConns = append(fromConns, c.ID())
	}
	slices.Sort(fromConns)
	if !slices.Equal(ids, fromConns) {
		fx.t.Errorf("GroupConns(%q) = %v, SendGroup reached %v", name, fromConns, ids)
	}
	if exists := fx.h.GroupExists(name); exists != (len(ids) > 0) {
		fx.t.Errorf("GroupExists(%q) = %v, but the group reaches %v", name, exists, ids)
	}
	return ids
}

func wantIDs(ids ...string) []string {
	slices.Sort(ids)
	if ids == nil {
		ids = []string{}
	}
	return ids
}

func equalIDs(got, want []string) bool {
	return slices.Equal(wantIDs(got...), wantIDs(want...))
}

// checkInvariants verifies that the hub's indexes agree with each other: every index entry is
// mirrored where it must be, and no empty inner map or group is kept around.
func checkInvariants(t testing.TB, h *Hub) {
	t.Helper()
	h.mu.RLock()
	defer h.mu.RUnlock()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	for id, m := range h.conns {
		if m.conn.ID() != id {
			fail("conns[%q] holds conn %q", id, m.conn.ID())
		}
		if u := m.conn.UserID(); u != "" && h.users[u][id] != m {
			fail("conn %q of user %q missing from users index", id, u)
		}
		for g := range m.groups {
			if gr := h.groups[g]; gr == nil || gr.conns[id] != m {
				fail("conn %q lists group %q that does not list it", id, g)
			}
		}
	}
	for u, byID := range h.users {
		if u == "" {
			fail("anonymous user indexed")
		}
		if len(byID) == 0 {
			fail("empty users entry %q kept", u)
		}
		for id, m := range byID {
			if h.conns[id] != m || m.conn.UserID() != u {
				fail("users[%q][%q] is stale", u, id)
			}
		}
	}
	for name, g := range h.groups {
		if len(g.conns) == 0 && len(g.users) == 0 {
			fail("empty group %q kept", name)
		}
		for id, m := range g.conns {
			if h.conns[id] != m {
				fail("group %q holds stale conn %q", name, id)
			}
			if _, ok := m.groups[name]; !ok {
				fail("group %q holds conn %q that does not list it", name, id)
			}
		}
		for u, exp := range g.users {
			if got, ok := h.userGroups[u][name]; !ok || !got.Equal(exp) {
				fail("group %q user %q (exp %v) not mirrored in userGroups (%v, %v)", name, u, exp, got, ok)
			}
		}
	}
	for u, ug := range h.userGroups {
		if len(ug) == 0 {
			fail("empty userGroups entry %q kept", u)
		}
		for name, exp := range ug {
			g := h.groups[name]
			if g == nil {
				fail("userGroups[%q] lists missing group %q", u, name)
				continue
			}
			if got, ok := g.users[u]; !ok || !got.Equal(exp) {
				fail("userGroups[%q][%q] not mirrored in group", u, name)
			}
		}
	}
	for _, e := range errs {
		t.Error("invariant: " + e)
	}
}
