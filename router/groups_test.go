package router

import (
	"fmt"
	"testing"
	"time"
)

func TestJoinLeaveGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, fx *fixture)
		want map[string][]string // group -> connections it reaches afterwards
	}{
		{"join", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1")
			fx.join("b1", "g1", "g2")
		}, map[string][]string{"g1": {"a1", "b1"}, "g2": {"b1"}}},
		{"join twice is one membership", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1", "g1")
		}, map[string][]string{"g1": {"a1"}}},
		{"join unknown connection", func(t *testing.T, fx *fixture) {
			if fx.h.JoinGroup("zz", "g1") {
				t.Error("JoinGroup(unknown) = true")
			}
			if _, ok := fx.h.groups["g1"]; ok {
				t.Error("JoinGroup(unknown) created the group")
			}
		}, map[string][]string{"g1": nil}},
		{"leave", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1", "g2")
			fx.join("b1", "g1")
			if !fx.h.LeaveGroup("a1", "g1") {
				t.Error("LeaveGroup = false")
			}
		}, map[string][]string{"g1": {"b1"}, "g2": {"a1"}}},
		{"leave last member drops the group", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1")
			fx.h.LeaveGroup("a1", "g1")
			if _, ok := fx.h.groups["g1"]; ok {
				t.Error("empty group kept")
			}
		}, map[string][]string{"g1": nil}},
		{"leave unknown connection", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1")
			if fx.h.LeaveGroup("zz", "g1") {
				t.Error("LeaveGroup(unknown) = true")
			}
			if fx.h.LeaveGroup("zz", "") {
				t.Error(`LeaveGroup(unknown, "") = true`)
			}
		}, map[string][]string{"g1": {"a1"}}},
		{"leave a group not joined", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1")
			if !fx.h.LeaveGroup("b1", "g1") {
				t.Error("LeaveGroup of a known conn = false")
			}
			if !fx.h.LeaveGroup("a1", "nope") {
				t.Error("LeaveGroup of an unknown group = false")
			}
		}, map[string][]string{"g1": {"a1"}, "nope": nil}},
		{"leave all", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1", "g2", "g3")
			fx.join("b1", "g2")
			if !fx.h.LeaveGroup("a1", "") {
				t.Error(`LeaveGroup(a1, "") = false`)
			}
		}, map[string][]string{"g1": nil, "g2": {"b1"}, "g3": nil}},
		{"leave all with no groups", func(t *testing.T, fx *fixture) {
			if !fx.h.LeaveGroup("a1", "") {
				t.Error(`LeaveGroup(a1, "") = false`)
			}
		}, map[string][]string{"g1": nil}},
		{"leave direct keeps user-level membership", func(t *testing.T, fx *fixture) {
			fx.join("a1", "g1")
			fx.h.UserJoinGroup("alice", "g1", 0)
			fx.h.LeaveGroup("a1", "g1")
		}, map[string][]string{"g1": {"a1", "a2"}}},
		{"group names are case-sensitive", func(t *testing.T, fx *fixture) {
			fx.join("a1", "G")
		}, map[string][]string{"G": {"a1"}, "g": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"), newConn("a2", "alice"), newConn("b1", "bob"))
			tt.run(t, fx)
			for g, want := range tt.want {
				if got := fx.groupSet(g); !equalIDs(got, want) {
					t.Errorf("group %q reaches %v, want %v", g, got, want)
				}
			}
		})
	}
}

// TestUserJoinGroup walks a timeline on the fake clock: at each step it checks which connections
// the group reaches and whether UserInGroup holds.
func TestUserJoinGroup(t *testing.T) {
	t.Parallel()
	type step struct {
		at     time.Duration // since the start of the test
		do     func(fx *fixture)
		reach  []string
		member bool // UserInGroup(alice, g)
	}
	addA2 := func(fx *fixture) { fx.add(newConn("a2", "alice")) }
	tests := []struct {
		name  string
		setup func(fx *fixture)
		steps []step
	}{
		{"no TTL: current and future connections, forever", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", 0)
		}, []step{
			{at: 0, reach: []string{"a1"}, member: true},
			{at: time.Second, do: addA2, reach: []string{"a1", "a2"}, member: true},
			{at: 10000 * time.Hour, reach: []string{"a1", "a2"}, member: true},
		}},
		{"negative TTL means none", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", -time.Second)
		}, []step{
			{at: 10000 * time.Hour, reach: []string{"a1"}, member: true},
		}},
		{"TTL: current and future connections until expiry", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", time.Minute)
		}, []step{
			{at: 0, reach: []string{"a1"}, member: true},
			{at: 30 * time.Second, do: addA2, reach: []string{"a1", "a2"}, member: true},
			{at: time.Minute - time.Nanosecond, reach: []string{"a1", "a2"}, member: true},
			{at: time.Minute, reach: nil, member: false},
			{at: time.Hour, do: func(fx *fixture) { fx.add(newConn("a3", "alice")) }, reach: nil, member: false},
		}},
		{"TTL with a direct member: delivered once, direct survives expiry", func(fx *fixture) {
			fx.join("a1", "g")
			fx.h.UserJoinGroup("alice", "g", time.Minute)
			fx.add(newConn("a2", "alice"))
		}, []step{
			{at: 0, reach: []string{"a1", "a2"}, member: true},
			{at: time.Minute, reach: []string{"a1"}, member: true}, // through a1's direct membership
		}},
		{"rejoin extends the TTL", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", time.Minute)
		}, []step{
			{at: 50 * time.Second, do: func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", time.Minute) }, reach: []string{"a1"}, member: true},
			{at: 100 * time.Second, reach: []string{"a1"}, member: true},
			{at: 110 * time.Second, reach: nil, member: false},
		}},
		{"rejoin without TTL removes the expiry", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", time.Minute)
			fx.h.UserJoinGroup("alice", "g", 0)
		}, []step{
			{at: time.Hour, reach: []string{"a1"}, member: true},
		}},
		{"rejoin with TTL adds an expiry", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", 0)
			fx.h.UserJoinGroup("alice", "g", time.Minute)
		}, []step{
			{at: time.Minute, reach: nil, member: false},
		}},
		{"other users unaffected", func(fx *fixture) {
			fx.h.UserJoinGroup("alice", "g", time.Minute)
			fx.h.UserJoinGroup("bob", "g", 0)
		}, []step{
			{at: 0, reach: []string{"a1", "b1"}, member: true},
			{at: time.Minute, reach: []string{"b1"}, member: false},
		}},
		{"anonymous connections never join through a user", func(fx *fixture) {
			fx.h.UserJoinGroup("", "g", 0)
		}, []step{
			{at: 0, reach: nil, member: false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"), newConn("b1", "bob"), newConn("n1", ""))
			tt.setup(fx)
			var elapsed time.Duration
			for i, s := range tt.steps {
				fx.clk.Advance(s.at - elapsed)
				elapsed = s.at
				if s.do != nil {
					s.do(fx)
				}
				if got := fx.groupSet("g"); !equalIDs(got, s.reach) {
					t.Errorf("step %d (+%v): group reaches %v, want %v", i, s.at, got, s.reach)
				}
				if got := fx.h.UserInGroup("alice", "g"); got != s.member {
					t.Errorf("step %d (+%v): UserInGroup(alice, g) = %v, want %v", i, s.at, got, s.member)
				}
			}
		})
	}
}

func TestUserLeaveGroup(t *testing.T) {
	t.Parallel()
	// alice (a1, a2) is a user-level member of g1 and g2 (g2 with a TTL); a1 also joined g1 and
	// g3 directly. bob (b1) is in g1 directly and a user-level member of g2.
	setup := func(t *testing.T) *fixture {
		fx := newFixture(t, newConn("a1", "alice"), newConn("a2", "alice"), newConn("b1", "bob"))
		fx.h.UserJoinGroup("alice", "g1", 0)
		fx.h.UserJoinGroup("alice", "g2", time.Hour)
		fx.h.UserJoinGroup("bob", "g2", 0)
		fx.join("a1", "g1", "g3")
		fx.join("b1", "g1")
		return fx
	}
	tests := []struct {
		name       string
		user, grp  string
		want       map[string][]string
		member     map[string]bool // UserInGroup(alice, group)
		dropGroups []string        // groups that must be gone from the index
		future     []string        // groups a new connection of the user reaches
	}{
		{
			name: "one group", user: "alice", grp: "g1",
			want:   map[string][]string{"g1": {"b1"}, "g2": {"a1", "a2", "b1"}, "g3": {"a1"}},
			member: map[string]bool{"g1": false, "g2": true, "g3": true},
			future: []string{"g2"},
		},
		{
			name: "group joined only directly", user: "alice", grp: "g3",
			want:       map[string][]string{"g1": {"a1", "a2", "b1"}, "g2": {"a1", "a2", "b1"}, "g3": nil},
			member:     map[string]bool{"g1": true, "g2": true, "g3": false},
			dropGroups: []string{"g3"},
			future:     []string{"g1", "g2"},
		},
		{
			name: "all groups", user: "alice", grp: "",
			want:       map[string][]string{"g1": {"b1"}, "g2": {"b1"}, "g3": nil},
			member:     map[string]bool{"g1": false, "g2": false, "g3": false},
			dropGroups: []string{"g3"},
		},
		{
			name: "group not joined", user: "alice", grp: "nope",
			want:   map[string][]string{"g1": {"a1", "a2", "b1"}, "g2": {"a1", "a2", "b1"}, "g3": {"a1"}},
			member: map[string]bool{"g1": true, "g2": true, "g3": true},
			future: []string{"g1", "g2"},
		},
		{
			name: "unknown user", user: "zed", grp: "",
			want:   map[string][]string{"g1": {"a1", "a2", "b1"}, "g2": {"a1", "a2", "b1"}, "g3": {"a1"}},
			member: map[string]bool{"g1": true, "g2": true, "g3": true},
		},
		{
			name: "other user, all groups", user: "bob", grp: "",
			want:   map[string][]string{"g1": {"a1", "a2"}, "g2": {"a1", "a2"}, "g3": {"a1"}},
			member: map[string]bool{"g1": true, "g2": true, "g3": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			fx.h.UserLeaveGroup(tt.user, tt.grp)
			for g, want := range tt.want {
				if got := fx.groupSet(g); !equalIDs(got, want) {
					t.Errorf("group %q reaches %v, want %v", g, got, want)
				}
			}
			for g, want := range tt.member {
				if got := fx.h.UserInGroup("alice", g); got != want {
					t.Errorf("UserInGroup(alice, %q) = %v, want %v", g, got, want)
				}
			}
			for _, g := range tt.dropGroups {
				if _, ok := fx.h.groups[g]; ok {
					t.Errorf("group %q still indexed", g)
				}
			}
			// A future connection of the user only reaches the groups it still holds user-level.
			nc := fx.add(newConn(tt.user+"-new", tt.user))
			var reached []string
			for _, g := range []string{"g1", "g2", "g3"} {
				for _, id := range fx.groupSet(g) {
					if id == nc.id {
						reached = append(reached, g)
					}
				}
			}
			if !equalIDs(reached, tt.future) {
				t.Errorf("a new connection of %s reaches %v, want %v", tt.user, reached, tt.future)
			}
		})
	}
}

func TestUserInGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(fx *fixture)
		advance time.Duration
		user    string
		want    bool
	}{
		{"user-level", func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", 0) }, 0, "alice", true},
		{"user-level without connections", func(fx *fixture) { fx.h.UserJoinGroup("zed", "g", 0) }, 0, "zed", true},
		{"user-level live TTL", func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", time.Minute) }, 59 * time.Second, "alice", true},
		{"user-level expired", func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", time.Minute) }, time.Minute, "alice", false},
		{"one connection joined directly", func(fx *fixture) { fx.join("a2", "g") }, 0, "alice", true},
		{"another user's connection", func(fx *fixture) { fx.join("b1", "g") }, 0, "alice", false},
		{"group exists, user not in it", func(fx *fixture) { fx.h.UserJoinGroup("bob", "g", 0) }, 0, "alice", false},
		{"unknown group", func(fx *fixture) {}, 0, "alice", false},
		{"after leaving", func(fx *fixture) {
			fx.join("a1", "g")
			fx.h.UserJoinGroup("alice", "g", 0)
			fx.h.UserLeaveGroup("alice", "g")
		}, 0, "alice", false},
		{"anonymous", func(fx *fixture) { fx.join("n1", "g") }, 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"), newConn("a2", "alice"), newConn("b1", "bob"), newConn("n1", ""))
			tt.setup(fx)
			fx.clk.Advance(tt.advance)
			if got := fx.h.UserInGroup(tt.user, "g"); got != tt.want {
				t.Fatalf("UserInGroup(%q, g) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

func TestGroupExists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(fx *fixture)
		advance time.Duration
		want    bool
	}{
		{"direct member", func(fx *fixture) { fx.join("a1", "g") }, 0, true},
		{"anonymous direct member", func(fx *fixture) { fx.join("n1", "g") }, 0, true},
		{"user-level member with a connection", func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", 0) }, 0, true},
		{"user-level member without connections", func(fx *fixture) { fx.h.UserJoinGroup("zed", "g", 0) }, 0, false},
		{"user-level member expired", func(fx *fixture) { fx.h.UserJoinGroup("alice", "g", time.Second) }, time.Second, false},
		{"everyone left", func(fx *fixture) {
			fx.join("a1", "g")
			fx.h.UserJoinGroup("bob", "g", 0)
			fx.h.LeaveGroup("a1", "g")
			fx.h.UserLeaveGroup("bob", "g")
		}, 0, false},
		{"member removed", func(fx *fixture) {
			fx.join("b1", "g")
			fx.h.Remove(fx.conns["b1"])
			delete(fx.conns, "b1")
		}, 0, false},
		{"never created", func(fx *fixture) {}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"), newConn("b1", "bob"), newConn("n1", ""))
			tt.setup(fx)
			fx.clk.Advance(tt.advance)
			if got := fx.h.GroupExists("g"); got != tt.want {
				t.Fatalf("GroupExists(g) = %v, want %v", got, tt.want)
			}
			fx.groupSet("g") // GroupConns and SendGroup agree with GroupExists
		})
	}
}

func TestSweepExpired(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		advance   time.Duration
		userLevel map[string][]string // user -> groups still held after the sweep
		groups    []string            // groups still indexed after the sweep
	}{
		{"nothing expired", 0,
			map[string][]string{"alice": {"short", "long", "forever", "shared", "direct"}, "bob": {"shared"}},
			[]string{"short", "long", "forever", "shared", "direct"}},
		{"one-second membership expired", 30 * time.Second,
			map[string][]string{"alice": {"short", "long", "forever", "shared"}, "bob": {"shared"}},
			[]string{"short", "long", "forever", "shared", "direct"}},
		{"one-minute memberships expired", time.Minute,
			map[string][]string{"alice": {"long", "forever"}, "bob": {"shared"}},
			[]string{"long", "forever", "shared", "direct"}},
		{"all TTLs expired", 24 * time.Hour,
			map[string][]string{"alice": {"forever"}, "bob": {"shared"}},
			// "shared" stays for bob (no TTL); "direct" keeps its direct member.
			[]string{"forever", "shared", "direct"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"), newConn("b1", "bob"))
			fx.h.UserJoinGroup("alice", "short", time.Minute)
			fx.h.UserJoinGroup("alice", "long", time.Hour)
			fx.h.UserJoinGroup("alice", "forever", 0)
			fx.h.UserJoinGroup("alice", "shared", time.Minute)
			fx.h.UserJoinGroup("bob", "shared", 0)
			fx.h.UserJoinGroup("alice", "direct", time.Second)
			fx.join("a1", "direct")
			fx.clk.Advance(tt.advance)
			before := map[string][]string{}
			for _, g := range []string{"short", "long", "forever", "shared", "direct"} {
				before[g] = fx.groupSet(g)
			}
			fx.h.SweepExpired()
			// Sweeping changes memory, never who is reached.
			for g, want := range before {
				if got := fx.groupSet(g); !equalIDs(got, want) {
					t.Errorf("after sweep %q reaches %v, before %v", g, got, want)
				}
			}
			fx.h.mu.RLock()
			got := map[string][]string{}
			for u, ug := range fx.h.userGroups {
				for g := range ug {
					got[u] = append(got[u], g)
				}
			}
			var groups []string
			for g := range fx.h.groups {
				groups = append(groups, g)
			}
			fx.h.mu.RUnlock()
			if !equalIDs(groups, tt.groups) {
				t.Errorf("groups after sweep = %v, want %v", wantIDs(groups...), wantIDs(tt.groups...))
			}
			if len(got) != len(tt.userLevel) {
				t.Errorf("user-level memberships after sweep = %v, want %v", got, tt.userLevel)
			}
			for u, want := range tt.userLevel {
				if !equalIDs(got[u], want) {
					t.Errorf("user-level memberships of %s = %v, want %v", u, wantIDs(got[u]...), wantIDs(want...))
				}
			}
		})
	}
}

// TestSendGroupsDedupeWhileMembershipExpires pins down SendGroups' once-only guarantee when a
// user-level membership expires in the middle of the send: a clock that moves on every reading
// places the expiry between the moment group "a" is walked and the moment group "b" asks whether
// its members were already reached through "a".
func TestSendGroupsDedupeWhileMembershipExpires(t *testing.T) {
	t.Parallel()
	for ttl := range 6 {
		t.Run(fmt.Sprintf("expires after %d clock readings", ttl), func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, newConn("a1", "alice"))
			fx.clk.step.Store(int64(time.Millisecond))
			fx.h.UserJoinGroup("alice", "a", time.Duration(ttl)*time.Millisecond)
			fx.join("a1", "b")
			res := fx.h.SendGroups([]string{"a", "b"}, newMulti())
			if n := len(fx.conns["a1"].received()); n != 1 || res.Delivered != 1 {
				t.Fatalf("a1 received %d frames (Delivered %d), want exactly 1", n, res.Delivered)
			}
		})
	}
}
