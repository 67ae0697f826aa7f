package server

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/sdk/appserver"
	sdkclient "github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/storage"
)

// startInternalNode runs a cluster node in-process (servertest cannot be imported here).
func startInternalNode(t *testing.T, store storage.Storage, node string) (*Server, string) {
	t.Helper()
	s, err := New(Config{Storage: store, NodeID: node, Heartbeat: 100 * time.Millisecond, DrainWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: %v", node, err)
		}
	})
	return s, l.Addr().String()
}

// TestClusterInterest: a node is subscribed to a hub, user or group topic exactly while it has
// a local member, so fan-out reaches only the nodes that deliver it.
func TestClusterInterest(t *testing.T) {
	t.Parallel()
	store := storage.NewMemory(storage.Options{})
	t.Cleanup(func() { _ = store.Close() })
	nodes := map[string]*cluster{}
	addrs := map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		s, addr := startInternalNode(t, store, "node-"+n)
		nodes[n], addrs[n] = s.instances[0].cl, addr
	}
	subscribed := func(n string) []string { return nodes[n].interest.subscribed() }
	expect := func(what, n string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(subscribed(n), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: node %s is subscribed to %q, want %q", what, n, subscribed(n), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The app server is on node A; A has no client.
	_, port, _ := net.SplitHostPort(addrs["a"])
	portN, _ := strconv.Atoi(port)
	app, err := appserver.New(appserver.Options{ConnectionString: auth.FormatConnectionString("http://127.0.0.1", portN, DevAccessKey), ConnectionCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	hc := app.MapHub("chat", &appserver.Hub{})
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	if err := app.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	dial := func(node, user string) *sdkclient.Conn {
		t.Helper()
		tok, err := auth.IssueToken(DevAccessKey, auth.IssueOptions{
			Audience: "http://127.0.0.1/client/?hub=chat",
			Claims:   []auth.Claim{{Type: auth.ClaimUserID, Value: user}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := sdkclient.Dial(ctx, sdkclient.Options{
			URL:         "http://" + addrs[node] + "/client/?hub=chat",
			AccessToken: func(context.Context) (string, error) { return tok, nil },
		})
		if err != nil {
			t.Fatalf("dial on %s: %v", node, err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	u1 := dial("b", "u1")
	u2 := dial("c", "u2")
	expect("u1 connected on B", "b", "a/chat", "u/chat/u1")
	expect("u2 connected on C", "c", "a/chat", "u/chat/u2")
	expect("A has only the app server", "a")

	// JoinGroupWithAck: the Ack comes once the member's node receives the group's messages.
	if err := hc.Groups.Add(ctx, u1.ConnectionID(), "g"); err != nil {
		t.Fatal(err)
	}
	if got := subscribed("b"); !slices.Contains(got, "g/chat/g") {
		t.Fatalf("node B acked the join before subscribing to the group: %q", got)
	}
	// A user-level membership subscribes only the node of the user's connection.
	if err := hc.UserGroups.Add(ctx, "u2", "ug", 0); err != nil {
		t.Fatal(err)
	}
	if got := subscribed("c"); !slices.Contains(got, "g/chat/ug") {
		t.Fatalf("node C acked the user join before subscribing to the group: %q", got)
	}
	expect("after the joins", "a")
	expect("after the joins", "b", "a/chat", "g/chat/g", "u/chat/u1")
	expect("after the joins", "c", "a/chat", "g/chat/ug", "u/chat/u2")

	// Leaving ends the subscriptions that no local member needs any more.
	if err := hc.Groups.Remove(ctx, u1.ConnectionID(), "g"); err != nil {
		t.Fatal(err)
	}
	expect("u1 left g", "b", "a/chat", "u/chat/u1")
	if err := u2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	expect("u2 left", "c")
	expect("u2 left", "b", "a/chat", "u/chat/u1")
	if err := u1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	expect("u1 left", "b")
}
