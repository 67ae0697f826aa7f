package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// Scale-out helpers: real redis-server processes (standalone and a 3-master Redis Cluster),
// signalrd nodes sharing them, a front that routes a client's negotiate and transport
// requests to chosen nodes (no stickiness), and Go clients connected straight to one node.

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clusterHeartbeat is the nodes' liveness interval: short, so a dead node is noticed in about
// a second (4 heartbeats for its entry to expire, 2 more readings). The Redis-restart test uses
// a longer one: after an outage each node's go-redis client recovers on its own schedule (it
// probes a refused address once a second), and peers wait one node TTL (4 heartbeats) for each
// other; 300 ms leaves a margin, and is short enough that the former rule (two readings) took
// the restart for a peer's death in about half the runs.
const (
	clusterHeartbeat        = 200 * time.Millisecond
	clusterHeartbeatOutages = 300 * time.Millisecond
)

// uniqueRedisPrefix keeps clusters sharing one Redis apart.
func uniqueRedisPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "e2e" + hex.EncodeToString(b[:])
}

// soNodes are signalrd nodes of one cluster (Default mode, short heartbeat); node i is named
// "n<i+1>".
type soNodes struct {
	redisURL, prefix string
	heartbeat        time.Duration
	nodes            []*servertest.Instance
}

// startNodes starts n signalrd nodes sharing redisURL under a fresh prefix. via, when given,
// maps a node number to another URL of the same Redis (a proxy in front of it).
func startNodes(t *testing.T, redisURL string, n int, heartbeat time.Duration, via ...map[int]string) *soNodes {
	t.Helper()
	c := &soNodes{redisURL: redisURL, prefix: uniqueRedisPrefix(), heartbeat: heartbeat}
	for i := range n {
		u := redisURL
		for _, m := range via {
			if v, ok := m[i+1]; ok {
				u = v
			}
		}
		c.nodes = append(c.nodes, c.start(t, i, u))
	}
	return c
}

func (c *soNodes) start(t *testing.T, i int, redisURL string) *servertest.Instance {
	t.Helper()
	id := "n" + strconv.Itoa(i+1)
	cfg := server.Config{
		Redis:       redisURL,
		RedisPrefix: c.prefix,
		NodeID:      id,
		Heartbeat:   c.heartbeat,
		Defaults:    server.Settings{Mode: server.ModeDefault},
	}
	if os.Getenv("SIGNALRD_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", id)
	}
	return servertest.Start(t, cfg)
}

// node returns node i (1-based, as the node ids).
func (c *soNodes) node(i int) *servertest.Instance { return c.nodes[i-1] }

// connStr is an app server's connection string: sockets to node, clients sent to clientEndpoint
// (when set) by negotiate.
func (c *soNodes) connStr(node int, clientEndpoint string) string {
	s := c.node(node).ConnectionString()
	if clientEndpoint != "" {
		s = strings.TrimSuffix(s, ";") + ";ClientEndpoint=" + clientEndpoint + ";"
	}
	return s
}

// waitNegotiable waits until every node's negotiate answers for hub: each node sees an app
// server (its own, or a live peer's from the registry).
func (c *soNodes) waitNegotiable(t *testing.T, hub string) {
	t.Helper()
	for i, n := range c.nodes {
		waitFor(t, 15*time.Second, fmt.Sprintf("node n%d to see an app server of %s", i+1, hub), func() bool {
			return negotiateOK(n, hub)
		})
	}
}

// negotiateOK reports whether a client negotiate on node n succeeds for hub.
func negotiateOK(n *servertest.Instance, hub string) bool {
	u := n.URL + "/client/negotiate?hub=" + hub + "&negotiateVersion=1"
	tok, err := auth.IssueToken(n.Key, auth.IssueOptions{Audience: n.URL + "/client/?hub=" + hub})
	if err != nil {
		return false
	}
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"connectionToken"`)
}

// clientGauge is node n's signalrd_client_connections total (open client connections).
func clientGauge(t testing.TB, n *servertest.Instance) int {
	t.Helper()
	mfs, err := n.Server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "signalrd_client_connections" {
			for _, m := range mf.GetMetric() {
				total += m.GetGauge().GetValue()
			}
		}
	}
	return int(total)
}

// routeFront is what a client's service requests go through: a plain HTTP reverse proxy with no
// stickiness. The client's URL carries route=<N><T> (digits, 1-based nodes): negotiate goes to
// node N, the first transport request of a connection to node T, and every later request of it
// alternates between T and N, so a node that does not hold the connection must forward it. A
// node that refuses connections is skipped (the next node of the front's pool is used), as a
// load balancer's health check would.
type routeFront struct {
	URL   string
	nodes []*servertest.Instance // by node number - 1
	pool  []int                  // nodes tried when the chosen one is down

	srv *http.Server
	rr  atomic.Uint64

	mu    sync.Mutex
	seen  map[string]bool // connection tokens whose first transport request was routed
	count map[string]int  // "kind@node" -> requests (kind: negotiate, first, later)
}

func startRouteFront(t *testing.T, c *soNodes, pool ...int) *routeFront {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &routeFront{URL: "http://" + l.Addr().String(), nodes: c.nodes, pool: pool, seen: map[string]bool{}, count: map[string]int{}}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(l) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func (f *routeFront) serve(w http.ResponseWriter, r *http.Request) {
	route := r.URL.Query().Get("route")
	if len(route) != 2 {
		http.Error(w, "front: route=<negotiate node><transport node> missing", http.StatusBadRequest)
		return
	}
	neg, tr := int(route[0])-'0', int(route[1])-'0'
	if neg < 1 || tr < 1 || neg > len(f.nodes) || tr > len(f.nodes) {
		http.Error(w, "front: no such node", http.StatusBadRequest)
		return
	}
	var kind string
	var node int
	switch {
	case strings.HasSuffix(r.URL.Path, "/negotiate"):
		kind, node = "negotiate", neg
	default:
		id := r.URL.Query().Get("id")
		f.mu.Lock()
		first := !f.seen[id]
		f.seen[id] = true
		f.mu.Unlock()
		if first {
			kind, node = "first", tr
		} else {
			kind = "later"
			node = []int{tr, neg}[f.rr.Add(1)%2]
		}
	}
	node = f.alive(node)
	if node == 0 {
		http.Error(w, "front: no node up", http.StatusBadGateway)
		return
	}
	f.mu.Lock()
	f.count[kind+"@"+strconv.Itoa(node)]++
	f.mu.Unlock()
	target, _ := url.Parse(f.nodes[node-1].URL)
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		FlushInterval: -1, // SSE and long polls stream through
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.ServeHTTP(w, r)
}

// alive returns node if it accepts connections, else the first pool node that does (0: none).
func (f *routeFront) alive(node int) int {
	up := func(n int) bool {
		c, err := net.DialTimeout("tcp", f.nodes[n-1].Addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	if up(node) {
		return node
	}
	for _, n := range f.pool {
		if n != node && up(n) {
			return n
		}
	}
	return 0
}

// requests is how many requests of kind went to node.
func (f *routeFront) requests(kind string, node int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[kind+"@"+strconv.Itoa(node)]
}

// goClient is a Go client connected straight to one node (its /client/ endpoint, a token the
// test signs), recording every "message" and "tick" it receives.
type goClient struct {
	conn *client.Conn
	mu   sync.Mutex
	msgs []string           // "message" arguments
	tick map[string][]int64 // "tick" (source, seq) arguments, by source
}

func dialNode(t *testing.T, n *servertest.Instance, hub, user, protocol string) *goClient {
	t.Helper()
	ctx := ctxT(t)
	aud := n.URL + "/client/?hub=" + hub
	c, err := client.Dial(ctx, client.Options{
		URL:      aud,
		Protocol: protocol,
		AccessToken: func(context.Context) (string, error) {
			return auth.IssueToken(n.Key, auth.IssueOptions{Audience: aud, Claims: []auth.Claim{{Type: "nameid", Value: user}}})
		},
	})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", n.URL, user, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	g := &goClient{conn: c, tick: map[string][]int64{}}
	c.On("message", func(args []hubproto.Raw) {
		var s string
		_ = c.Unmarshal(args[0], &s)
		g.mu.Lock()
		g.msgs = append(g.msgs, s)
		g.mu.Unlock()
	})
	c.On("tick", func(args []hubproto.Raw) {
		var src string
		var seq int64
		_ = c.Unmarshal(args[0], &src)
		_ = c.Unmarshal(args[1], &seq)
		g.mu.Lock()
		g.tick[src] = append(g.tick[src], seq)
		g.mu.Unlock()
	})
	return g
}

// count is how many times msg arrived.
func (g *goClient) count(msg string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// ticks is a copy of the ticks received from src, in arrival order.
func (g *goClient) ticks(src string) []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int64(nil), g.tick[src]...)
}

// waitMsg waits until msg arrived at least once.
func (g *goClient) waitMsg(t *testing.T, msg string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%q at a client", msg), func() bool { return g.count(msg) > 0 })
}

// soApp starts a Go app server hosting hub "chat" (chatHub) with connStr and that many sockets,
// and waits until they are up. Its logs are kept in the returned buffer.
func soApp(t *testing.T, connStr string, st *stack, sockets int) (*appserver.Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	app, err := appserver.New(appserver.Options{
		ConnectionString: connStr,
		ConnectionCount:  sockets,
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Timing:           appserver.Timing{ReconnectBase: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	app.MapHub("chat", chatHub(st))
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.Ready(ctx); err != nil {
		t.Fatalf("app server not ready: %v", err)
	}
	return app, logs
}

// newStack is the bookkeeping chatHub needs (OnDisconnected errors by connection id).
func newStack() *stack { return &stack{disconnected: map[string]error{}} }

// negotiateFront serves app's negotiate for hub "chat" at URL/chat/negotiate (user from ?user=).
func negotiateFront(t *testing.T, app *appserver.Server) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", app.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
