package router

import (
	"slices"
	"testing"
	"time"
)

// recorder is an Observer that logs every event as "kind:name:active".
type recorder struct{ events []string }

func (r *recorder) HubActive(hub string, active bool) { r.add("hub", hub, active) }
func (r *recorder) UserActive(hub, user string, active bool) {
	r.add("user", user, active)
}
func (r *recorder) GroupActive(hub, group string, active bool) { r.add("group", group, active) }

func (r *recorder) add(kind, name string, active bool) {
	s := "-"
	if active {
		s = "+"
	}
	r.events = append(r.events, kind+":"+name+":"+s)
}

func (r *recorder) take() []string {
	out := r.events
	r.events = nil
	return out
}

func TestObserverTransitions(t *testing.T) {
	rec := &recorder{}
	r := New(nil)
	r.Observe(rec, false)
	h := r.Hub("chat")
	a, b := newConn("a", "alice"), newConn("b", "alice")

	h.Add(a)
	h.Add(b)
	if got, want := rec.take(), []string{"hub:chat:+", "user:alice:+"}; !slices.Equal(got, want) {
		t.Fatalf("adding two connections of one user: %v, want %v", got, want)
	}
	h.JoinGroup("a", "g")
	h.JoinGroup("b", "g")
	if got, want := rec.take(), []string{"group:g:+"}; !slices.Equal(got, want) {
		t.Fatalf("two joins of one group: %v, want %v", got, want)
	}
	h.LeaveGroup("a", "g")
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("leaving while another member remains reported %v", got)
	}
	h.UserJoinGroup("alice", "u", 0)
	h.Remove(b) // last direct member of g
	if got, want := rec.take(), []string{"group:u:+", "group:g:-"}; !slices.Equal(got, want) {
		t.Fatalf("user join then removing g's last member: %v, want %v", got, want)
	}
	h.Remove(a)
	// Not scoped: alice's user-level membership of u outlives her connections.
	if got, want := rec.take(), []string{"user:alice:-", "hub:chat:-"}; !slices.Equal(got, want) {
		t.Fatalf("removing the last connection: %v, want %v", got, want)
	}
	h.UserLeaveGroup("alice", "u")
	if got, want := rec.take(), []string{"group:u:-"}; !slices.Equal(got, want) {
		t.Fatalf("user leave: %v, want %v", got, want)
	}
}

func TestScopedUserGroups(t *testing.T) {
	rec := &recorder{}
	r := New(nil)
	r.Observe(rec, true)
	h := r.Hub("chat")

	h.UserJoinGroup("bob", "g", 0) // bob has no connection here: nothing is kept
	if h.UserInGroup("bob", "g") || len(rec.take()) != 0 {
		t.Fatal("a scoped router kept a user-level membership of a user without connections")
	}
	c := newConn("c", "bob")
	h.Add(c)
	h.UserJoinGroupUntil("bob", "g", time.Now().Add(time.Hour))
	h.UserJoinGroupUntil("bob", "old", time.Now().Add(-time.Second)) // already expired: ignored
	if !h.UserInGroup("bob", "g") || h.UserInGroup("bob", "old") {
		t.Fatal("UserJoinGroupUntil: want g (live), not old (expired)")
	}
	h.SendGroup("g", Frame{Protocol: "json", Data: []byte("x")}, nil, nil)
	if len(c.received()) != 1 {
		t.Fatalf("group send reached bob %d times, want 1", len(c.received()))
	}
	rec.take()
	h.Remove(c)
	if h.UserInGroup("bob", "g") {
		t.Fatal("a scoped router kept bob's membership after his last connection left")
	}
	if got, want := rec.take(), []string{"group:g:-", "user:bob:-", "hub:chat:-"}; !slices.Equal(got, want) {
		t.Fatalf("last connection of a scoped user: %v, want %v", got, want)
	}
}

func TestSendGroupOf(t *testing.T) {
	h := New(nil).Hub("chat")
	both, onlyB := newConn("1", ""), newConn("2", "")
	h.Add(both)
	h.Add(onlyB)
	h.JoinGroup("1", "a")
	h.JoinGroup("1", "b")
	h.JoinGroup("2", "b")
	names := []string{"a", "b", "a"}
	p := Frame{Protocol: "json", Data: []byte("x")}
	for i := range names {
		h.SendGroupOf(names, i, p) // what a node does for each group topic it receives the send on
	}
	if len(both.received()) != 1 || len(onlyB.received()) != 1 {
		t.Fatalf("per-group delivery of a multi-group send: %d and %d copies, want 1 each", len(both.received()), len(onlyB.received()))
	}
	if r := h.SendGroupOf(names, 7, p); r != (Result{}) {
		t.Fatalf("out of range index delivered: %+v", r)
	}
}
