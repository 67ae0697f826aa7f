package storage

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/storage/redistest"
)

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)

	// The slot migration below changes the cluster under every user, so it runs after the
	// group of parallel subtests has finished.
	t.Run("Shared", func(t *testing.T) {
		testClusterShared(t, cl)
	})
	t.Run("SlotMigration", func(t *testing.T) {
		testClusterSlotMigration(t, cl)
	})
}

func testClusterShared(t *testing.T, cl *redistest.Cluster) {
	t.Run("Conformance", func(t *testing.T) {
		t.Parallel()
		runConformance(t, func(t *testing.T) func() node {
			prefix := uniquePrefix(t)
			return func() node { return newTestRedis(t, RedisOptions{Options: Options{Prefix: prefix}, URL: cl.URL()}) }
		})
	})

	t.Run("ShardedPubSubAcrossShards", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		prefix := uniquePrefix(t)
		a := newTestRedis(t, RedisOptions{Options: Options{Prefix: prefix}, URL: cl.URL()})
		// One node given a single address: detected as a Cluster seed.
		b := newTestRedis(t, RedisOptions{Options: Options{Prefix: prefix}, URL: cl.Nodes[1].URL()})
		if a.c.mode != modeCluster || b.c.mode != modeCluster {
			t.Fatalf("modes %v, %v; want cluster", a.c.mode, b.c.mode)
		}
		// Pick two topics per master.
		type topicAt struct {
			name, channel string
			master        int
		}
		var topics []topicAt
		perMaster := map[int]int{}
		for i := 0; len(topics) < 6; i++ {
			name := "topic-" + strconv.Itoa(i)
			ch, _ := a.c.channel("", name)
			slot := keySlot(ch)
			m := cl.Master(slot)
			if perMaster[m] == 2 {
				continue
			}
			perMaster[m]++
			if got, err := cl.Admin[0].ClusterKeySlot(ctx, ch).Result(); err != nil || got != int64(slot) {
				t.Fatalf("CLUSTER KEYSLOT %q = %d, %v; keySlot says %d", ch, got, err, slot)
			}
			topics = append(topics, topicAt{name, ch, m})
		}
		inboxes := make([]*inbox, len(topics))
		for i, tp := range topics {
			inboxes[i] = newInbox()
			defer mustSubscribe(t, b, tp.name, inboxes[i].handle).Close()
			defer mustSubscribe(t, b, tp.name, func(string, []byte) {}).Close() // refcounted: no second SSUBSCRIBE
		}
		for i, tp := range topics {
			for j, admin := range cl.Admin {
				shard, err := admin.PubSubShardNumSub(ctx, tp.channel).Result()
				if err != nil {
					t.Fatal(err)
				}
				plain, err := admin.PubSubNumSub(ctx, tp.channel).Result()
				if err != nil {
					t.Fatal(err)
				}
				want := int64(0)
				if j == tp.master {
					want = 1
				}
				if shard[tp.channel] != want || plain[tp.channel] != 0 {
					t.Fatalf("topic %d on master %d: SHARDNUMSUB %d (want %d), NUMSUB %d (want 0)",
						i, j, shard[tp.channel], want, plain[tp.channel])
				}
			}
		}
		for round := range 20 {
			for _, tp := range topics {
				mustPublish(t, a, tp.name, tp.name+"#"+strconv.Itoa(round))
			}
		}
		for i, tp := range topics {
			got := inboxes[i].waitN(t, 20)
			for round, m := range got {
				if want := tp.name + "#" + strconv.Itoa(round); m != want {
					t.Fatalf("topic %s message %d = %q, want %q", tp.name, round, m, want)
				}
			}
		}
		// Each node holds at most one subscription connection per bucket in use.
		conns := 0
		for _, bk := range b.c.buckets {
			bk.mu.Lock()
			if bk.ps != nil {
				conns++
			}
			bk.mu.Unlock()
		}
		if conns > len(topics) {
			t.Fatalf("%d subscription connections for %d topics", conns, len(topics))
		}
	})

}

// testClusterSlotMigration moves the slot of a subscribed topic to another master: Redis
// SUNSUBSCRIBEs the subscriber, which resubscribes on the new owner by itself.
func testClusterSlotMigration(t *testing.T, cl *redistest.Cluster) {
	{
		ctx := testCtx(t)
		prefix := uniquePrefix(t)
		a := newTestRedis(t, RedisOptions{Options: Options{Prefix: prefix}, URL: cl.URL()})
		b := newTestRedis(t, RedisOptions{Options: Options{Prefix: prefix}, URL: cl.URL()})
		ch, _ := a.c.channel("", "migrating")
		slot := keySlot(ch)
		from := cl.Master(slot)
		to := (from + 1) % 3
		in := newInbox()
		defer mustSubscribe(t, b, "migrating", in.handle).Close()
		mustPublish(t, a, "migrating", "before")
		in.waitN(t, 1)

		// Move the (keyless) slot: importing/migrating, then assign it everywhere.
		s := strconv.Itoa(int(slot))
		steps := []struct {
			node int
			args []any
		}{
			{to, []any{"CLUSTER", "SETSLOT", s, "IMPORTING", cl.IDs[from]}},
			{from, []any{"CLUSTER", "SETSLOT", s, "MIGRATING", cl.IDs[to]}},
			{to, []any{"CLUSTER", "SETSLOT", s, "NODE", cl.IDs[to]}},
			{from, []any{"CLUSTER", "SETSLOT", s, "NODE", cl.IDs[to]}},
			{3 - from - to, []any{"CLUSTER", "SETSLOT", s, "NODE", cl.IDs[to]}},
		}
		for _, st := range steps {
			if err := cl.Admin[st.node].Do(ctx, st.args...).Err(); err != nil {
				t.Fatalf("%v on node %d: %v", st.args, st.node, err)
			}
		}
		i := 0
		eventually(t, 10*time.Second, "delivery after the slot moved", func() bool {
			i++
			_ = a.Publish(ctx, "migrating", []byte("after-"+strconv.Itoa(i)))
			for _, m := range in.snapshot() {
				if strings.HasPrefix(m, "after-") {
					return true
				}
			}
			return false
		})
		eventually(t, 5*time.Second, "the subscription to live on the new master", func() bool {
			n, err := cl.Admin[to].PubSubShardNumSub(ctx, ch).Result()
			return err == nil && n[ch] == 1
		})
		if s := b.Stats(); s.Resubscribes == 0 {
			t.Fatalf("stats %+v: want a resubscribe", s)
		}
	}
}
