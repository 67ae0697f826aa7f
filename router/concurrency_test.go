package router

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestConcurrentOperations runs every mutating and reading operation from many goroutines at once
// (meant for -race), then checks that the indexes still agree and that tearing everything down
// leaves no residue.
func TestConcurrentOperations(t *testing.T) {
	t.Parallel()
	const (
		workers = 16
		ops     = 3000
		nIDs    = 48 // connection ids are shared between workers so Add replaces and Remove goes stale
		nUsers  = 6
		nGroups = 6
	)
	clk := newFakeClock()
	r := New(clk.Now)
	id := func(rng *rand.Rand) string { return fmt.Sprintf("c%d", rng.IntN(nIDs)) }
	user := func(rng *rand.Rand) string {
		if n := rng.IntN(nUsers + 1); n < nUsers {
			return fmt.Sprintf("u%d", n)
		}
		return "" // anonymous
	}
	group := func(rng *rand.Rand) string { return fmt.Sprintf("g%d", rng.IntN(nGroups)) }
	pick := func(rng *rand.Rand, f func(*rand.Rand) string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(rng)
		}
		return out
	}
	payload := newMulti()
	protocols := []string{"json", "messagepack", "custom"}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			var mine []*countConn // connections this worker added, possibly replaced since
			for range ops {
				// Router.Hub is called on every operation to exercise Router.mu alongside Hub.mu.
				h := r.Hub("chat")
				switch op := rng.IntN(20); op {
				case 0, 1:
					c := &countConn{id: id(rng), user: user(rng), proto: protocols[rng.IntN(len(protocols))]}
					h.Add(c)
					mine = append(mine, c)
				case 2:
					if len(mine) > 0 {
						i := rng.IntN(len(mine))
						h.Remove(mine[i])
						mine = append(mine[:i], mine[i+1:]...)
					}
				case 3:
					h.JoinGroup(id(rng), group(rng))
				case 4:
					g := group(rng)
					if rng.IntN(4) == 0 {
						g = ""
					}
					h.LeaveGroup(id(rng), g)
				case 5:
					h.UserJoinGroup(user(rng), group(rng), time.Duration(rng.IntN(3))*time.Second)
				case 6:
					g := group(rng)
					if rng.IntN(3) == 0 {
						g = ""
					}
					h.UserLeaveGroup(user(rng), g)
				case 7:
					h.SendConnection(id(rng), payload)
				case 8:
					h.SendConnections(pick(rng, id, 4), payload)
				case 9:
					h.SendUsers(pick(rng, user, 3), payload)
				case 10:
					h.Broadcast(payload, pick(rng, id, 2))
				case 11:
					h.SendGroup(group(rng), payload, pick(rng, id, 1), pick(rng, user, 1))
				case 12:
					h.SendGroups(pick(rng, group, 3), Frame{Protocol: "json", Data: payload.json})
				case 13:
					h.UserInGroup(user(rng), group(rng))
					h.UserExists(user(rng))
					h.GroupExists(group(rng))
				case 14:
					h.GroupConns(group(rng))
					h.UserConns(user(rng))
					h.Conns()
					h.Count()
					h.Conn(id(rng))
				case 15:
					h.SweepExpired()
				case 16:
					clk.Advance(time.Duration(rng.IntN(500)) * time.Millisecond)
				case 17:
					r.Hub(fmt.Sprintf("hub%d", rng.IntN(3))).Add(&countConn{id: id(rng), proto: "json"})
				case 18:
					r.Hubs()
					r.Lookup("chat")
				case 19:
					if len(mine) > 0 {
						h.JoinGroup(mine[rng.IntN(len(mine))].id, group(rng))
					}
				}
			}
		})
	}
	wg.Wait()

	h := r.Hub("chat")
	checkInvariants(t, h)
	for _, c := range h.Conns() {
		if !h.Remove(c) {
			t.Fatalf("Remove(%s) = false for a registered connection", c.ID())
		}
	}
	for u := range nUsers {
		h.UserLeaveGroup(fmt.Sprintf("u%d", u), "")
	}
	h.UserLeaveGroup("", "")
	checkInvariants(t, h)
	h.mu.RLock()
	defer h.mu.RUnlock()
	if n := len(h.conns) + len(h.users) + len(h.groups) + len(h.userGroups); n != 0 {
		t.Fatalf("residue after teardown: %d conns, %d users, %d groups, %d user memberships",
			len(h.conns), len(h.users), len(h.groups), len(h.userGroups))
	}
}
