package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Slots is the number of Redis Cluster hash slots.
const Slots = 16384

// Cluster is three redis-server masters in cluster mode on loopback, slots split evenly
// (0-5460, 5461-10922, 10923-16383), built by hand with CLUSTER ADDSLOTSRANGE and MEET.
type Cluster struct {
	Nodes []*Server
	Admin []*redis.Client
	IDs   []string // node ids, by index
}

// StartCluster starts the three masters and waits until the cluster has formed.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busPorts []int
	for i := range 3 {
		bus := FreePort(t)
		srv := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "3000", "--cluster-port", strconv.Itoa(bus))
		admin := Admin(t, srv.Addr())
		if err := admin.ClusterAddSlotsRange(ctx, i*Slots/3, (i+1)*Slots/3-1).Err(); err != nil {
			t.Fatal(err)
		}
		id, err := admin.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes, c.Admin, c.IDs = append(c.Nodes, srv), append(c.Admin, admin), append(c.IDs, id)
		busPorts = append(busPorts, bus)
	}
	for i := 1; i < 3; i++ {
		if err := c.Admin[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.Nodes[i].Port(), busPorts[i]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for !c.formed(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("timed out after 15s waiting for the Redis Cluster to form")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func (c *Cluster) formed(ctx context.Context) bool {
	for _, a := range c.Admin {
		info, err := a.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
			return false
		}
	}
	return true
}

// URL lists every master, the form go-redis and signalrd take for a Redis Cluster.
func (c *Cluster) URL() string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	return "redis://" + strings.Join(addrs, ",")
}

// Master is the index of the node owning slot.
func (c *Cluster) Master(slot uint16) int { return int(slot) * 3 / Slots }
