package router

import (
	"slices"
	"testing"
)

func connIDs(cs []Conn) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ID())
	}
	slices.Sort(out)
	return out
}

func TestAddRemove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, fx *fixture)
	}{
		{"add registers by id and user", func(t *testing.T, fx *fixture) {
			a1 := fx.add(newConn("a1", "alice"))
			fx.add(newConn("a2", "alice"))
			fx.add(newConn("n1", ""))
			if got, ok := fx.h.Conn("a1"); !ok || got != a1 {
				t.Fatalf("Conn(a1) = %v, %v", got, ok)
			}
			if fx.h.Count() != 3 {
				t.Fatalf("Count() = %d, want 3", fx.h.Count())
			}
			if got := connIDs(fx.h.Conns()); !slices.Equal(got, []string{"a1", "a2", "n1"}) {
				t.Fatalf("Conns() = %v", got)
			}
			if got := connIDs(fx.h.UserConns("alice")); !slices.Equal(got, []string{"a1", "a2"}) {
				t.Fatalf("UserConns(alice) = %v", got)
			}
			if got := fx.h.UserConns(""); len(got) != 0 {
				t.Fatalf("anonymous connections are indexed as user \"\": %v", connIDs(got))
			}
		}},
		{"remove unregisters and reports true once", func(t *testing.T, fx *fixture) {
			a1 := fx.add(newConn("a1", "alice"))
			if !fx.h.Remove(a1) {
				t.Fatal("Remove(a1) = false")
			}
			if fx.h.Remove(a1) {
				t.Fatal("second Remove(a1) = true")
			}
			if _, ok := fx.h.Conn("a1"); ok || fx.h.Count() != 0 || fx.h.UserExists("alice") {
				t.Fatal("a1 still visible after Remove")
			}
		}},
		{"remove unknown", func(t *testing.T, fx *fixture) {
			fx.add(newConn("a1", "alice"))
			if fx.h.Remove(newConn("zz", "alice")) {
				t.Fatal("Remove of an unknown conn = true")
			}
			if fx.h.Count() != 1 {
				t.Fatal("Remove of an unknown conn removed something")
			}
		}},
		{"replacement with the same id", func(t *testing.T, fx *fixture) {
			old := newConn("x", "alice")
			fx.h.Add(old)
			fx.join("x", "g")
			repl := newConn("x", "bob")
			fx.add(repl)
			if got, _ := fx.h.Conn("x"); got != repl {
				t.Fatal("Conn(x) is not the replacement")
			}
			if fx.h.Count() != 1 {
				t.Fatalf("Count() = %d, want 1", fx.h.Count())
			}
			if fx.h.UserExists("alice") || !fx.h.UserExists("bob") {
				t.Fatal("users index not moved from alice to bob")
			}
			// The replacement is a new connection: it does not inherit the old one's groups.
			if got := fx.groupSet("g"); len(got) != 0 {
				t.Fatalf("group g = %v after replacement, want empty", got)
			}
			// Remove of the stale connection must leave the new one alone.
			if fx.h.Remove(old) {
				t.Fatal("Remove(stale) = true")
			}
			if got, ok := fx.h.Conn("x"); !ok || got != repl {
				t.Fatal("Remove(stale) removed the replacement")
			}
			if !fx.h.UserExists("bob") {
				t.Fatal("Remove(stale) dropped the replacement's user")
			}
			if r, ok := fx.h.SendConnection("x", newMulti()); !ok || r.Delivered != 1 || len(old.received()) != 0 {
				t.Fatalf("send after stale Remove: %+v, %v; stale got %d", r, ok, len(old.received()))
			}
			if !fx.h.Remove(repl) {
				t.Fatal("Remove(replacement) = false")
			}
		}},
		{"replacement with the same user keeps the user", func(t *testing.T, fx *fixture) {
			old := newConn("x", "alice")
			fx.h.Add(old)
			fx.add(newConn("x", "alice"))
			if fx.h.Remove(old) {
				t.Fatal("Remove(stale) = true")
			}
			if !fx.h.UserExists("alice") || len(fx.h.UserConns("alice")) != 1 {
				t.Fatal("stale Remove dropped alice's live connection")
			}
		}},
		{"remove drops direct memberships", func(t *testing.T, fx *fixture) {
			a1 := fx.add(newConn("a1", "alice"))
			fx.add(newConn("b1", "bob"))
			fx.join("a1", "g1", "g2")
			fx.join("b1", "g2")
			fx.h.Remove(a1)
			delete(fx.conns, "a1")
			if got := fx.groupSet("g1"); len(got) != 0 {
				t.Fatalf("g1 = %v, want empty", got)
			}
			if got := fx.groupSet("g2"); !equalIDs(got, []string{"b1"}) {
				t.Fatalf("g2 = %v, want [b1]", got)
			}
		}},
		{"remove keeps user-level memberships for future connections", func(t *testing.T, fx *fixture) {
			a1 := fx.add(newConn("a1", "alice"))
			fx.h.UserJoinGroup("alice", "g", 0)
			fx.h.Remove(a1)
			delete(fx.conns, "a1")
			if fx.h.GroupExists("g") {
				t.Fatal("GroupExists(g) with no connections")
			}
			if !fx.h.UserInGroup("alice", "g") {
				t.Fatal("user-level membership lost when the last connection left")
			}
			fx.add(newConn("a2", "alice"))
			if got := fx.groupSet("g"); !equalIDs(got, []string{"a2"}) {
				t.Fatalf("g = %v, want [a2]", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newFixture(t))
		})
	}
}

func TestUserExists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(fx *fixture)
		user  string
		want  bool
	}{
		{"one connection", func(fx *fixture) { fx.add(newConn("a1", "alice")) }, "alice", true},
		{"unknown", func(fx *fixture) { fx.add(newConn("a1", "alice")) }, "bob", false},
		{"anonymous is not a user", func(fx *fixture) { fx.add(newConn("n1", "")) }, "", false},
		{"one of two removed", func(fx *fixture) {
			a1 := fx.add(newConn("a1", "alice"))
			fx.add(newConn("a2", "alice"))
			fx.h.Remove(a1)
		}, "alice", true},
		{"last removed", func(fx *fixture) {
			fx.h.Remove(fx.add(newConn("a1", "alice")))
		}, "alice", false},
		{"user-level group member without connections", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", 0)
		}, "alice", false},
		{"user ids are case-sensitive", func(fx *fixture) { fx.add(newConn("a1", "alice")) }, "Alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			tt.setup(fx)
			if got := fx.h.UserExists(tt.user); got != tt.want {
				t.Fatalf("UserExists(%q) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}
