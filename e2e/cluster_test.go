package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/storage/redistest"
)

// TestClusterOfficialClients runs official JS clients against a 3-node cluster sharing one
// Redis. The app server's sockets go to node 1 only; its negotiate sends clients to a front
// that routes each client's service negotiate to one node and its transport to another
// (route=23: negotiate on node 2, connection on node 3; route=32 the other way), later
// requests alternating between the two (no stickiness). So every client is relayed to the app
// server over the backplane, negotiate and connection never share a node, SSE sends and long
// polls are forwarded to the owning node half the time, and every fan-out crosses nodes.
func TestClusterOfficialClients(t *testing.T) {
	redis := redistest.Start(t)
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			c := startNodes(t, redis.URL(), 3, clusterHeartbeat)
			front := startRouteFront(t, c, 2, 3)
			st := newStack()
			app, _ := soApp(t, c.connStr(1, front.URL), st, 2)
			appURL := negotiateFront(t, app)
			c.waitNegotiable(t, "chat")
			d := jsclient.Start(t)
			ctx := ctxT(t)

			connect := func(name, user, route string) string {
				t.Helper()
				id, err := d.Connect(ctx, name, jsclient.ConnectOptions{
					URL:       appURL + "/chat?user=" + user + "&route=" + route,
					Protocol:  v.protocol,
					Transport: v.transport,
					Handlers:  []string{"message", "seq"},
				})
				if err != nil {
					t.Fatalf("connect %s: %v", name, err)
				}
				return id
			}
			// a1, b on node 3 (negotiated on node 2); a2, c on node 2 (negotiated on node 3).
			a1 := connect("a1", "alice", "23")
			a2 := connect("a2", "alice", "32")
			connect("b", "bob", "23")
			connect("c", "carol", "32")
			all := []string{"a1", "a2", "b", "c"}
			if info, err := d.Info(ctx, "a1"); err != nil || info.Transport != v.transport {
				t.Fatalf("negotiated transport %+v %v, want %s", info, err, v.transport)
			}
			waitFor(t, 10*time.Second, "the clients to be open on their transport nodes", func() bool {
				return clientGauge(t, c.node(1)) == 0 && clientGauge(t, c.node(2)) == 2 && clientGauge(t, c.node(3)) == 2
			})
			for _, n := range []int{2, 3} {
				if front.requests("negotiate", n) != 2 || front.requests("first", 5-n) != 2 {
					t.Fatalf("front: %d negotiates on node %d, %d first transport requests on node %d; want 2 and 2",
						front.requests("negotiate", n), n, front.requests("first", 5-n), 5-n)
				}
			}

			invoke := func(conn, method string, args ...any) json.RawMessage {
				t.Helper()
				res, err := d.Invoke(ctx, conn, method, args...)
				if err != nil {
					t.Fatalf("%s %s: %v", conn, method, err)
				}
				return res
			}
			// expect[conn][msg] is how many times conn must have received msg by the end.
			expect := map[string]map[string]int{}
			for _, n := range all {
				expect[n] = map[string]int{}
			}
			sent := map[string]bool{}
			// send invokes method (whose message argument is msg) and waits until msg reached to.
			send := func(from, method string, to []string, msg string, args ...any) {
				t.Helper()
				sent[msg] = true
				invoke(from, method, args...)
				for _, n := range to {
					expect[n][msg]++
					waitMsgText(t, d, n, msg)
				}
			}

			// Echo and identity: invocations relayed node 2/3 -> node 1 and back.
			for _, n := range all {
				res := invoke(n, "echo", map[string]any{"from": n})
				var got map[string]any
				if err := json.Unmarshal(res, &got); err != nil || got["from"] != n {
					t.Fatalf("%s echo = %s", n, res)
				}
			}
			if who := invoke("c", "whoami"); string(who) != `"carol"` {
				t.Fatalf("whoami = %s", who)
			}
			if _, err := d.Invoke(ctx, "b", "fail"); err == nil || !strings.Contains(err.Error(), "nope") {
				t.Fatalf("hub error = %v", err)
			}

			// Broadcast: node 1 publishes once, nodes 2 and 3 deliver to their own.
			send("a1", "broadcast", all, "all-1", "all-1")
			send("c", "broadcast", all, "all-2", "all-2")
			// Groups: one member on each node; a join is acknowledged by the member's node.
			invoke("a1", "join", "room")
			invoke("c", "join", "room")
			send("b", "sendGroup", []string{"a1", "c"}, "room-1", "room", "room-1")
			send("a2", "sendGroupExcept", []string{"c"}, "room-2", "room", "room-2", []string{a1})
			invoke("c", "leave", "room")
			send("b", "sendGroup", []string{"a1"}, "room-3", "room", "room-3")
			// User: alice has a connection on each node.
			send("c", "sendUser", []string{"a1", "a2"}, "to-alice", "alice", "to-alice")
			send("a1", "sendUser", []string{"c"}, "to-carol", "carol", "to-carol")
			// One connection, on the other node than the sender.
			send("b", "sendConnection", []string{"a2"}, "to-a2", a2, "to-a2")

			// Fences: each topic above gets one more message from the same sender (one socket to
			// node 1, one backplane topic, so in order after it): a duplicate of an earlier message
			// would have arrived before them.
			send("c", "broadcast", all, "fence-all", "fence-all")
			send("a1", "broadcast", all, "fence-all-a1", "fence-all-a1")
			send("a2", "sendGroup", []string{"a1"}, "fence-room-a2", "room", "fence-room-a2")
			send("b", "sendGroup", []string{"a1"}, "fence-room", "room", "fence-room")
			send("c", "sendUser", []string{"a1", "a2"}, "fence-alice", "alice", "fence-alice")
			send("a1", "sendUser", []string{"c"}, "fence-carol", "carol", "fence-carol")
			send("b", "sendConnection", []string{"a2"}, "fence-a2", a2, "fence-a2")
			for _, n := range all {
				for msg := range sent {
					if got := countMsgText(d, n, msg); got != expect[n][msg] {
						t.Errorf("%s received %q %d times, want %d", n, msg, got, expect[n][msg])
					}
				}
			}

			// Order through relay and backplane both ways.
			invoke("b", "burst", 100)
			for i := range 100 {
				ev, err := d.WaitEvent(ctx, jsclient.IsMessage("b", "seq"))
				if err != nil {
					t.Fatal(err)
				}
				if string(ev.Args[0]) != fmt.Sprint(i) {
					t.Fatalf("message %d was %s", i, ev.Args[0])
				}
			}

			// A client leaving is reported to the app server across nodes.
			if err := d.Stop(ctx, "a2"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "OnDisconnected for a2", func() bool { _, ok := st.disconnectedErr(a2); return ok })
			waitFor(t, 10*time.Second, "node 2 to let go of a2", func() bool { return clientGauge(t, c.node(2)) == 1 })
			t.Logf("front: later requests %d on node 2, %d on node 3", front.requests("later", 2), front.requests("later", 3))
			if v.transport != "WebSockets" && front.requests("later", 2)+front.requests("later", 3) == 0 {
				t.Fatal("no request after the first went through the front: forwarding was not exercised")
			}
		})
	}
}

// waitMsgText waits until conn received a "message" whose argument is msg.
func waitMsgText(t *testing.T, d *jsclient.Driver, conn, msg string) {
	t.Helper()
	want, _ := json.Marshal(msg)
	_, err := d.WaitEvent(ctxT(t), func(e jsclient.Event) bool {
		return jsclient.IsMessage(conn, "message")(e) && len(e.Args) == 1 && string(e.Args[0]) == string(want)
	})
	if err != nil {
		t.Fatalf("%s waiting for %q: %v", conn, msg, err)
	}
}

// countMsgText is how many "message" events with argument msg conn received.
func countMsgText(d *jsclient.Driver, conn, msg string) int {
	want, _ := json.Marshal(msg)
	n := 0
	for _, e := range d.Messages(conn, "message") {
		if len(e.Args) == 1 && string(e.Args[0]) == string(want) {
			n++
		}
	}
	return n
}

// TestClusterRedisCluster runs two nodes on a three-master Redis Cluster: fan-out topics are
// sharded channels (SSUBSCRIBE on the master owning each channel's slot), and broadcast, group
// and user sends cross nodes exactly once.
func TestClusterRedisCluster(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t)
	c := startNodes(t, rc.URL(), 2, clusterHeartbeat)
	st := newStack()
	soApp(t, c.connStr(1, ""), st, 2)
	c.waitNegotiable(t, "chat")
	ctx := ctxT(t)

	u1 := dialNode(t, c.node(1), "chat", "alice", "json")      // local to the app server
	u2 := dialNode(t, c.node(2), "chat", "bob", "messagepack") // relayed
	u3 := dialNode(t, c.node(2), "chat", "carol", "json")      // relayed
	u4 := dialNode(t, c.node(1), "chat", "bob", "messagepack") // bob's second connection
	all := []*goClient{u1, u2, u3, u4}
	invoke := func(g *goClient, method string, args ...any) {
		t.Helper()
		if err := g.conn.InvokeInto(ctx, nil, method, args...); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	// Enough groups that their channels land on every master.
	var groups []string
	for i := range 6 {
		g := fmt.Sprintf("g%d", i)
		groups = append(groups, g)
		invoke(u1, "join", g)
		invoke(u2, "join", g)
	}
	type delivery struct {
		msg string
		to  []*goClient
	}
	var sent []delivery
	sendAndWait := func(from *goClient, method string, to []*goClient, args ...any) {
		t.Helper()
		msg := args[len(args)-1].(string)
		invoke(from, method, args...)
		for _, g := range to {
			g.waitMsg(t, msg)
		}
		sent = append(sent, delivery{msg, to})
	}
	sendAndWait(u2, "broadcast", all, "all-1")
	sendAndWait(u1, "broadcast", all, "all-2")
	for _, g := range groups {
		sendAndWait(u3, "sendGroup", []*goClient{u1, u2}, g, g+"-1")
	}
	sendAndWait(u3, "sendUser", []*goClient{u2, u4}, "bob", "to-bob")
	sendAndWait(u1, "sendUser", []*goClient{u3}, "carol", "to-carol")
	// Fences from the same senders on the same topics.
	sendAndWait(u1, "broadcast", all, "fence-all")
	for _, g := range groups {
		sendAndWait(u3, "sendGroup", []*goClient{u1, u2}, g, g+"-fence")
	}
	sendAndWait(u3, "sendUser", []*goClient{u2, u4}, "bob", "fence-bob")
	sendAndWait(u1, "sendUser", []*goClient{u3}, "carol", "fence-carol")
	for _, d := range sent {
		for i, g := range all {
			want := 0
			for _, r := range d.to {
				if r == g {
					want = 1
				}
			}
			if got := g.count(d.msg); got != want {
				t.Errorf("u%d received %q %d times, want %d", i+1, d.msg, got, want)
			}
		}
	}

	// The fan-out topics are sharded channels spread over the masters; nothing uses classic
	// pub/sub.
	masters := 0
	groupChannels := 0
	for i, a := range rc.Admin {
		shard, err := a.PubSubShardChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		plain, err := a.PubSubChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) != 0 {
			t.Errorf("master %d has classic pub/sub channels %q", i, plain)
		}
		if len(shard) > 0 {
			masters++
		}
		for _, ch := range shard {
			if strings.Contains(ch, c.prefix) && strings.Contains(ch, "g/chat/g") {
				groupChannels++
			}
		}
		t.Logf("master %d: shard channels %q", i, shard)
	}
	// Each group has a member on both nodes; a node subscribes once per channel.
	if groupChannels != len(groups) {
		t.Errorf("%d group channels subscribed, want %d", groupChannels, len(groups))
	}
	if masters < 2 {
		t.Errorf("shard channels on %d masters, want them spread", masters)
	}
}
