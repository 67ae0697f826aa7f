package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
	"github.com/signalrd/signalrd/storage"
)

// Scale-out: three in-process nodes sharing one storage.Memory behave as one service. Every test
// drives the nodes over the wire as real peers do: Go app servers (sdk/appserver, the .NET SDK's
// behaviour), Go SignalR clients (sdk/client) negotiating on one node and connecting on another
// (a load balancer without stickiness), REST calls to any node, and raw service links where the
// SDK has no API (the *WithAck closes).

const (
	clHeartbeat = 250 * time.Millisecond // TTL 1 s: a loaded CI machine may delay a heartbeat a few hundred ms
	clHub       = "chat"
	clWait      = 15 * time.Second // bound for anything that should happen promptly
)

// clCluster is a set of nodes sharing one storage.
type clCluster struct {
	store *storage.Memory
	nodes map[string]*servertest.Instance // by short name: "a", "b", "c"
	tr    *http.Transport

	warns     *logRecorder // the nodes' warnings and errors
	allowWarn []string     // substrings of the warnings a test expects
}

func startNodes(t *testing.T, names ...string) *clCluster {
	t.Helper()
	return startNodesWith(t, nil, names...)
}

// startNodesWith starts nodes whose storage is wrap(name, shared) when wrap is set. Every
// node's warnings are recorded; when the test ends (all nodes stopped) any warning not
// allowed by c.allowWarn fails it: a clean run logs none.
func startNodesWith(t *testing.T, wrap func(name string, s storage.Storage) storage.Storage, names ...string) *clCluster {
	t.Helper()
	store := storage.NewMemory(storage.Options{})
	c := &clCluster{store: store, nodes: map[string]*servertest.Instance{}, tr: &http.Transport{}, warns: &logRecorder{}}
	t.Cleanup(func() { // runs last: after every node stopped
		_ = store.Close()
		c.tr.CloseIdleConnections()
		c.warns.mu.Lock()
		defer c.warns.mu.Unlock()
		for _, r := range c.warns.recs {
			if !slices.ContainsFunc(c.allowWarn, func(s string) bool { return strings.Contains(r, s) }) {
				t.Errorf("a node logged: %s", r)
			}
		}
	})
	for _, n := range names {
		var st storage.Storage = store
		if wrap != nil {
			st = wrap(n, st)
		}
		var h slog.Handler = &levelFilter{min: slog.LevelWarn, h: c.warns.WithAttrs([]slog.Attr{slog.String("test_node", n)})}
		if os.Getenv("SIGNALRD_TEST_LOG") != "" {
			h = teeHandler{h, slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})}
		}
		log := slog.New(h)
		c.nodes[n] = servertest.Start(t, server.Config{Storage: st, NodeID: nodeID(n), Heartbeat: clHeartbeat, Logger: log})
	}
	return c
}

// teeHandler sends records to two handlers (SIGNALRD_TEST_LOG=1 shows the nodes' logs).
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range []slog.Handler{t.a, t.b} {
		if h.Enabled(ctx, r.Level) {
			_ = h.Handle(ctx, r.Clone())
		}
	}
	return nil
}

func (t teeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(a), t.b.WithAttrs(a)}
}

func (t teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{t.a.WithGroup(g), t.b.WithGroup(g)}
}

// levelFilter passes records of at least min to h.
type levelFilter struct {
	min slog.Level
	h   slog.Handler
}

func (f *levelFilter) Enabled(_ context.Context, l slog.Level) bool { return l >= f.min }
func (f *levelFilter) Handle(ctx context.Context, r slog.Record) error {
	return f.h.Handle(ctx, r)
}
func (f *levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelFilter{min: f.min, h: f.h.WithAttrs(a)}
}
func (f *levelFilter) WithGroup(g string) slog.Handler {
	return &levelFilter{min: f.min, h: f.h.WithGroup(g)}
}

func nodeID(short string) string { return "node-" + short }

// registry is the storage namespace of the default instance (what the nodes share).
func (c *clCluster) registry() storage.Storage { return c.store.Namespace("default") }

// httpClient routes a client's requests to the service like a load balancer without session
// affinity: negotiate goes to one node, the WebSocket to another.
func (c *clCluster) httpClient(negotiateOn, connectOn string) *http.Client {
	neg, conn := c.nodes[negotiateOn], c.nodes[connectOn]
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasPrefix(r.URL.Path, "/client") {
			r = r.Clone(r.Context())
			target := conn
			if strings.HasSuffix(r.URL.Path, "/negotiate") {
				target = neg
			}
			r.URL.Host, r.Host = target.Addr, ""
		}
		return c.tr.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// clApp is a Go app server hosting hub "chat", connected to one node, with a negotiate endpoint.
type clApp struct {
	id   string
	srv  *appserver.Server
	hc   *appserver.HubContext
	url  string // clients dial url + "/chat"
	logs *logRecorder

	mu      sync.Mutex
	conns   map[string]*appserver.Context // open connections
	node    map[string]string             // connection -> Asrs-Instance-Id (the node holding it)
	said    map[string][]string           // connection -> "say" arguments, in arrival order
	gone    map[string]error              // connection -> OnDisconnected error
	from    map[string]string             // connection -> MigratedFrom
	movedTo map[string]string             // connection -> MigratedTo when it disconnected
}

type clAppOptions struct {
	sticky   auth.StickyMode
	shutdown appserver.GracefulShutdownMode
	greet    bool // OnConnected sends "hi-all:<id>" to all, "hi-user:<id>" to the user, "hi-group:<id>" to group "greet"
}

func (c *clCluster) startApp(t *testing.T, id, node string, o clAppOptions) *clApp {
	t.Helper()
	a := &clApp{id: id, logs: &logRecorder{}, conns: map[string]*appserver.Context{}, node: map[string]string{},
		said: map[string][]string{}, gone: map[string]error{}, from: map[string]string{}, movedTo: map[string]string{}}
	cs := c.nodes[node].ConnectionString()
	srv, err := appserver.New(appserver.Options{
		ConnectionString: cs,
		ServerID:         id,
		ConnectionCount:  1, // one socket: what the app sends reaches the service in order
		GracefulShutdown: o.shutdown,
		Logger:           slog.New(a.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.srv = srv
	a.hc = srv.MapHub(clHub, a.hub(o))
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	if err := srv.Ready(ctx); err != nil {
		t.Fatalf("app server %s not ready: %v", id, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", srv.NegotiateHandler(clHub, appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
		Sticky: o.sticky,
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	a.url = hs.URL
	return a
}

func (a *clApp) hub(o clAppOptions) *appserver.Hub {
	h := &appserver.Hub{
		OnConnected: func(c *appserver.Context) error {
			a.mu.Lock()
			a.conns[c.ConnectionID] = c
			a.node[c.ConnectionID] = c.Headers.Get("Asrs-Instance-Id")
			a.from[c.ConnectionID] = c.MigratedFrom
			a.mu.Unlock()
			if o.greet {
				_ = c.Clients.All().Send(c, "msg", "hi-all:"+c.ConnectionID)
				_ = c.Clients.User(c.UserID).Send(c, "msg", "hi-user:"+c.ConnectionID)
				_ = c.Clients.Group("greet").Send(c, "msg", "hi-group:"+c.ConnectionID)
			}
			return nil
		},
		OnDisconnected: func(c *appserver.Context, err error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			delete(a.conns, c.ConnectionID)
			a.gone[c.ConnectionID] = err
			a.movedTo[c.ConnectionID] = c.MigratedTo()
		},
	}
	h.On("echo", func(c *appserver.Context, s string) (string, error) { return s, nil })
	h.On("whoami", func(c *appserver.Context) (string, error) { return a.id, nil })
	h.On("say", func(c *appserver.Context, s string) error {
		a.mu.Lock()
		a.said[c.ConnectionID] = append(a.said[c.ConnectionID], s)
		a.mu.Unlock()
		return c.Clients.Caller().Send(c, "msg", "re:"+s)
	})
	h.On("bye", func(c *appserver.Context) error {
		c.Abort()
		return nil
	})
	return h
}

func (a *clApp) connected(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.conns[id]
	return ok
}

func (a *clApp) disconnected(id string) (error, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err, ok := a.gone[id]
	return err, ok
}

func (a *clApp) saidBy(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.said[id])
}

// logRecorder keeps log records as text (app servers log the service's "offline" ping; nodes
// their warnings).
type logRecorder struct {
	mu    sync.Mutex
	recs  []string
	attrs []slog.Attr
	root  *logRecorder // where records go (nil: this one)
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range l.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	root := l
	if l.root != nil {
		root = l.root
	}
	root.mu.Lock()
	root.recs = append(root.recs, b.String())
	root.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs(a []slog.Attr) slog.Handler {
	root := l
	if l.root != nil {
		root = l.root
	}
	return &logRecorder{attrs: append(slices.Clone(l.attrs), a...), root: root}
}
func (l *logRecorder) WithGroup(string) slog.Handler { return l }

func (l *logRecorder) has(sub ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		all := true
		for _, s := range sub {
			all = all && strings.Contains(r, s)
		}
		if all {
			return true
		}
	}
	return false
}

// clClient is a Go SignalR client recording what it receives.
type clClient struct {
	*client.Conn
	name string

	mu   sync.Mutex
	msgs []string // "msg" arguments in arrival order
}

// dial connects a client through app's negotiate endpoint: the redirect sends it to the service,
// where it negotiates on node negotiateOn and opens its WebSocket on node connectOn.
func (c *clCluster) dial(t *testing.T, a *clApp, user, negotiateOn, connectOn, proto string) *clClient {
	t.Helper()
	cc, err := c.tryDial(t, a, user, negotiateOn, connectOn, proto)
	if err != nil {
		t.Fatalf("dial %s (negotiate on %s, connect on %s): %v", user, negotiateOn, connectOn, err)
	}
	return cc
}

func (c *clCluster) tryDial(t *testing.T, a *clApp, user, negotiateOn, connectOn, proto string) (*clClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	conn, err := client.Dial(ctx, client.Options{
		URL:        a.url + "/chat?user=" + user,
		Protocol:   proto,
		HTTPClient: c.httpClient(negotiateOn, connectOn),
	})
	if err != nil {
		return nil, err
	}
	cc := &clClient{Conn: conn, name: user + "@" + connectOn}
	conn.On("msg", func(args []hubproto.Raw) {
		var s string
		if err := conn.Unmarshal(args[0], &s); err != nil {
			s = "undecodable: " + err.Error()
		}
		cc.mu.Lock()
		cc.msgs = append(cc.msgs, s)
		cc.mu.Unlock()
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clWait)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return cc, nil
}

func (c *clClient) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *clClient) count(m string) int {
	n := 0
	for _, s := range c.got() {
		if s == m {
			n++
		}
	}
	return n
}

// await waits until the client received m.
func (c *clClient) await(t *testing.T, m string) {
	t.Helper()
	waitUntil(t, c.name+" receives "+m, func() bool { return c.count(m) > 0 })
}

func (c *clClient) invoke(t *testing.T, v any, method string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	if err := c.InvokeInto(ctx, v, method, args...); err != nil {
		t.Fatalf("%s: %s: %v", c.name, method, err)
	}
}

// waitUntil polls cond every 5 ms until it holds or clWait passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, clWait, what, cond)
}

func waitWithin(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	t.Cleanup(cancel)
	return ctx
}

// expectCounts checks how often each client received each message: exactly want[client][msg],
// zero for messages not listed for that client. msgs lists every message of the check.
func expectCounts(t *testing.T, msgs []string, want map[*clClient]map[string]int) {
	t.Helper()
	for c, w := range want {
		for _, m := range msgs {
			if got := c.count(m); got != w[m] {
				t.Errorf("%s received %q %d times, want %d (all: %q)", c.name, m, got, w[m], c.got())
			}
		}
	}
}

// settle sends every client a marker on its own connection and waits for it, so that whatever
// was delivered to it before is in its log.
func settle(t *testing.T, a *clApp, tag string, cs ...*clClient) {
	t.Helper()
	ctx := ctxFor(t)
	for _, c := range cs {
		if err := a.hc.Clients.Client(c.ConnectionID()).Send(ctx, "msg", tag); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		c.await(t, tag)
	}
}

// TestClusterRelay: the app server is connected to node A only; the client negotiates on node B
// and connects on node C, so everything between them crosses the relay.
func TestClusterRelay(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	for _, proto := range []string{"json", "messagepack"} {
		t.Run(proto, func(t *testing.T) {
			cl := c.dial(t, app, "u-"+proto, "b", "c", proto)
			id := cl.ConnectionID()
			waitUntil(t, "the app server sees the client", func() bool { return app.connected(id) })
			app.mu.Lock()
			holder := app.node[id]
			app.mu.Unlock()
			if holder != nodeID("c") {
				t.Fatalf("Asrs-Instance-Id = %q, want the node holding the client (%s)", holder, nodeID("c"))
			}
			var echo string
			cl.invoke(t, &echo, "echo", "hello")
			if echo != "hello" {
				t.Fatalf("echo = %q", echo)
			}

			// Client -> app and back, in order: every "say" is answered on the caller.
			const n = 100
			ctx := ctxFor(t)
			for i := range n {
				if err := cl.Send(ctx, "say", strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "the app server gets every message", func() bool { return len(app.saidBy(id)) >= n })
			cl.await(t, "re:"+strconv.Itoa(n-1))
			// App -> client from outside a hub method (MultiConnectionData on the app's socket).
			for i := range n {
				if err := app.hc.Clients.Client(id).Send(ctx, "msg", "p:"+strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			cl.await(t, "p:"+strconv.Itoa(n-1))
			var wantSaid, wantGot []string
			for i := range n {
				wantSaid = append(wantSaid, strconv.Itoa(i))
				wantGot = append(wantGot, "re:"+strconv.Itoa(i))
			}
			for i := range n {
				wantGot = append(wantGot, "p:"+strconv.Itoa(i))
			}
			if got := app.saidBy(id); !slices.Equal(got, wantSaid) {
				t.Fatalf("the app server got %q, want %q", got, wantSaid)
			}
			if got := cl.got(); !slices.Equal(got, wantGot) {
				t.Fatalf("the client got %q, want %q", got, wantGot)
			}

			// The client leaves: the app server hears of it.
			if err := cl.Close(ctx); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "OnDisconnected for the client that left", func() bool { _, ok := app.disconnected(id); return ok })
			if err, _ := app.disconnected(id); err != nil {
				t.Fatalf("OnDisconnected error %v, want nil for a normal close", err)
			}
			// The SDK runs OnDisconnected on the client's Close message, which may overtake the
			// end of its transport (on a single node too): the check turns false right after.
			waitUntil(t, "the registry forgets the client that left", func() bool {
				ok, err := app.hc.ConnectionExists(ctx, id)
				return err == nil && !ok
			})

			// The app server closes a client: the client gets the Close.
			cl2 := c.dial(t, app, "v-"+proto, "b", "c", proto)
			id2 := cl2.ConnectionID()
			waitUntil(t, "the app server sees the second client", func() bool { return app.connected(id2) })
			if err := cl2.Send(ctx, "bye"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-cl2.Done():
			case <-time.After(clWait):
				t.Fatal("the client is still connected after the app server closed it")
			}
			var ce *client.CloseError
			if err := cl2.Err(); !errors.As(err, &ce) {
				t.Fatalf("client error %v, want the app server's Close", err)
			}
			waitUntil(t, "OnDisconnected for the closed client", func() bool { _, ok := app.disconnected(id2); return ok })
			waitUntil(t, "the registry forgets the closed client", func() bool {
				ok, err := app.hc.ConnectionExists(ctx, id2)
				return err == nil && !ok
			})
		})
	}
}

// TestClusterSends: every fan-out reaches its recipients on every node exactly once.
func TestClusterSends(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	ca := c.dial(t, app, "ua", "a", "a", "json")
	cb := c.dial(t, app, "ub", "c", "b", "messagepack")
	cb2 := c.dial(t, app, "ub2", "b", "b", "json")
	cc := c.dial(t, app, "uc", "a", "c", "json")
	cc2 := c.dial(t, app, "ub", "b", "c", "json")
	all := []*clClient{ca, cb, cb2, cc, cc2}
	for _, cl := range all {
		waitUntil(t, "the app server sees "+cl.name, func() bool { return app.connected(cl.ConnectionID()) })
	}
	ctx := ctxFor(t)
	hc := app.hc
	send := func(p appserver.ClientProxy, m string) {
		t.Helper()
		if err := p.Send(ctx, "msg", m); err != nil {
			t.Fatalf("send %s: %v", m, err)
		}
	}
	join := func(cl *clClient, g string) {
		t.Helper()
		// JoinGroupWithAck on node A for a client of another node: the Ack means it is a member.
		if st, err := hc.Groups.AddWithStatus(ctx, cl.ConnectionID(), g); err != nil || st != svcproto.AckOK {
			t.Fatalf("join %s to %s: %v %v", cl.name, g, st, err)
		}
	}

	// To all with exclusions.
	send(hc.Clients.AllExcept(cb.ConnectionID(), cc2.ConnectionID()), "all-x")
	send(hc.Clients.All(), "all-fence")
	for _, cl := range all {
		cl.await(t, "all-fence")
	}
	// To a user with connections on two nodes.
	send(hc.Clients.User("ub"), "user")
	send(hc.Clients.User("ub"), "user-fence")
	cb.await(t, "user-fence")
	cc2.await(t, "user-fence")
	// To groups joined through node A.
	join(cc, "g1")
	join(cb, "g1")
	join(cb, "g2")
	join(cb2, "g2")
	join(cc2, "g2")
	send(hc.Clients.Group("g1"), "g1")
	send(hc.Clients.Group("g1"), "g1-fence")
	send(hc.Clients.GroupExcept("g2", cc2.ConnectionID()), "g2-x")
	send(hc.Clients.Group("g2"), "g2-fence")
	for _, cl := range []*clClient{cc, cb} {
		cl.await(t, "g1-fence")
	}
	for _, cl := range []*clClient{cb, cb2, cc2} {
		cl.await(t, "g2-fence")
	}
	if st, err := hc.Groups.AddWithStatus(ctx, "nobody", "g1"); err != nil || st != svcproto.AckNotFound {
		t.Fatalf("join an unknown connection: %v %v, want NotFound", st, err)
	}
	// LeaveGroupWithAck on node A for a member on node C.
	join(cc2, "g3")
	join(cb2, "g3")
	if st, err := hc.Groups.RemoveWithStatus(ctx, cc2.ConnectionID(), "g3"); err != nil || st != svcproto.AckOK {
		t.Fatalf("leave g3: %v %v", st, err)
	}
	send(hc.Clients.Group("g3"), "g3")
	cb2.await(t, "g3")
	// To several groups: cb is in both and gets one copy.
	send(hc.Clients.Groups("g1", "g2", "g1"), "groups")
	send(hc.Clients.Groups("g1", "g2"), "groups-fence")
	for _, cl := range []*clClient{cb, cb2, cc, cc2} {
		cl.await(t, "groups-fence")
	}
	// To several users.
	send(hc.Clients.Users("ua", "uc", "ua", "nobody"), "users")
	send(hc.Clients.Users("ua", "uc"), "users-fence")
	ca.await(t, "users-fence")
	cc.await(t, "users-fence")
	// To connections: one, and several on three nodes (MultiConnectionData).
	send(hc.Clients.Client(cc.ConnectionID()), "conn")
	send(hc.Clients.Clients(ca.ConnectionID(), cb.ConnectionID(), cc2.ConnectionID(), cb.ConnectionID(), "nobody"), "multi")
	for _, cl := range []*clClient{ca, cb, cc2} {
		cl.await(t, "multi")
	}
	cc.await(t, "conn")

	settle(t, app, "end", all...)
	msgs := []string{"all-x", "all-fence", "user", "user-fence", "g1", "g1-fence", "g2-x", "g2-fence", "g3", "groups", "groups-fence", "users", "users-fence", "conn", "multi"}
	expectCounts(t, msgs, map[*clClient]map[string]int{
		ca:  {"all-x": 1, "all-fence": 1, "users": 1, "users-fence": 1, "multi": 1},
		cb:  {"all-fence": 1, "user": 1, "user-fence": 1, "g1": 1, "g1-fence": 1, "g2-x": 1, "g2-fence": 1, "groups": 1, "groups-fence": 1, "multi": 1},
		cb2: {"all-x": 1, "all-fence": 1, "g2-x": 1, "g2-fence": 1, "g3": 1, "groups": 1, "groups-fence": 1},
		cc:  {"all-x": 1, "all-fence": 1, "g1": 1, "g1-fence": 1, "groups": 1, "groups-fence": 1, "users": 1, "users-fence": 1, "conn": 1},
		cc2: {"all-fence": 1, "user": 1, "user-fence": 1, "g2-fence": 1, "groups": 1, "groups-fence": 1, "multi": 1},
	})
}

// TestClusterUserGroups: a user-group membership made on one node applies to the user's
// connections on every node, present and future, is stored once, expires with its TTL and can
// be removed.
func TestClusterUserGroups(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	ub := c.dial(t, app, "ug", "b", "b", "json")
	uc := c.dial(t, app, "ug", "a", "c", "messagepack")
	other := c.dial(t, app, "other", "b", "c", "json")
	for _, cl := range []*clClient{ub, uc, other} {
		waitUntil(t, "the app server sees "+cl.name, func() bool { return app.connected(cl.ConnectionID()) })
	}
	ctx := ctxFor(t)
	hc := app.hc
	send := func(g, m string) {
		t.Helper()
		if err := hc.Clients.Group(g).Send(ctx, "msg", m); err != nil {
			t.Fatal(err)
		}
	}
	inGroup := func(user, g string) bool {
		t.Helper()
		ok, err := hc.UserGroups.IsUserInGroup(ctx, user, g)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// UserJoinGroupWithAck on node A; the user's connections are on B and C.
	if err := hc.UserGroups.Add(ctx, "ug", "vip", 0); err != nil {
		t.Fatal(err)
	}
	if !inGroup("ug", "vip") || inGroup("other", "vip") {
		t.Fatal("IsUserInGroup disagrees with the membership")
	}
	send("vip", "v1")
	ub.await(t, "v1")
	uc.await(t, "v1")
	// A connection of the user opening later, on node A, is in the group too.
	ua := c.dial(t, app, "ug", "c", "a", "json")
	waitUntil(t, "the app server sees the late connection", func() bool { return app.connected(ua.ConnectionID()) })
	send("vip", "v2")
	for _, cl := range []*clClient{ua, ub, uc} {
		cl.await(t, "v2")
	}
	entries, err := c.registry().SetEntries(ctx, "ug/chat/ug")
	if err != nil || len(entries) != 1 || entries[0].Member != "vip" || !entries[0].Expires.IsZero() {
		t.Fatalf("stored memberships of ug = %+v, %v; want vip once, without expiry", entries, err)
	}

	// With a TTL: in the group on every node until it expires.
	if err := hc.UserGroups.Add(ctx, "ug", "temp", time.Second); err != nil {
		t.Fatal(err)
	}
	send("temp", "t1")
	for _, cl := range []*clClient{ua, ub, uc} {
		cl.await(t, "t1")
	}
	waitWithin(t, 3*time.Second, "the TTL membership expires", func() bool { return !inGroup("ug", "temp") })
	send("temp", "t2")

	// UserLeaveGroupWithAck on node A removes the user everywhere, from one group or all.
	if err := hc.UserGroups.Add(ctx, "ug", "extra", 0); err != nil {
		t.Fatal(err)
	}
	if err := hc.UserGroups.Remove(ctx, "ug", "vip"); err != nil {
		t.Fatal(err)
	}
	if inGroup("ug", "vip") || !inGroup("ug", "extra") {
		t.Fatal("UserLeaveGroup removed the wrong memberships")
	}
	if err := hc.UserGroups.RemoveFromAll(ctx, "ug"); err != nil {
		t.Fatal(err)
	}
	if inGroup("ug", "extra") {
		t.Fatal("the user is still in a group after leaving all")
	}
	send("extra", "e1")
	send("vip", "v3")
	late := c.dial(t, app, "ug", "a", "b", "json")
	waitUntil(t, "the app server sees the connection opened after the leave", func() bool { return app.connected(late.ConnectionID()) })
	send("vip", "v4")
	if entries, err := c.registry().SetEntries(ctx, "ug/chat/ug"); err != nil || len(entries) != 0 {
		t.Fatalf("stored memberships after leave and expiry: %+v, %v", entries, err)
	}
	settle(t, app, "end", ua, ub, uc, other, late)
	msgs := []string{"v1", "v2", "t1", "t2", "v3", "v4", "e1"}
	expectCounts(t, msgs, map[*clClient]map[string]int{
		ua:    {"v2": 1, "t1": 1},
		ub:    {"v1": 1, "v2": 1, "t1": 1},
		uc:    {"v1": 1, "v2": 1, "t1": 1},
		other: {},
		late:  {},
	})
}

// dialWeak opens a raw service link that carries no clients (what management tools use), for
// the messages the SDK has no API for.
func dialWeak(t *testing.T, ts *servertest.Instance, serverID string) *fakeApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	tok, err := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience(clHub), Claims: auth.ServerClaims(serverID)})
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, cs.ServerURL(clHub, serverID+"-weak"), &websocket.DialOptions{HTTPHeader: http.Header{
		"Authorization": {"Bearer " + tok}, "X-Asrs-Server-Id": {serverID},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	f, _ := svcproto.AppendFrame(nil, svcproto.HandshakeRequest{Version: 1, ConnectionType: svcproto.ConnWeak})
	if err := ws.Write(ctx, websocket.MessageBinary, f); err != nil {
		t.Fatal(err)
	}
	a := &fakeApp{t: t, ws: ws, serverID: serverID, msgs: make(chan svcproto.Message, 1024)}
	first := make(chan svcproto.Message, 1)
	go a.readLoop(first)
	select {
	case m := <-first:
		if hr, ok := m.(svcproto.HandshakeResponse); !ok || hr.ErrorMessage != "" {
			t.Fatalf("weak link handshake: %#v", m)
		}
	case <-ctx.Done():
		t.Fatal("no handshake response")
	}
	return a
}

// ackOf sends an ack-able message and returns its Ack status.
func (a *fakeApp) ackOf(t *testing.T, m svcproto.Message, id int) svcproto.AckStatus {
	t.Helper()
	a.send(m)
	for {
		if ack := expect[svcproto.Ack](t, a); ack.AckID == id {
			return ack.Status
		}
	}
}

func closedByService(t *testing.T, cl *clClient, reason string) {
	t.Helper()
	select {
	case <-cl.Done():
	case <-time.After(clWait):
		t.Fatalf("%s is still connected", cl.name)
	}
	var ce *client.CloseError
	if err := cl.Err(); !errors.As(err, &ce) || ce.Message != reason || ce.AllowReconnect {
		t.Fatalf("%s ended with %v, want a Close %q without reconnect", cl.name, err, reason)
	}
}

func stillOpen(t *testing.T, cls ...*clClient) {
	t.Helper()
	for _, cl := range cls {
		select {
		case <-cl.Done():
			t.Fatalf("%s was closed: %v", cl.name, cl.Err())
		default:
		}
	}
}

// TestClusterExistenceAndClose: existence checks and closes from one node see connections of
// every node.
func TestClusterExistenceAndClose(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	mgmt := dialWeak(t, c.nodes["b"], "mgmt")
	x1 := c.dial(t, app, "ux", "a", "b", "json")
	x2 := c.dial(t, app, "ux", "b", "c", "json")
	y1 := c.dial(t, app, "uy", "c", "c", "json")
	z1 := c.dial(t, app, "uz", "b", "b", "json")
	z2 := c.dial(t, app, "uz", "a", "c", "json")
	w1 := c.dial(t, app, "uw", "a", "a", "json")
	all := []*clClient{x1, x2, y1, z1, z2, w1}
	for _, cl := range all {
		waitUntil(t, "the app server sees "+cl.name, func() bool { return app.connected(cl.ConnectionID()) })
	}
	ctx := ctxFor(t)
	hc := app.hc
	if err := hc.Groups.Add(ctx, y1.ConnectionID(), "gy"); err != nil {
		t.Fatal(err)
	}
	if err := hc.Groups.Add(ctx, z2.ConnectionID(), "gz"); err != nil {
		t.Fatal(err)
	}
	if err := hc.UserGroups.Add(ctx, "uy", "ugy", 0); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", what, got, err, want)
		}
	}
	ok, err := hc.ConnectionExists(ctx, x2.ConnectionID())
	check("ConnectionExists(x2 on C)", ok, err, true)
	ok, err = hc.ConnectionExists(ctx, "nope")
	check("ConnectionExists(nope)", ok, err, false)
	ok, err = hc.UserExists(ctx, "ux")
	check("UserExists(ux on B and C)", ok, err, true)
	ok, err = hc.UserExists(ctx, "nobody")
	check("UserExists(nobody)", ok, err, false)
	ok, err = hc.GroupExists(ctx, "gy")
	check("GroupExists(gy on C)", ok, err, true)
	ok, err = hc.GroupExists(ctx, "none")
	check("GroupExists(none)", ok, err, false)
	ok, err = hc.UserGroups.IsUserInGroup(ctx, "uy", "ugy")
	check("IsUserInGroup(uy, ugy)", ok, err, true)
	ok, err = hc.UserGroups.IsUserInGroup(ctx, "ux", "ugy")
	check("IsUserInGroup(ux, ugy)", ok, err, false)
	// The same checks on the weak link of node B.
	if st := mgmt.ackOf(t, svcproto.CheckConnectionExistenceWithAck{ConnectionID: w1.ConnectionID(), AckID: 1}, 1); st != svcproto.AckOK {
		t.Errorf("CheckConnectionExistenceWithAck(w1 on A) via B = %v", st)
	}
	if st := mgmt.ackOf(t, svcproto.CheckGroupExistenceWithAck{Group: "gz", AckID: 2}, 2); st != svcproto.AckOK {
		t.Errorf("CheckGroupExistenceWithAck(gz on C) via B = %v", st)
	}
	if st := mgmt.ackOf(t, svcproto.CheckUserExistenceWithAck{UserID: "uw", AckID: 3}, 3); st != svcproto.AckOK {
		t.Errorf("CheckUserExistenceWithAck(uw on A) via B = %v", st)
	}

	// CloseConnectionWithAck via node B for a client on node C.
	if st := mgmt.ackOf(t, svcproto.CloseConnectionWithAck{ConnectionID: x2.ConnectionID(), Reason: "one", AckID: 10}, 10); st != svcproto.AckOK {
		t.Fatalf("CloseConnectionWithAck(x2 on C) = %v", st)
	}
	closedByService(t, x2, "one")
	if st := mgmt.ackOf(t, svcproto.CloseConnectionWithAck{ConnectionID: "nope", AckID: 11}, 11); st != svcproto.AckNotFound {
		t.Fatalf("CloseConnectionWithAck(nope) = %v, want NotFound", st)
	}
	// Close a user's connections on B and C, except one.
	if st := mgmt.ackOf(t, svcproto.CloseUserConnectionsWithAck{UserID: "uz", Reason: "user", ExcludedConnections: []string{z1.ConnectionID()}, AckID: 12}, 12); st != svcproto.AckOK {
		t.Fatalf("CloseUserConnectionsWithAck = %v", st)
	}
	closedByService(t, z2, "user")
	// Close a group with its member on C, via the app server on A.
	if err := hc.CloseGroupConnections(ctx, "gy", "group"); err != nil {
		t.Fatal(err)
	}
	closedByService(t, y1, "group")
	stillOpen(t, x1, z1, w1)
	for _, cl := range []*clClient{x2, z2, y1} {
		waitUntil(t, "OnDisconnected for "+cl.name, func() bool { _, ok := app.disconnected(cl.ConnectionID()); return ok })
	}
	ok, err = hc.ConnectionExists(ctx, x2.ConnectionID())
	check("ConnectionExists(x2) after its close", ok, err, false)
	ok, err = hc.GroupExists(ctx, "gy")
	check("GroupExists(gy) after its only member closed", ok, err, false)
	// Close everyone but w1 (on A) from node B.
	if st := mgmt.ackOf(t, svcproto.CloseConnectionsWithAck{Reason: "all", ExcludedConnections: []string{w1.ConnectionID()}, AckID: 13}, 13); st != svcproto.AckOK {
		t.Fatalf("CloseConnectionsWithAck = %v", st)
	}
	closedByService(t, x1, "all")
	closedByService(t, z1, "all")
	stillOpen(t, w1)
	// The closed clients' transports end right after their Close: then they are gone everywhere.
	waitUntil(t, "UserExists(ux) turns false", func() bool {
		ok, err := hc.UserExists(ctx, "ux")
		return err == nil && !ok
	})
	ok, err = hc.UserExists(ctx, "uw")
	check("UserExists(uw), the excluded connection", ok, err, true)
}

// clREST calls the REST API of one node.
func clREST(t *testing.T, ts *servertest.Instance, method, path, body string) restReply {
	t.Helper()
	return doREST(t, ts, restCase{method: method, path: "/api/hubs/chat" + path, body: body})
}

func expectStatus(t *testing.T, r restReply, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d (%s %s), want %d", what, r.status, r.code(), r.body, status)
	}
}

// TestClusterREST: the REST API of any node acts on connections of every node.
func TestClusterREST(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{})
	a, b, cn := c.nodes["a"], c.nodes["b"], c.nodes["c"]
	r1 := c.dial(t, app, "ra", "a", "b", "json")
	r2 := c.dial(t, app, "rb", "b", "c", "messagepack")
	r3 := c.dial(t, app, "ra", "c", "a", "json")
	all := []*clClient{r1, r2, r3}
	for _, cl := range all {
		waitUntil(t, "the app server sees "+cl.name, func() bool { return app.connected(cl.ConnectionID()) })
	}
	r2.OnResult("add", func(args []hubproto.Raw) (any, error) {
		var x, y int
		if err := r2.Unmarshal(args[0], &x); err != nil {
			return nil, err
		}
		if err := r2.Unmarshal(args[1], &y); err != nil {
			return nil, err
		}
		return x + y, nil
	})
	msg := func(m string) string { return `{"target":"msg","arguments":["` + m + `"]}` }

	expectStatus(t, clREST(t, cn, "POST", "/:send?excluded="+r3.ConnectionID(), msg("bc")), 202, "broadcast via C")
	expectStatus(t, clREST(t, cn, "POST", "/:send", msg("bc-fence")), 202, "broadcast via C")
	for _, cl := range all {
		cl.await(t, "bc-fence")
	}
	expectStatus(t, clREST(t, b, "POST", "/users/ra/:send", msg("user")), 202, "send to user via B")
	r1.await(t, "user")
	r3.await(t, "user")
	expectStatus(t, clREST(t, b, "POST", "/connections/"+r2.ConnectionID()+"/:send", msg("conn")), 202, "send to a connection on C via B")
	r2.await(t, "conn")

	// Group membership of a connection on another node.
	expectStatus(t, clREST(t, a, "PUT", "/groups/rg/connections/"+r2.ConnectionID(), ""), 200, "add r2 (on C) to rg via A")
	expectStatus(t, clREST(t, a, "PUT", "/groups/rg/connections/"+r1.ConnectionID(), ""), 200, "add r1 (on B) to rg via A")
	expectStatus(t, clREST(t, b, "PUT", "/connections/"+r3.ConnectionID()+"/groups/rg", ""), 200, "add r3 (on A) to rg via B")
	expectStatus(t, clREST(t, a, "PUT", "/groups/rg/connections/nobody", ""), 404, "add an unknown connection")
	expectStatus(t, clREST(t, b, "POST", "/groups/rg/:send", msg("rg1")), 202, "group send via B")
	for _, cl := range all {
		cl.await(t, "rg1")
	}
	r := clREST(t, cn, "GET", "/groups/rg/connections", "")
	expectStatus(t, r, 200, "list group via C")
	var page struct {
		Value []struct {
			ConnectionID string `json:"connectionId"`
			UserID       string `json:"userId"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	var listed, want []string
	for _, m := range page.Value {
		listed = append(listed, m.ConnectionID+"/"+m.UserID)
	}
	for _, cl := range all {
		want = append(want, cl.ConnectionID()+"/"+strings.Split(cl.name, "@")[0])
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("group listing %q, want %q", listed, want)
	}
	expectStatus(t, clREST(t, b, "DELETE", "/groups/rg/connections/"+r2.ConnectionID(), ""), 200, "remove r2 (on C) from rg via B")
	expectStatus(t, clREST(t, a, "POST", "/groups/rg/:send", msg("rg2")), 202, "group send via A")
	r1.await(t, "rg2")
	r3.await(t, "rg2")

	// User groups.
	expectStatus(t, clREST(t, a, "PUT", "/users/rb/groups/urg?ttl=60", ""), 200, "add user rb (on C) to urg via A")
	expectStatus(t, clREST(t, b, "GET", "/users/rb/groups/urg", ""), 200, "user in group via B")
	expectStatus(t, clREST(t, b, "GET", "/users/ra/groups/urg", ""), 404, "other user in group via B")
	expectStatus(t, clREST(t, cn, "POST", "/groups/urg/:send", msg("urg")), 202, "user group send via C")
	r2.await(t, "urg")
	expectStatus(t, clREST(t, cn, "DELETE", "/users/rb/groups/urg", ""), 204, "remove rb from urg via C")
	expectStatus(t, clREST(t, a, "GET", "/users/rb/groups/urg", ""), 404, "user in group after removal via A")
	expectStatus(t, clREST(t, a, "PUT", "/users/ra/groups/now?ttl=0", ""), 200, "add ra's current connections to now")
	expectStatus(t, clREST(t, b, "POST", "/groups/now/:send", msg("now")), 202, "send to now")
	r1.await(t, "now")
	r3.await(t, "now")

	// Existence checks via A for connections elsewhere.
	for _, ck := range []struct {
		path   string
		status int
	}{
		{"/connections/" + r2.ConnectionID(), 200},
		{"/connections/nobody", 404},
		{"/users/rb", 200},
		{"/users/nobody", 404},
		{"/groups/rg", 200},
		{"/groups/none", 404},
	} {
		expectStatus(t, clREST(t, a, "HEAD", ck.path, ""), ck.status, "HEAD "+ck.path+" via A")
	}

	// :invoke via A on a client held by C (forwarded to its node).
	r = clREST(t, a, "POST", "/connections/"+r2.ConnectionID()+"/:invoke", `{"target":"add","arguments":[2,3]}`)
	expectStatus(t, r, 200, ":invoke via A")
	if got := strings.TrimSpace(string(r.body)); got != `{"result":5}` {
		t.Fatalf(":invoke answered %s", got)
	}
	// :execute via B: the filter picks ra's connections on A and B.
	expectStatus(t, clREST(t, b, "POST", "/:execute?filter="+urlQueryEscape("userId eq 'ra'"),
		`[{"type":"SendMessage","message":`+msg("ex")+`},{"type":"JoinGroup","group":"exg"}]`), 202, ":execute via B")
	r1.await(t, "ex")
	r3.await(t, "ex")
	expectStatus(t, clREST(t, cn, "POST", "/groups/exg/:send", msg("exg")), 202, "send to the group :execute joined")
	r1.await(t, "exg")
	r3.await(t, "exg")

	settle(t, app, "end", all...)
	msgs := []string{"bc", "bc-fence", "user", "conn", "rg1", "rg2", "urg", "now", "ex", "exg"}
	expectCounts(t, msgs, map[*clClient]map[string]int{
		r1: {"bc": 1, "bc-fence": 1, "user": 1, "rg1": 1, "rg2": 1, "now": 1, "ex": 1, "exg": 1},
		r2: {"bc": 1, "bc-fence": 1, "conn": 1, "rg1": 1, "urg": 1},
		r3: {"bc-fence": 1, "user": 1, "rg1": 1, "rg2": 1, "now": 1, "ex": 1, "exg": 1},
	})

	// Close via A a connection held by C.
	expectStatus(t, clREST(t, a, "DELETE", "/connections/"+r2.ConnectionID()+"?reason=rest", ""), 200, "close r2 via A")
	closedByService(t, r2, "rest")
	waitUntil(t, "OnDisconnected for r2", func() bool { _, ok := app.disconnected(r2.ConnectionID()); return ok })
	waitUntil(t, "r2 no longer exists", func() bool {
		return clREST(t, b, "HEAD", "/connections/"+r2.ConnectionID(), "").status == 404
	})
	// Close a user's connections on A and B via C.
	expectStatus(t, clREST(t, cn, "POST", "/users/ra/:closeConnections?reason=bye", ""), 204, "close user ra via C")
	closedByService(t, r1, "bye")
	closedByService(t, r3, "bye")
}

func urlQueryEscape(s string) string { return strings.NewReplacer(" ", "%20", "'", "%27").Replace(s) }

// TestClusterClientResults: the caller server, the server hosting the client and the client are
// on three different nodes.
func TestClusterClientResults(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	caller := c.startApp(t, "caller", "a", clAppOptions{})
	host := c.startApp(t, "host", "b", clAppOptions{sticky: auth.StickyRequired})
	for _, proto := range []string{"json", "messagepack"} {
		t.Run(proto, func(t *testing.T) {
			cl := c.dial(t, host, "r-"+proto, "a", "c", proto)
			id := cl.ConnectionID()
			waitUntil(t, "the hosting server sees the client", func() bool { return host.connected(id) })
			host.mu.Lock()
			holder := host.node[id]
			host.mu.Unlock()
			if caller.connected(id) || holder != nodeID("c") {
				t.Fatalf("the client is held by %q, want node C, and hosted by the server on B", holder)
			}
			cl.OnResult("add", func(args []hubproto.Raw) (any, error) {
				var x, y int
				_ = cl.Unmarshal(args[0], &x)
				_ = cl.Unmarshal(args[1], &y)
				return x + y, nil
			})
			cl.OnResult("fail", func([]hubproto.Raw) (any, error) { return nil, errors.New("boom") })
			started, release := make(chan struct{}, 1), make(chan struct{})
			cl.OnResult("hold", func([]hubproto.Raw) (any, error) {
				started <- struct{}{}
				<-release
				return 0, nil
			})
			ctx := ctxFor(t)
			for _, who := range []*clApp{caller, host} {
				got, err := appserver.InvokeClient[int](ctx, who.hc, id, "add", 2, 3)
				if err != nil || got != 5 {
					t.Fatalf("InvokeClient from %s = %d, %v; want 5", who.id, got, err)
				}
				_, err = appserver.InvokeClient[int](ctx, who.hc, id, "fail")
				var he *appserver.HubError
				if !errors.As(err, &he) || !strings.Contains(he.Message, "boom") {
					t.Fatalf("InvokeClient(fail) from %s = %v, want the client's error", who.id, err)
				}
			}
			_, err := appserver.InvokeClient[int](ctx, caller.hc, "no-such-connection", "add", 1, 2)
			var he *appserver.HubError
			if !errors.As(err, &he) {
				t.Fatalf("InvokeClient on an unknown connection = %v, want a HubError", err)
			}
			// The client leaves while an invocation waits: the caller on node A is told.
			res := make(chan error, 1)
			go func() {
				_, err := appserver.InvokeClient[int](ctx, caller.hc, id, "hold")
				res <- err
			}()
			select {
			case <-started:
			case err := <-res:
				t.Fatalf("InvokeClient(hold) returned before the client got it: %v", err)
			case <-time.After(clWait):
				t.Fatal("the invocation did not reach the client")
			}
			// Close waits for the running handler, which never completes the invocation.
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				_ = cl.Close(context.Background())
			}()
			select {
			case err := <-res:
				if !errors.As(err, &he) {
					t.Fatalf("InvokeClient on a client that left = %v, want a HubError", err)
				}
			case <-time.After(clWait):
				t.Fatal("the caller still waits after the client left")
			}
			close(release)
			<-closed
		})
	}
}

// TestClusterStickyRequired: a client bound to an app server (sticky Required) reaches it on
// whichever node it connects, and is refused or dropped once that server is gone.
func TestClusterStickyRequired(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	s1 := c.startApp(t, "s1", "a", clAppOptions{sticky: auth.StickyRequired})
	s2 := c.startApp(t, "s2", "b", clAppOptions{})
	var bound []*clClient
	for i, on := range []string{"c", "b", "a", "c", "b"} {
		cl := c.dial(t, s1, "req"+strconv.Itoa(i), "c", on, "json")
		var who string
		cl.invoke(t, &who, "whoami")
		if who != "s1" {
			t.Fatalf("a client bound to s1 connected on %s is served by %s", on, who)
		}
		bound = append(bound, cl)
	}
	free := c.dial(t, s2, "free", "a", "b", "json")
	var who string
	free.invoke(t, &who, "whoami")
	if who != "s2" {
		t.Fatalf("the only server on the client's node is s2, but %s serves it", who)
	}
	// s1 goes away: its clients are dropped (allowed to reconnect) on every node, and a token
	// bound to it is refused by every node.
	_ = s1.srv.Close()
	for _, cl := range bound {
		select {
		case <-cl.Done():
		case <-time.After(clWait):
			t.Fatalf("%s is still connected after its required server left", cl.name)
		}
		var ce *client.CloseError
		if err := cl.Err(); !errors.As(err, &ce) || !ce.AllowReconnect {
			t.Fatalf("%s ended with %v, want a Close that allows reconnecting", cl.name, err)
		}
	}
	tok := tokenWith(t, c.nodes["a"], clHub, auth.IssueOptions{Claims: []auth.Claim{
		{Type: auth.ClaimServerName, Value: "s1"}, {Type: auth.ClaimSticky, Value: "Required"},
	}})
	for _, n := range []string{"a", "b", "c"} {
		waitUntil(t, "node "+n+" refuses a client bound to s1", func() bool {
			_, neg := negotiate(t, c.nodes[n], clHub, tok)
			e, _ := neg["error"].(string)
			return strings.Contains(e, "sticky mode Required")
		})
	}
	stillOpen(t, free)
}

// TestClusterMigrateClients: an app server shutting down with MigrateClients hands its clients,
// held by three nodes, to the only other server, which is connected to another node.
func TestClusterMigrateClients(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	m1 := c.startApp(t, "m1", "a", clAppOptions{sticky: auth.StickyPreferred, shutdown: appserver.ShutdownMigrateClients})
	m2 := c.startApp(t, "m2", "b", clAppOptions{})
	var cls []*clClient
	for i, on := range []string{"a", "b", "c"} {
		cl := c.dial(t, m1, "mig"+strconv.Itoa(i), "c", on, "json")
		var who string
		cl.invoke(t, &who, "whoami")
		if who != "m1" {
			t.Fatalf("client on %s is served by %s, want m1", on, who)
		}
		cls = append(cls, cl)
	}
	ctx := ctxFor(t)
	if err := m1.srv.Shutdown(ctx); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	for _, cl := range cls {
		id := cl.ConnectionID()
		if to := m1.movedToOf(id); to != "m2" {
			t.Errorf("%s left m1 with MigratedTo %q, want m2", cl.name, to)
		}
		waitUntil(t, "m2 sees "+cl.name, func() bool { return m2.connected(id) })
		m2.mu.Lock()
		from := m2.from[id]
		m2.mu.Unlock()
		if from != "m1" {
			t.Errorf("%s reached m2 with MigratedFrom %q, want m1", cl.name, from)
		}
		var who string
		cl.invoke(t, &who, "whoami")
		if who != "m2" {
			t.Fatalf("after the migration %s is served by %s", cl.name, who)
		}
		if err := m2.hc.Clients.Client(id).Send(ctx, "msg", "after"); err != nil {
			t.Fatal(err)
		}
		cl.await(t, "after")
	}
	stillOpen(t, cls...)
}

func (a *clApp) movedToOf(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.movedTo[id]
}

// cutStorage is a node's view of the shared storage that can be cut off: every operation
// fails and nothing published reaches the node any more, as when a node crashes or loses the
// backend (what it says after the cut reaches nobody).
type cutStorage struct {
	storage.Storage
	cut *atomic.Bool
}

var errCut = errors.New("test: storage cut off")

func (s cutStorage) Namespace(name string) storage.Storage {
	return cutStorage{s.Storage.Namespace(name), s.cut}
}

func (s cutStorage) Publish(ctx context.Context, topic string, p []byte) error {
	if s.cut.Load() {
		return errCut
	}
	return s.Storage.Publish(ctx, topic, p)
}

func (s cutStorage) Subscribe(ctx context.Context, topic string, h storage.Handler) (storage.Subscription, error) {
	if s.cut.Load() {
		return nil, errCut
	}
	return s.Storage.Subscribe(ctx, topic, func(topic string, p []byte) {
		if !s.cut.Load() {
			h(topic, p)
		}
	})
}

func (s cutStorage) err() error {
	if s.cut.Load() {
		return errCut
	}
	return nil
}

func (s cutStorage) SetAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.SetAdd(ctx, key, member, ttl)
}

func (s cutStorage) SetRemove(ctx context.Context, key, member string) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.SetRemove(ctx, key, member)
}

func (s cutStorage) SetMembers(ctx context.Context, key string) ([]string, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Storage.SetMembers(ctx, key)
}

func (s cutStorage) SetEntries(ctx context.Context, key string) ([]storage.SetEntry, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Storage.SetEntries(ctx, key)
}

func (s cutStorage) SetContains(ctx context.Context, key, member string) (bool, error) {
	if err := s.err(); err != nil {
		return false, err
	}
	return s.Storage.SetContains(ctx, key, member)
}

func (s cutStorage) SetRemoveAll(ctx context.Context, key string) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.SetRemoveAll(ctx, key)
}

func (s cutStorage) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.Put(ctx, key, v, ttl)
}

func (s cutStorage) PutIfAbsent(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	if err := s.err(); err != nil {
		return false, err
	}
	return s.Storage.PutIfAbsent(ctx, key, v, ttl)
}

func (s cutStorage) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Storage.Get(ctx, key)
}

func (s cutStorage) Delete(ctx context.Context, key string) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.Delete(ctx, key)
}

func (s cutStorage) Refresh(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.Refresh(ctx, key, ttl)
}

func (s cutStorage) Heartbeat(ctx context.Context, node string, ttl time.Duration) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.Heartbeat(ctx, node, ttl)
}

func (s cutStorage) LiveNodes(ctx context.Context) ([]string, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Storage.LiveNodes(ctx)
}

func (s cutStorage) RemoveNode(ctx context.Context, node string) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Storage.RemoveNode(ctx, node)
}

// deathBound is the documented bound for a dead node's connections to leave the registry:
// its entry expires 4 heartbeats after its last one, and a node missing from two readings in
// a row is dead (cluster_liveness.go: ≤ 6 heartbeats). A little scheduling slack is added.
const deathBound = 6*clHeartbeat + time.Second // the documented bound, with room for a loaded machine

// TestClusterNodeDeath: a node holding clients goes away, stopped gracefully or cut off first
// (a crash: nothing it says any more reaches the others). The app server hears `offline` for
// that node and drops exactly its clients, the registry forgets them, and the other nodes go on.
func TestClusterNodeDeath(t *testing.T) {
	t.Parallel()
	for _, crash := range []bool{false, true} {
		name := "graceful stop"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var cut atomic.Bool
			c := startNodesWith(t, func(n string, s storage.Storage) storage.Storage {
				if n == "b" {
					return cutStorage{s, &cut}
				}
				return s
			}, "a", "b", "c")
			if crash {
				// The others find it dead; it fails to reach the storage, whatever it says.
				c.allowWarn = append(c.allowWarn, "node is dead", "node=node-b")
			}
			app := c.startApp(t, "app-1", "a", clAppOptions{})
			d1 := c.dial(t, app, "d1", "a", "b", "json")
			d2 := c.dial(t, app, "d2", "c", "b", "messagepack")
			d3 := c.dial(t, app, "d3", "b", "c", "json")
			d4 := c.dial(t, app, "d4", "c", "a", "json")
			for _, cl := range []*clClient{d1, d2, d3, d4} {
				waitUntil(t, "the app server sees "+cl.name, func() bool { return app.connected(cl.ConnectionID()) })
			}
			// An app server connected to node B only, with a client held by node C.
			app2 := c.startApp(t, "app-2", "b", clAppOptions{sticky: auth.StickyRequired})
			e1 := c.dial(t, app2, "e1", "c", "c", "json")
			var who string
			e1.invoke(t, &who, "whoami")
			ctx := ctxFor(t)
			for _, cl := range []*clClient{d1, d3, d4} {
				if err := app.hc.Groups.Add(ctx, cl.ConnectionID(), "g"); err != nil {
					t.Fatal(err)
				}
			}
			// A client result waits for d1 when its node goes.
			held, release := make(chan struct{}, 1), make(chan struct{})
			t.Cleanup(func() { close(release) }) // before d1's cleanup, which waits for the handler
			d1.OnResult("hold", func([]hubproto.Raw) (any, error) {
				held <- struct{}{}
				<-release
				return nil, errors.New("never sent")
			})
			invoked := make(chan error, 1)
			go func() {
				_, err := appserver.InvokeClient[int](ctx, app.hc, d1.ConnectionID(), "hold")
				invoked <- err
			}()
			select {
			case <-held:
			case <-time.After(clWait):
				t.Fatal("the invocation did not reach d1")
			}
			if crash {
				cut.Store(true)
			}
			died := time.Now()
			stopped := make(chan error, 1)
			go func() { stopped <- c.nodes["b"].Stop() }()
			if !crash {
				// A node that left says so: the others stop asking it at once (a question to
				// every node must not wait rpcTimeout for a node that is gone).
				if err := <-stopped; err != nil {
					t.Fatalf("stop: %v", err)
				}
				stopped <- nil
				start := time.Now()
				if ok, err := app.hc.UserExists(ctx, "d3"); err != nil || !ok { // d3 is on node C
					t.Fatalf("UserExists(d3) = %v, %v", ok, err)
				}
				if took := time.Since(start); took > time.Second {
					t.Fatalf("UserExists right after node B left took %v", took)
				}
			}
			waitWithin(t, deathBound, "the app server hears that node-b is offline", func() bool {
				return app.logs.has("service instance offline", "instance="+nodeID("b"))
			})
			for _, cl := range []*clClient{d1, d2} {
				waitUntil(t, "OnDisconnected for "+cl.name, func() bool { _, ok := app.disconnected(cl.ConnectionID()); return ok })
			}
			select {
			case err := <-invoked:
				var he *appserver.HubError
				if !errors.As(err, &he) {
					t.Fatalf("the invocation waiting for a client of the dead node ended with %v, want a HubError", err)
				}
			case <-time.After(clWait):
				t.Fatal("the invocation still waits for a client of the dead node")
			}
			// The client of the app server that was reached through node B may reconnect.
			select {
			case <-e1.Done():
			case <-time.After(deathBound):
				t.Fatal("the client of the app server behind the dead node is still connected")
			}
			if ce := (*client.CloseError)(nil); !errors.As(e1.Err(), &ce) || !ce.AllowReconnect {
				t.Fatalf("the client of the app server behind the dead node ended with %v, want a reconnectable Close", e1.Err())
			}
			for _, cl := range []*clClient{d1, d2} {
				waitWithin(t, deathBound-time.Since(died), "the registry forgets "+cl.name, func() bool {
					ok, err := app.hc.ConnectionExists(ctx, cl.ConnectionID())
					return err == nil && !ok
				})
				if rest := clREST(t, c.nodes["c"], "HEAD", "/connections/"+cl.ConnectionID(), ""); rest.status != 404 {
					t.Fatalf("node C still finds %s: %d", cl.name, rest.status)
				}
			}
			if err := <-stopped; err != nil {
				t.Fatalf("stop: %v", err)
			}

			// The others go on: the group reaches its members on A and C once, user checks answer
			// at once, a new client on C works.
			if err := app.hc.Clients.Group("g").Send(ctx, "msg", "after"); err != nil {
				t.Fatal(err)
			}
			d3.await(t, "after")
			d4.await(t, "after")
			start := time.Now()
			ok, err := app.hc.UserExists(ctx, "d3")
			if err != nil || !ok {
				t.Fatalf("UserExists(d3) = %v, %v", ok, err)
			}
			if rest := clREST(t, c.nodes["a"], "HEAD", "/users/d1", ""); rest.status != 404 {
				t.Fatalf("user d1 of the dead node still exists: %d", rest.status)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("existence checks took %v after the node left: still asking the dead node?", took)
			}
			d5 := c.dial(t, app, "d5", "a", "c", "json")
			var echo string
			d5.invoke(t, &echo, "echo", "alive")
			stillOpen(t, d3, d4, d5)
			for _, cl := range []*clClient{d3, d4} {
				if _, gone := app.disconnected(cl.ConnectionID()); gone {
					t.Fatalf("%s was dropped with the dead node", cl.name)
				}
			}
			settle(t, app, "end", d3, d4)
			expectCounts(t, []string{"after"}, map[*clClient]map[string]int{d3: {"after": 1}, d4: {"after": 1}})
		})
	}
}

// TestClusterFirstConnection: what an app server sends to all, to the user or to a group the
// user belongs to as soon as a connection opened (OnConnected) reaches that connection, also
// when it is the first of its hub or user on its node.
func TestClusterFirstConnection(t *testing.T) {
	t.Parallel()
	c := startNodes(t, "a", "b", "c")
	app := c.startApp(t, "app-1", "a", clAppOptions{greet: true})
	ctx := ctxFor(t)
	if err := app.hc.UserGroups.Add(ctx, "member", "greet", 0); err != nil {
		t.Fatal(err)
	}
	for _, on := range []string{"c", "b", "a"} {
		m := c.dial(t, app, "member", "a", on, "json")
		o := c.dial(t, app, "outsider-"+on, "a", on, "json")
		for _, cl := range []*clClient{m, o} {
			cl.await(t, "hi-all:"+cl.ConnectionID())
			cl.await(t, "hi-user:"+cl.ConnectionID())
		}
		m.await(t, "hi-group:"+m.ConnectionID())
		settle(t, app, "end-"+on, m, o)
		if n := o.count("hi-group:" + o.ConnectionID()); n != 0 {
			t.Fatalf("a connection outside the group got its greeting %d times", n)
		}
	}
}

// slowPuts is a node's storage on which writing some keys takes a while (a registry round trip
// slower than the pub/sub hops that follow it).
type slowPuts struct {
	storage.Storage
	slow func(key string) bool
}

func (s slowPuts) Namespace(name string) storage.Storage {
	return slowPuts{s.Storage.Namespace(name), s.slow}
}

func (s slowPuts) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if s.slow(key) {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Storage.Put(ctx, key, v, ttl)
}

// TestClusterClientResultSlowRegistry: the completion of a client result finds its caller
// however slowly the caller's node records where it waits.
func TestClusterClientResultSlowRegistry(t *testing.T) {
	t.Parallel()
	c := startNodesWith(t, func(n string, s storage.Storage) storage.Storage {
		if n != "a" {
			return s
		}
		return slowPuts{s, func(key string) bool { return strings.HasPrefix(key, "inv/") }}
	}, "a", "b", "c")
	caller := c.startApp(t, "caller", "a", clAppOptions{})
	host := c.startApp(t, "host", "b", clAppOptions{sticky: auth.StickyRequired})
	// One client held by C, one by A itself; both hosted by the server on B.
	for _, on := range []string{"c", "a"} {
		cl := c.dial(t, host, "r-"+on, "b", on, "json")
		waitUntil(t, "the host sees "+cl.name, func() bool { return host.connected(cl.ConnectionID()) })
		cl.OnResult("add", func(args []hubproto.Raw) (any, error) {
			var x, y int
			_ = cl.Unmarshal(args[0], &x)
			_ = cl.Unmarshal(args[1], &y)
			return x + y, nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := appserver.InvokeClient[int](ctx, caller.hc, cl.ConnectionID(), "add", 20, 22)
		cancel()
		if err != nil || got != 42 {
			t.Fatalf("InvokeClient on %s = %d, %v; want 42", cl.name, got, err)
		}
	}
}
