package router

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRouterHub(t *testing.T) {
	t.Parallel()
	r := New(nil)
	if _, ok := r.Lookup("chat"); ok {
		t.Fatal("Lookup on an empty router found a hub")
	}
	if n := len(r.Hubs()); n != 0 {
		t.Fatalf("len(Hubs()) = %d, want 0", n)
	}
	h := r.Hub("chat")
	if h.ID() != "chat" {
		t.Fatalf("ID() = %q, want chat", h.ID())
	}
	if again := r.Hub("chat"); again != h {
		t.Fatal("Hub returned a different hub for the same id")
	}
	if got, ok := r.Lookup("chat"); !ok || got != h {
		t.Fatalf("Lookup(chat) = %p, %v; want %p, true", got, ok, h)
	}
	// Ids are compared as given; lower-casing is the caller's job.
	if other := r.Hub("Chat"); other == h {
		t.Fatal("Hub(Chat) returned the hub of chat")
	}
	var ids []string
	for _, h := range r.Hubs() {
		ids = append(ids, h.ID())
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"Chat", "chat"}) {
		t.Fatalf("Hubs() = %v, want [Chat chat]", ids)
	}
}

func TestRouterHubConcurrentCreate(t *testing.T) {
	t.Parallel()
	r := New(nil)
	const n = 32
	hubs := make([]*Hub, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { hubs[i] = r.Hub("chat") })
	}
	wg.Wait()
	for i, h := range hubs {
		if h != hubs[0] {
			t.Fatalf("goroutine %d got a different hub", i)
		}
	}
	if got := len(r.Hubs()); got != 1 {
		t.Fatalf("len(Hubs()) = %d, want 1", got)
	}
}

func TestNewNilClockUsesWallTime(t *testing.T) {
	t.Parallel()
	h := New(nil).Hub("chat")
	h.Add(newConn("a1", "alice"))
	h.UserJoinGroup("alice", "g", time.Hour)
	if !h.UserInGroup("alice", "g") {
		t.Fatal("a one-hour membership on the wall clock is already expired")
	}
	h.UserJoinGroup("alice", "old", time.Nanosecond)
	// No sleep: poll until a nanosecond of wall time has certainly passed.
	for deadline := time.Now().Add(5 * time.Second); h.UserInGroup("alice", "old"); {
		if time.Now().After(deadline) {
			t.Fatal("one-nanosecond membership never expired")
		}
	}
}

func TestFrameGet(t *testing.T) {
	t.Parallel()
	data := []byte("x\x1e")
	tests := []struct {
		name     string
		frame    Frame
		protocol string
		ok       bool
	}{
		{"same", Frame{"json", data}, "json", true},
		{"case-insensitive", Frame{"JSON", data}, "json", true},
		{"case-insensitive other way", Frame{"messagepack", data}, "MessagePack", true},
		{"other protocol", Frame{"json", data}, "messagepack", false},
		{"empty conn protocol", Frame{"json", data}, "", false},
		{"prefix is not a match", Frame{"json", data}, "jsonx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tt.frame.Get(tt.protocol)
			if ok != tt.ok {
				t.Fatalf("Get(%q) ok = %v, want %v", tt.protocol, ok, tt.ok)
			}
			if ok && &got[0] != &data[0] {
				t.Fatal("Get returned a copy, want the caller's slice")
			}
			if !ok && got != nil {
				t.Fatalf("Get(%q) = %q on a miss, want nil", tt.protocol, got)
			}
		})
	}
}
