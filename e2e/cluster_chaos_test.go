package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server/servertest"
	"github.com/signalrd/signalrd/storage/redistest"
)

// streamer broadcasts "tick"(src, seq) to every client of the hub, seq = 0, 1, 2, ..., from an
// app server with one socket (so the service sees them in order), and remembers when each was
// sent.
type streamer struct {
	src    string
	mu     sync.Mutex
	sentAt []time.Time // by seq; zero when the send failed
	failed int
	stop   chan struct{}
	done   chan struct{}
}

func startStreamer(t *testing.T, hub *appserver.HubContext, src string, every time.Duration) *streamer {
	s := &streamer{src: src, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for seq := int64(0); ; seq++ {
			at := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := hub.Clients.All().Send(ctx, "tick", src, seq)
			cancel()
			s.mu.Lock()
			if err != nil {
				at = time.Time{}
				s.failed++
			}
			s.sentAt = append(s.sentAt, at)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() { s.Stop() })
	return s
}

// Stop ends the stream and returns how many ticks it sent.
func (s *streamer) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.sent()
}

// sent is how many ticks were sent (or tried) so far.
func (s *streamer) sent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.sentAt))
}

func (s *streamer) at(seq int64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sentAt[seq]
}

func (s *streamer) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// checkStream compares the ticks one client received from s (arrival order) with what s sent
// (n ticks): no duplicate, no reordering, nothing missing from seq `from` on except ticks sent
// within [lossFrom, lossTo]. It returns the lost seqs.
func checkStream(t *testing.T, who string, s *streamer, got []int64, from, n int64, lossFrom, lossTo time.Time) []int64 {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("%s: tick %d from %s arrived after %d (duplicate or reordered)", who, got[i], s.src, got[i-1])
			return nil
		}
	}
	have := map[int64]bool{}
	for _, g := range got {
		have[g] = true
	}
	var lost []int64
	for seq := from; seq < n; seq++ {
		if have[seq] || s.at(seq).IsZero() {
			continue
		}
		lost = append(lost, seq)
		if at := s.at(seq); at.Before(lossFrom) || at.After(lossTo) {
			t.Errorf("%s: tick %d from %s, sent %v after the outage began, was lost outside the outage window [%v, %v]",
				who, seq, s.src, at.Sub(lossFrom), time.Duration(0), lossTo.Sub(lossFrom))
		}
	}
	return lost
}

// TestChaosRedisRestart restarts (kills, then starts empty) the Redis two nodes share while
// each node's app server streams broadcasts to a client on each node. Local delivery never
// stops; cross-node delivery resumes by itself once Redis is back; what was lost was sent while
// the backplane was down; no node takes the restart for the death of its peer; connection
// ownership is usable again afterwards (a send to one connection across nodes).
// Publishes that failed during the outage are counted in signalrd_backplane_lost_total.
func TestChaosRedisRestart(t *testing.T) {
	t.Parallel()
	rp := redistest.Start(t)
	c := startNodes(t, rp.URL(), 2, clusterHeartbeatOutages)
	appA, logsA := soApp(t, c.connStr(1, ""), newStack(), 1)
	appB, logsB := soApp(t, c.connStr(2, ""), newStack(), 1)
	c.waitNegotiable(t, "chat")
	cA := dialNode(t, c.node(1), "chat", "ua", "json")
	cB := dialNode(t, c.node(2), "chat", "ub", "messagepack")

	const every = 5 * time.Millisecond
	sA := startStreamer(t, appA.Hub("chat"), "A", every)
	sB := startStreamer(t, appB.Hub("chat"), "B", every)
	// Cross-node delivery starts once each node subscribed to the hub's topic (after its first
	// client): from then on nothing may be lost.
	waitFor(t, 10*time.Second, "cross-node ticks", func() bool { return len(cA.ticks("B")) >= 20 && len(cB.ticks("A")) >= 20 })
	fromB, fromA := cA.ticks("B")[0], cB.ticks("A")[0]
	ctx := ctxT(t)
	if err := appA.Hub("chat").Clients.Client(cB.conn.ConnectionID()).Send(ctx, "message", "direct-before"); err != nil {
		t.Fatal(err)
	}
	cB.waitMsg(t, "direct-before")

	// Outage: long enough for several failed heartbeats and ~100 local ticks per node.
	killAt := time.Now()
	rp.Stop()
	atKillA, atKillB := sA.sent(), sB.sent()
	waitFor(t, 20*time.Second, "local delivery during the outage", func() bool {
		return lastTick(cA, "A") >= atKillA+100 && lastTick(cB, "B") >= atKillB+100
	})
	restartAt := time.Now()
	rp.Start()
	outage := restartAt.Sub(killAt)
	atRestartA, atRestartB := sA.sent(), sB.sent()
	var resumedA, resumedB time.Time // when each client saw a cross-node tick sent after the restart
	waitFor(t, 20*time.Second, "cross-node delivery to resume", func() bool {
		if resumedA.IsZero() && lastTick(cA, "B") >= atRestartB {
			resumedA = time.Now()
		}
		if resumedB.IsZero() && lastTick(cB, "A") >= atRestartA {
			resumedB = time.Now()
		}
		return !resumedA.IsZero() && !resumedB.IsZero()
	})
	t.Logf("outage %v; cross-node delivery resumed %v (to node 1) and %v (to node 2) after the restart",
		outage, resumedA.Sub(restartAt), resumedB.Sub(restartAt))
	// Run on a while after recovery: nothing more may be lost.
	moreA, moreB := sA.sent()+50, sB.sent()+50
	waitFor(t, 20*time.Second, "ticks after recovery", func() bool {
		return lastTick(cB, "A") >= moreA && lastTick(cA, "B") >= moreB
	})
	nA, nB := sA.Stop(), sB.Stop()
	waitFor(t, 10*time.Second, "the last ticks", func() bool {
		return lastTick(cA, "A") == nA-1 && lastTick(cB, "A") == nA-1 && lastTick(cA, "B") == nB-1 && lastTick(cB, "B") == nB-1
	})

	if f := sA.failures() + sB.failures(); f != 0 {
		t.Errorf("%d app-server sends failed: the app servers' own nodes must take them during the outage", f)
	}
	// Local: every tick, in order, the outage notwithstanding.
	if lost := checkStream(t, "node 1 client (local)", sA, cA.ticks("A"), 0, nA, time.Time{}, time.Time{}); len(lost) > 0 {
		t.Errorf("node 1 client lost %d local ticks", len(lost))
	}
	if lost := checkStream(t, "node 2 client (local)", sB, cB.ticks("B"), 0, nB, time.Time{}, time.Time{}); len(lost) > 0 {
		t.Errorf("node 2 client lost %d local ticks", len(lost))
	}
	// Cross-node: losses only for ticks sent from shortly before the kill (in flight when Redis
	// died) until delivery resumed.
	const inFlight = time.Second
	lostA := checkStream(t, "node 2 client (from node 1)", sA, cB.ticks("A"), fromA, nA, killAt.Add(-inFlight), resumedB)
	lostB := checkStream(t, "node 1 client (from node 2)", sB, cA.ticks("B"), fromB, nB, killAt.Add(-inFlight), resumedA)
	t.Logf("cross-node ticks lost: %d of %d from node 1 %s, %d of %d from node 2 %s",
		len(lostA), nA-fromA, lossWindow(sA, lostA, killAt), len(lostB), nB-fromB, lossWindow(sB, lostB, killAt))

	// Every node's app server published ticks while Redis was down: those publishes failed
	// and were counted.
	for i, n := range []*servertest.Instance{c.node(1), c.node(2)} {
		if v := counterValue(t, n, "signalrd_backplane_lost_total"); v == 0 {
			t.Errorf("node %d counted no lost backplane publish over a %v Redis outage", i+1, outage)
		}
	}
	// Ownership survives the restart: a send to one connection on the other node arrives.
	if err := appA.Hub("chat").Clients.Client(cB.conn.ConnectionID()).Send(ctx, "message", "direct-after"); err != nil {
		t.Fatal(err)
	}
	cB.waitMsg(t, "direct-after")

	// The restart emptied the liveness registry at once: no node may have been declared dead.
	for i, logs := range []*logBuffer{logsA, logsB} {
		if strings.Contains(logs.String(), "service instance offline") {
			t.Errorf("app server %d was told a node went offline during a Redis restart:\n%s", i+1, logs)
		}
	}
}

// lossWindow describes when the lost ticks were sent, relative to t0.
func lossWindow(s *streamer, lost []int64, t0 time.Time) string {
	if len(lost) == 0 {
		return ""
	}
	return fmt.Sprintf("(sent %v to %v after the kill)",
		s.at(lost[0]).Sub(t0).Round(time.Millisecond), s.at(lost[len(lost)-1]).Sub(t0).Round(time.Millisecond))
}

// lastTick is the highest tick from src a client received (-1: none).
func lastTick(g *goClient, src string) int64 {
	ts := g.ticks(src)
	if len(ts) == 0 {
		return -1
	}
	return slices.Max(ts)
}

// TestChaosNodeKilled takes a node away while official clients with automatic reconnect are
// connected to it and an app server on another node streams broadcasts: "stopped" shuts it down
// (it closes its clients and leaves the cluster), "crashed" first cuts it off from Redis, so it
// vanishes from the backplane without a word and the others notice when its liveness entry
// expires. Either way its clients reconnect through the remaining nodes and receive the rest of
// the stream, a client of an unaffected node misses nothing, the app server is told the node is
// offline and hears that its clients are gone, and the registry forgets the node's connections.
func TestChaosNodeKilled(t *testing.T) {
	t.Parallel()
	rp := redistest.Start(t)
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "stopped", true: "crashed"}[crash]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testNodeKilled(t, rp, crash)
		})
	}
}

func testNodeKilled(t *testing.T, rp *redistest.Server, crash bool) {
	// Node 2 reaches Redis through a proxy that can cut it off.
	link := startProxy(t, rp.Addr())
	c := startNodes(t, rp.URL(), 3, clusterHeartbeat, map[int]string{2: "redis://" + link.Addr()})
	front := startRouteFront(t, c, 2, 3)
	st := newStack()
	app, logs := soApp(t, c.connStr(1, front.URL), st, 1)
	appURL := negotiateFront(t, app)
	c.waitNegotiable(t, "chat")
	d := jsclient.Start(t)
	ctx := ctxT(t)

	delays := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}
	for range 10 {
		delays = append(delays, time.Second)
	}
	type jsc struct {
		name, route string
		v           variant
	}
	victims := []jsc{
		{"ws", "32", variant{"WebSockets", "json"}},
		{"sse", "32", variant{"ServerSentEvents", "json"}},
		{"lp", "32", variant{"LongPolling", "messagepack"}},
	}
	survivor := jsc{"survivor", "23", variant{"WebSockets", "messagepack"}}
	ids := map[string]string{}
	for _, cl := range append(slices.Clone(victims), survivor) {
		id, err := d.Connect(ctx, cl.name, jsclient.ConnectOptions{
			URL:             appURL + "/chat?user=" + cl.name + "&route=" + cl.route,
			Protocol:        cl.v.protocol,
			Transport:       cl.v.transport,
			Handlers:        []string{"tick", "message"},
			ReconnectDelays: delays,
		})
		if err != nil {
			t.Fatalf("connect %s: %v", cl.name, err)
		}
		ids[cl.name] = id
	}
	waitFor(t, 10*time.Second, "three clients on node 2, one on node 3", func() bool {
		return clientGauge(t, c.node(2)) == 3 && clientGauge(t, c.node(3)) == 1
	})

	s := startStreamer(t, app.Hub("chat"), "app", 10*time.Millisecond)
	all := []string{"ws", "sse", "lp", "survivor"}
	waitFor(t, 10*time.Second, "ticks at every client", func() bool {
		for _, n := range all {
			if len(jsTicks(t, d, n)) < 10 {
				return false
			}
		}
		return true
	})

	killAt := time.Now()
	if crash {
		link.Kill()
	}
	if err := c.node(2).Stop(); err != nil {
		t.Fatalf("stopping node 2: %v", err)
	}
	t.Logf("node 2 stopped in %v", time.Since(killAt))
	reconnectedAt := map[string]time.Time{}
	for _, v := range victims {
		ev, err := d.WaitEvent(ctx, jsclient.IsReconnected(v.name))
		if err != nil {
			t.Fatalf("%s did not reconnect: %v", v.name, err)
		}
		reconnectedAt[v.name] = time.Now()
		if ev.ConnectionID == "" || ev.ConnectionID == ids[v.name] {
			t.Fatalf("%s reconnected with connection id %q (was %q)", v.name, ev.ConnectionID, ids[v.name])
		}
		t.Logf("%s reconnected after %v", v.name, reconnectedAt[v.name].Sub(killAt))
	}
	waitFor(t, 10*time.Second, "the reconnected clients on node 3", func() bool { return clientGauge(t, c.node(3)) == 4 })
	for _, v := range victims {
		res, err := d.Invoke(ctx, v.name, "echo", map[string]any{"n": v.name})
		if err != nil || !strings.Contains(string(res), v.name) {
			t.Fatalf("%s echo after reconnecting = %s, %v", v.name, res, err)
		}
	}
	// Later ticks reach the reconnected clients.
	after := s.sent()
	waitFor(t, 10*time.Second, "ticks after the reconnection", func() bool {
		for _, v := range victims {
			if ts := jsTicks(t, d, v.name); len(ts) == 0 || slices.Max(ts) < after {
				return false
			}
		}
		return true
	})
	// The app server is told the node is offline and learns that its clients are gone.
	waitFor(t, 10*time.Second, "the offline ping for node 2", func() bool {
		l := logs.String()
		return strings.Contains(l, "service instance offline") && strings.Contains(l, "instance=n2")
	})
	t.Logf("offline ping after %v", time.Since(killAt))
	for _, v := range victims {
		eventually(t, "OnDisconnected for "+v.name+"'s first connection", func() bool {
			_, ok := st.disconnectedErr(ids[v.name])
			return ok
		})
	}
	if _, ok := st.disconnectedErr(ids[survivor.name]); ok {
		t.Errorf("the survivor on node 3 was reported disconnected")
	}
	// The registry no longer names node 2 as the owner of its connections (a crashed node's
	// are removed by the first live node once it is declared dead).
	admin := redistest.Admin(t, rp.Addr())
	waitFor(t, 10*time.Second, "node 2's connections to leave the registry", func() bool {
		for _, v := range victims {
			keys, err := admin.Keys(ctx, c.prefix+":*c/"+ids[v.name]).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if owner, err := admin.Get(ctx, k).Result(); err == nil && owner == "n2" {
					return false
				}
			}
		}
		return true
	})

	n := s.Stop()
	waitFor(t, 10*time.Second, "the last tick everywhere", func() bool {
		for _, name := range all {
			if ts := jsTicks(t, d, name); len(ts) == 0 || slices.Max(ts) != n-1 {
				return false
			}
		}
		return true
	})
	if f := s.failures(); f != 0 {
		t.Errorf("%d app-server sends failed", f)
	}
	// The survivor's node was never touched: the whole stream, in order.
	if lost := checkStream(t, "survivor", s, jsTicks(t, d, "survivor"), 0, n, time.Time{}, time.Time{}); len(lost) > 0 {
		t.Errorf("the survivor lost %d ticks", len(lost))
	}
	// The victims lose only what was sent between the kill and their reconnection.
	for _, v := range victims {
		lost := checkStream(t, v.name, s, jsTicks(t, d, v.name), 0, n, killAt.Add(-time.Second), reconnectedAt[v.name])
		t.Logf("%s lost %d ticks around its reconnection %s", v.name, len(lost), lossWindow(s, lost, killAt))
	}
	for _, name := range all {
		noCloseEvent(t, d, name)
	}
}

// jsTicks is the seqs of the "tick" messages a JS client received, in arrival order.
func jsTicks(t *testing.T, d *jsclient.Driver, conn string) []int64 {
	t.Helper()
	var out []int64
	for _, e := range d.Messages(conn, "tick") {
		var seq int64
		if len(e.Args) != 2 || json.Unmarshal(e.Args[1], &seq) != nil {
			t.Fatalf("%s: bad tick %v", conn, e.Args)
		}
		out = append(out, seq)
	}
	return out
}

// noCloseEvent checks that a client with automatic reconnect never gave up.
func noCloseEvent(t *testing.T, d *jsclient.Driver, conn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if ev, err := d.WaitEvent(ctx, jsclient.IsClose(conn)); err == nil {
		t.Errorf("%s closed: %s", conn, fmt.Sprint(ev.Error))
	}
}

// counterValue sums a counter's samples in a node's metrics registry.
func counterValue(t *testing.T, n *servertest.Instance, name string) float64 {
	t.Helper()
	mfs, err := n.Server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
