package server_test

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
	"github.com/signalrd/signalrd/storage"
)

// Over-the-wire checks of the cluster review fixes (commit 2fb32f2): each test fails without
// the fix it names. The internal ones are in cluster_fixes_internal_test.go.

// addNode starts one more node of the cluster on st (the shared storage, or a view of it) with
// its own heartbeat, as c.nodes[key]; tag names its records in the recorded warnings.
func (c *clCluster) addNode(t *testing.T, key, tag, nodeID string, st storage.Storage, heartbeat time.Duration) *servertest.Instance {
	t.Helper()
	var h slog.Handler = &levelFilter{min: slog.LevelWarn, h: c.warns.WithAttrs([]slog.Attr{slog.String("test_node", tag)})}
	if os.Getenv("SIGNALRD_TEST_LOG") != "" {
		h = teeHandler{h, slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})}
	}
	n := servertest.Start(t, server.Config{Storage: st, NodeID: nodeID, Heartbeat: heartbeat, Logger: slog.New(h)})
	c.nodes[key] = n
	return n
}

// cutOne wraps the storage of node name in a cutStorage switched by cut.
func cutOne(name string, cut *atomic.Bool) func(string, storage.Storage) storage.Storage {
	return func(n string, s storage.Storage) storage.Storage {
		if n == name {
			return cutStorage{s, cut}
		}
		return s
	}
}

// TestClusterRestartWithinTTL: a node crashes (cut off, then stopped: it says nothing) and
// comes back with the same node id before its liveness entry expired, so its peers never find
// it dead. The restarted node announces itself: the app server on another node hears `offline`
// for the node's earlier life and drops the client it held, and the relay stub of that client
// is gone; clients of the new life work.
func TestClusterRestartWithinTTL(t *testing.T) {
	t.Parallel()
	// Node B beats slowly (TTL 1 s): the restart comes well within its TTL however loaded the
	// machine is. A and C judge liveness at the usual pace.
	const beatB = 250 * time.Millisecond
	var cut atomic.Bool
	c := startNodes(t, "a", "c")
	c.allowWarn = append(c.allowWarn, "test_node=b1") // the crashed life fails to reach the storage
	c.addNode(t, "b", "b1", nodeID("b"), cutStorage{c.store, &cut}, beatB)
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	old := c.dial(t, app, "r1", "a", "b", "json")
	id := old.ConnectionID()
	var echo string
	old.invoke(t, &echo, "echo", "relayed") // B relays it to the app server on A
	app.mu.Lock()
	holder := app.node[id]
	app.mu.Unlock()
	if holder != nodeID("b") {
		t.Fatalf("the client is held by %q, want %s", holder, nodeID("b"))
	}

	cut.Store(true)
	crashed := time.Now()
	if err := c.nodes["b"].Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	c.addNode(t, "b", "b2", nodeID("b"), c.store, beatB)
	if took := time.Since(crashed); took > 2*beatB {
		t.Logf("the restart took %v: close to node B's TTL", took)
	}
	waitUntil(t, "the app server hears that the earlier life of node-b is offline", func() bool {
		return app.logs.has("service instance offline", "instance="+nodeID("b"))
	})
	waitUntil(t, "the app server drops the client of the earlier life", func() bool {
		_, ok := app.disconnected(id)
		return ok
	})
	ctx := ctxFor(t)
	if ok, err := app.hc.ConnectionExists(ctx, id); err != nil || ok {
		t.Fatalf("ConnectionExists(client of the earlier life) = %v, %v; want false", ok, err)
	}

	// The restarted node serves: a client through it reaches the app server on A and back.
	fresh := c.dial(t, app, "r2", "a", "b", "json")
	fresh.invoke(t, &echo, "echo", "again")
	if echo != "again" {
		t.Fatalf("echo = %q", echo)
	}
	if err := app.hc.Clients.Client(fresh.ConnectionID()).Send(ctx, "msg", "to-fresh"); err != nil {
		t.Fatal(err)
	}
	fresh.await(t, "to-fresh")
	stillOpen(t, fresh)
	if _, gone := app.disconnected(fresh.ConnectionID()); gone {
		t.Fatal("the client of the restarted node was dropped")
	}
}

// TestClusterOwnerUnreachable: a membership request for a connection whose owner cannot be
// asked is an error (the SDK throws), not "no such connection" (taken for a no-op) — unless the
// owner is found dead meanwhile: then its connections are gone, and NotFound is the truth.
func TestClusterOwnerUnreachable(t *testing.T) {
	t.Parallel()
	t.Run("owner cut off", func(t *testing.T) {
		t.Parallel()
		var cut atomic.Bool
		c := startNodesWith(t, cutOne("b", &cut), "a", "b", "c")
		c.allowWarn = append(c.allowWarn, "test_node=b", "node is dead", "request to the node owning a connection failed")
		app := c.startApp(t, "app-1", "a", clAppOptions{})
		cl := c.dial(t, app, "o1", "a", "b", "json")
		id := cl.ConnectionID()
		waitUntil(t, "the app server sees the client", func() bool { return app.connected(id) })
		ctx := ctxFor(t)
		// Node B holds the client and stops answering; the registry still names it the owner
		// until B is found dead, which abandons the requests waiting for it: the connection is
		// gone with its node (the app server is told `offline`).
		cut.Store(true)
		type result struct {
			op  string
			st  svcproto.AckStatus
			err error
		}
		res := make(chan result, 2)
		go func() {
			st, err := app.hc.Groups.AddWithStatus(ctx, id, "g")
			res <- result{"JoinGroupWithAck", st, err}
		}()
		go func() {
			st, err := app.hc.Groups.RemoveWithStatus(ctx, id, "g")
			res <- result{"LeaveGroupWithAck", st, err}
		}()
		for range 2 {
			r := <-res
			if r.err != nil || r.st != svcproto.AckNotFound {
				t.Errorf("%s for a client of a node found dead while asked = %v, %v; want NotFound", r.op, r.st, r.err)
			}
		}
	})
	t.Run("registry unreachable", func(t *testing.T) {
		t.Parallel()
		var cut atomic.Bool
		c := startNodesWith(t, cutOne("a", &cut), "a", "b", "c")
		// Node A cannot read the registry for a moment (heartbeat and publish failures included).
		c.allowWarn = append(c.allowWarn, "test_node=a")
		app := c.startApp(t, "app-1", "a", clAppOptions{})
		cl := c.dial(t, app, "o2", "a", "b", "json")
		id := cl.ConnectionID()
		waitUntil(t, "the app server sees the client", func() bool { return app.connected(id) })
		ctx := ctxFor(t)
		cut.Store(true)
		expectStatus(t, clREST(t, c.nodes["a"], "PUT", "/groups/g/connections/"+id, ""), http.StatusServiceUnavailable,
			"add a client of B to a group via A, which cannot read the registry")
		if st, err := app.hc.Groups.AddWithStatus(ctx, id, "g"); err != nil || st != svcproto.AckInternalServerError {
			t.Errorf("JoinGroupWithAck via A, which cannot read the registry = %v, %v; want InternalServerError", st, err)
		}
		cut.Store(false)
		// The registry is back: the same requests succeed, an unknown connection is NotFound.
		expectStatus(t, clREST(t, c.nodes["a"], "PUT", "/groups/g/connections/"+id, ""), http.StatusOK, "add the client once the registry is back")
		expectStatus(t, clREST(t, c.nodes["a"], "PUT", "/groups/g/connections/nobody", ""), http.StatusNotFound, "add an unknown connection")
		if st, err := app.hc.Groups.AddWithStatus(ctx, id, "g2"); err != nil || st != svcproto.AckOK {
			t.Errorf("JoinGroupWithAck once the registry is back = %v, %v; want OK", st, err)
		}
		if err := app.hc.Clients.Group("g2").Send(ctx, "msg", "g2"); err != nil {
			t.Fatal(err)
		}
		cl.await(t, "g2")
	})
}

// TestClusterStrayTransportRequest: a POST or DELETE carrying a valid connection token that
// no GET started yet creates no connection on the node it reaches (which would then shadow the
// real one there: its own requests answered as for a connection without transport); the GET
// that comes later, on another node, starts the connection, and every node forwards to it.
func TestClusterStrayTransportRequest(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	tok := tokenWith(t, c.nodes["a"], clHub, auth.IssueOptions{Claims: []auth.Claim{{Type: auth.ClaimUserID, Value: "stray"}}})
	p := newHTTPPeer(t, c.nodes["a"], clHub, tok)
	on := func(n string) *httpPeer {
		return &httpPeer{t: t, ts: c.nodes[n], hc: p.hc, hub: p.hub, tok: p.tok, id: p.id, ctok: p.ctok}
	}
	expectText(t, "POST on B before any GET", on("b").send(jsonHandshake), http.StatusNotFound, textNoConn)
	expectText(t, "DELETE on B before any GET", on("b").do(http.MethodDelete, p.connURL(""), nil, ""), http.StatusNotFound, textNoConn)
	expectText(t, "POST on A (the negotiating node) before any GET", on("a").send(jsonHandshake), http.StatusNotFound, textNoConn)
	if t.Failed() {
		t.FailNow()
	}
	if ok, err := app.hc.ConnectionExists(ctxFor(t), p.id); err != nil || ok {
		t.Fatalf("ConnectionExists before any GET = %v, %v; want false", ok, err)
	}

	// The first poll, on C, starts the connection there.
	if r := on("c").poll(); r.err != nil || r.status != http.StatusOK || r.body != "" {
		t.Fatalf("first poll on C = %v, want 200 empty", r)
	}
	// The handshake lands on B, its response is fetched on A: both reach C.
	if r := on("b").send(jsonHandshake); r.err != nil || r.status != http.StatusOK || r.body != "" {
		t.Fatalf("handshake POST on B = %v, want 200 empty (forwarded to C)", r)
	}
	if r := on("a").poll(); r.err != nil || r.status != http.StatusOK || r.body != "{}\x1e" {
		t.Fatalf("handshake poll on A = %v, want 200 {}\\x1e (forwarded to C)", r)
	}
	waitUntil(t, "the app server sees the connection", func() bool { return app.connected(p.id) })
	app.mu.Lock()
	holder := app.node[p.id]
	app.mu.Unlock()
	if holder != nodeID("c") {
		t.Fatalf("the connection is held by %q, want %s (the node of the first GET)", holder, nodeID("c"))
	}
	if r := on("b").send(`{"type":1,"invocationId":"1","target":"echo","arguments":["hi"]}` + "\x1e"); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("invocation POST on B = %v, want 200", r)
	}
	if r := on("a").poll(); r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, `"result":"hi"`) {
		t.Fatalf("poll on A = %v, want the echo's completion", r)
	}
	expectText(t, "DELETE on B", on("b").do(http.MethodDelete, p.connURL(""), nil, ""), http.StatusAccepted, "Accepted")
	waitUntil(t, "the app server hears the connection ended", func() bool { _, ok := app.disconnected(p.id); return ok })
}
