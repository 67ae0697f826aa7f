package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// Reconnect modes of the official client exercised by TestMatrix.
const (
	modePlain     = "plain"              // no reconnect of any kind
	modeStateful  = "statefulReconnect"  // withStatefulReconnect (WebSockets only on the server)
	modeAutomatic = "automaticReconnect" // withAutomaticReconnect
)

var matrixModes = []string{modePlain, modeStateful, modeAutomatic}

const (
	matrixBurst = 500     // messages in the ordered app -> client burst
	matrixBig   = 1 << 20 // bytes of the large messages
)

// matrixStack is one signalrd plus one Go app server shared by the three modes of a
// transport × protocol cell. Clients reach signalrd through a TCP proxy per mode, so a mode can
// cut its own sockets without touching the other modes' clients.
type matrixStack struct {
	svc     *servertest.Instance
	appURL  string
	proxies map[string]*tcpProxy // mode -> proxy in front of signalrd

	mu           sync.Mutex
	disconnected map[string]error // connection id -> OnDisconnected error
	counts       map[string][]int // connection id -> "count" arguments in arrival order
	cutOff       []string         // connection ids a cut ended, whose OnDisconnected is due
	gates        map[string]chan struct{}
}

func matrixHub(s *matrixStack) *appserver.Hub {
	h := &appserver.Hub{
		// ASP.NET Core's 32 KB default would refuse the 1 MB invocation.
		MaximumReceiveMessageSize: 2 << 20,
		OnDisconnected: func(c *appserver.Context, err error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.disconnected[c.ConnectionID] = err
		},
	}
	h.On("echo", func(c *appserver.Context, v map[string]any) (map[string]any, error) { return v, nil })
	h.On("length", func(c *appserver.Context, s string) (int, error) { return len(s), nil })
	h.On("broadcast", func(c *appserver.Context, msg string) error {
		return c.Clients.All().Send(c, "message", msg)
	})
	h.On("join", func(c *appserver.Context, g string) error { return c.Groups.Add(c, c.ConnectionID, g) })
	h.On("leave", func(c *appserver.Context, g string) error { return c.Groups.Remove(c, c.ConnectionID, g) })
	h.On("sendGroup", func(c *appserver.Context, g, msg string) error {
		return c.Clients.Group(g).Send(c, "message", msg)
	})
	h.On("burst", func(c *appserver.Context, n int) error {
		for i := range n {
			if err := c.Clients.Caller().Send(c, "seq", i); err != nil {
				return err
			}
		}
		return nil
	})
	// stream sends its first half, waits until the test has cut the connection (rather than
	// relying on pacing, which a loaded machine defeats), then sends the rest into the reconnect.
	h.On("stream", func(c *appserver.Context, n int) error {
		for i := range n {
			if i == n/2 {
				select {
				case <-s.gate(c.ConnectionID):
				case <-c.Done():
					return c.Err()
				}
			}
			if err := c.Clients.Caller().Send(c, "tick", i); err != nil {
				return err
			}
		}
		return nil
	})
	h.On("count", func(c *appserver.Context, n int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.counts[c.ConnectionID] = append(s.counts[c.ConnectionID], n)
	})
	// counted runs after every earlier message of the caller (one at a time, in order), so it
	// sees every count the client sent before it, including replayed duplicates.
	h.On("counted", func(c *appserver.Context) ([]int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Clone(s.counts[c.ConnectionID]), nil
	})
	return h
}

func startMatrixStack(t *testing.T) *matrixStack {
	t.Helper()
	s := &matrixStack{
		proxies:      map[string]*tcpProxy{},
		disconnected: map[string]error{},
		counts:       map[string][]int{},
		gates:        map[string]chan struct{}{},
	}
	s.svc = servertest.Start(t, server.Config{})
	for _, m := range matrixModes {
		s.proxies[m] = startProxy(t, s.svc.Addr)
	}
	// The app server reaches signalrd directly; negotiate redirects clients to ClientEndpoint,
	// which the negotiate wrapper below swaps for the proxy of the client's mode.
	endpoint := s.proxies[matrixModes[0]].Addr()
	cs := strings.TrimSuffix(s.svc.ConnectionString(), ";") + ";ClientEndpoint=http://" + endpoint + ";"
	app, err := appserver.New(appserver.Options{ConnectionString: cs, AllowStatefulReconnects: true})
	if err != nil {
		t.Fatal(err)
	}
	app.MapHub("chat", matrixHub(s))
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	if err := app.Ready(ctxT(t)); err != nil {
		t.Fatalf("app server not ready: %v", err)
	}
	negotiate := app.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	})
	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", redirectToModeProxy(negotiate, endpoint, s.proxies))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	s.appURL = hs.URL
	return s
}

// redirectToModeProxy rewrites the redirect URL of the app's negotiate answer from
// ClientEndpoint to the proxy of the mode named in the query (mode=...). It answers 500 when the
// redirect does not point at ClientEndpoint, which the client then reports as its start error.
func redirectToModeProxy(h http.Handler, endpoint string, proxies map[string]*tcpProxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := proxies[r.URL.Query().Get("mode")]
		if p == nil {
			http.Error(w, "test: unknown mode", http.StatusBadRequest)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.Method == http.MethodPost {
			from, to := []byte(`"url":"http://`+endpoint+`/client/`), []byte(`"url":"http://`+p.Addr()+`/client/`)
			if rec.Code != http.StatusOK || bytes.Count(body, from) != 1 {
				http.Error(w, fmt.Sprintf("test: negotiate did not redirect to ClientEndpoint: %d %s", rec.Code, body), http.StatusInternalServerError)
				return
			}
			body = bytes.Replace(body, from, to, 1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// gate is closed by the test to let the stream of connection id send its second half.
func (s *matrixStack) gate(id string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.gates[id]
	if !ok {
		g = make(chan struct{})
		s.gates[id] = g
	}
	return g
}

// expectGone records connections the app server must see end (checked at the end of the cell).
func (s *matrixStack) expectGone(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutOff = append(s.cutOff, ids...)
}

func (s *matrixStack) disconnectedErr(id string) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err, ok := s.disconnected[id]
	return err, ok
}

// TestMatrix runs the official client over every transport × protocol it offers, in each reconnect
// mode, against one Go app server: echo, broadcast, groups, 1 MB messages both ways, an ordered
// 500-message burst, and what a TCP cut does to the connection in that mode.
func TestMatrix(t *testing.T) {
	t.Parallel()
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			s := startMatrixStack(t)
			d := jsclient.Start(t)
			// The modes run one after the other: a broadcast of one mode racing another mode's
			// connect would hit the handshake-order bug TestBroadcastNeverPrecedesHandshakeResponse
			// pins down, instead of what the matrix is about.
			for _, m := range matrixModes {
				t.Run(m, func(t *testing.T) { runMatrixCell(t, s, d, v, m) })
			}
			// Checked once for all modes: a long-polling client is only declared gone after
			// MaxPollInterval (5 s) without a poll, and the modes' timers run concurrently.
			t.Run("app saw cut connections go", func(t *testing.T) {
				s.mu.Lock()
				ids := slices.Clone(s.cutOff)
				s.mu.Unlock()
				for _, id := range ids {
					eventually(t, "OnDisconnected of "+id, func() bool {
						_, ok := s.disconnectedErr(id)
						return ok
					})
				}
			})
		})
	}
}

// matrixCell is one transport × protocol × mode cell: two clients on one mode's proxy.
type matrixCell struct {
	t     *testing.T
	s     *matrixStack
	d     *jsclient.Driver
	v     variant
	mode  string
	proxy *tcpProxy
	ctx   context.Context
	c1    string // driver connection names
	c2    string
}

func runMatrixCell(t *testing.T, s *matrixStack, d *jsclient.Driver, v variant, mode string) {
	c := &matrixCell{
		t: t, s: s, d: d, v: v, mode: mode, proxy: s.proxies[mode], ctx: ctxT(t),
		c1: mode + "/c1", c2: mode + "/c2",
	}
	ids := map[string]string{c.c1: c.connect(c.c1, "u1"), c.c2: c.connect(c.c2, "u2")}

	if mode == modeStateful {
		t.Run("negotiate offers stateful reconnect", func(t *testing.T) { c.negotiateStateful(t) })
	}
	t.Run("echo", func(t *testing.T) { c.echo(t, c.c1) })
	t.Run("broadcast", func(t *testing.T) {
		msg := c.text("broadcast")
		if _, err := d.Invoke(c.ctx, c.c1, "broadcast", msg); err != nil {
			t.Fatal(err)
		}
		c.waitText(t, c.c1, msg)
		c.waitText(t, c.c2, msg)
	})
	t.Run("groups", func(t *testing.T) { c.groups(t) })
	t.Run("large", func(t *testing.T) { c.large(t) })
	t.Run("burst", func(t *testing.T) { c.burst(t, c.c2) })
	switch {
	case mode == modeStateful && v.transport == "WebSockets":
		t.Run("cut survives", func(t *testing.T) { c.cutStateful(t, ids) })
	case mode == modeAutomatic:
		t.Run("cut reconnects", func(t *testing.T) { c.cutAutomatic(t, ids) })
	default:
		// Plain, and stateful on SSE/LP: the JS client asks negotiate for stateful reconnect
		// (useStatefulReconnect=true) and signalrd grants it, but the client only uses it on
		// WebSockets (handshake version 1), so a cut ends the connection as in plain mode.
		t.Run("cut closes", func(t *testing.T) { c.cutCloses(t, ids) })
	}
	// Clients still connected would only slow the next modes down (they get every broadcast).
	for _, conn := range []string{c.c1, c.c2} {
		if err := d.Stop(c.ctx, conn); err != nil {
			t.Errorf("stop %s: %v", conn, err)
		}
	}
}

// text makes a message text unique to this cell: every mode of a stack sees every broadcast.
func (c *matrixCell) text(what string) string { return c.mode + ":" + what }

func (c *matrixCell) connect(name, user string) string {
	c.t.Helper()
	o := jsclient.ConnectOptions{
		URL:       c.s.appURL + "/chat?mode=" + c.mode + "&user=" + user,
		Protocol:  c.v.protocol,
		Transport: c.v.transport,
		Handlers:  []string{"message", "seq", "tick"},
	}
	switch c.mode {
	case modeStateful:
		o.StatefulReconnect = true
	case modeAutomatic:
		// Fast retries keep the matrix quick; the first retry is immediate as by default.
		o.ReconnectDelays = []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second}
	}
	id, err := c.d.Connect(c.ctx, name, o)
	if err != nil {
		c.t.Fatalf("connect %s: %v", name, err)
	}
	info, err := c.d.Info(c.ctx, name)
	if err != nil || info.Transport != c.v.transport || info.State != "Connected" {
		c.t.Fatalf("%s: %+v %v, want %s Connected", name, info, err, c.v.transport)
	}
	return id
}

func (c *matrixCell) echo(t *testing.T, conn string) {
	t.Helper()
	res, err := c.d.Invoke(c.ctx, conn, "echo", map[string]any{"n": 42, "s": c.text("echo")})
	if err != nil {
		t.Fatalf("%s echo: %v", conn, err)
	}
	var got map[string]any
	if err := json.Unmarshal(res, &got); err != nil || got["n"] != float64(42) || got["s"] != c.text("echo") {
		t.Fatalf("%s echo = %s", conn, res)
	}
}

// waitText waits for the "message" invocation of conn carrying exactly want, skipping (and leaving
// for others) every other message, such as the other modes' broadcasts.
func (c *matrixCell) waitText(t *testing.T, conn, want string) {
	t.Helper()
	raw, _ := json.Marshal(want)
	match := jsclient.IsMessage(conn, "message")
	if _, err := c.d.WaitEvent(c.ctx, func(e jsclient.Event) bool {
		return match(e) && len(e.Args) == 1 && bytes.Equal(e.Args[0], raw)
	}); err != nil {
		t.Fatalf("%s waiting for %.40q: %v", conn, want, err)
	}
}

// noText checks that conn never received a "message" with exactly text bad.
func (c *matrixCell) noText(t *testing.T, conn, bad string) {
	t.Helper()
	raw, _ := json.Marshal(bad)
	for _, e := range c.d.Messages(conn, "message") {
		if len(e.Args) == 1 && bytes.Equal(e.Args[0], raw) {
			t.Fatalf("%s received %q", conn, bad)
		}
	}
}

func (c *matrixCell) invoke(t *testing.T, conn, method string, args ...any) json.RawMessage {
	t.Helper()
	res, err := c.d.Invoke(c.ctx, conn, method, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", conn, method, err)
	}
	return res
}

func (c *matrixCell) groups(t *testing.T) {
	g := c.text("room")
	c.invoke(t, c.c1, "join", g)
	c.invoke(t, c.c2, "sendGroup", g, c.text("g1")) // c2 is not a member
	c.waitText(t, c.c1, c.text("g1"))
	c.invoke(t, c.c2, "join", g)
	c.invoke(t, c.c1, "sendGroup", g, c.text("g2"))
	c.waitText(t, c.c1, c.text("g2"))
	c.waitText(t, c.c2, c.text("g2"))
	c.invoke(t, c.c1, "leave", g)
	c.invoke(t, c.c2, "sendGroup", g, c.text("g3"))
	c.waitText(t, c.c2, c.text("g3"))
	// Fence: a broadcast after g3 reached c1, so g3 would have too had c1 still been a member.
	c.invoke(t, c.c2, "broadcast", c.text("groups-fence"))
	c.waitText(t, c.c1, c.text("groups-fence"))
	c.waitText(t, c.c2, c.text("groups-fence"))
	c.noText(t, c.c2, c.text("g1"))
	c.noText(t, c.c1, c.text("g3"))
}

func (c *matrixCell) large(t *testing.T) {
	prefix := c.text("big:")
	big := prefix + strings.Repeat("x", matrixBig-len(prefix))
	var n int
	if err := json.Unmarshal(c.invoke(t, c.c1, "length", big), &n); err != nil || n != matrixBig {
		t.Fatalf("length of a %d-byte string = %d %v", matrixBig, n, err)
	}
	c.invoke(t, c.c2, "broadcast", big)
	c.waitText(t, c.c1, big)
	c.waitText(t, c.c2, big)
}

func (c *matrixCell) burst(t *testing.T, conn string) {
	c.invoke(t, conn, "burst", matrixBurst)
	for i := range matrixBurst {
		ev, err := c.d.WaitEvent(c.ctx, jsclient.IsMessage(conn, "seq"))
		if err != nil {
			t.Fatalf("burst message %d: %v", i, err)
		}
		if string(ev.Args[0]) != fmt.Sprint(i) {
			t.Fatalf("burst message %d was %s", i, ev.Args[0])
		}
	}
	// The completion of burst follows every message it sent, on the same connection.
	if n := len(c.d.Messages(conn, "seq")); n != matrixBurst {
		t.Fatalf("%s got %d burst messages, want %d", conn, n, matrixBurst)
	}
}

// noEvent fails if an event matching match was already received.
func (c *matrixCell) noEvent(t *testing.T, what string, match func(jsclient.Event) bool) {
	t.Helper()
	done, cancel := context.WithCancel(context.Background())
	cancel() // WaitEvent still returns a match that is already logged
	if ev, err := c.d.WaitEvent(done, match); err == nil {
		t.Fatalf("unexpected %s: %+v", what, ev)
	}
}

func (c *matrixCell) cut(t *testing.T) {
	t.Helper()
	if c.proxy.Cut() == 0 {
		t.Fatal("nothing to cut")
	}
}

// cutStateful cuts the sockets in the middle of a server -> client stream (after its first message
// arrived, while the rest of the first half is in flight or unacknowledged, and before the second
// half, which is sent while the client reconnects) and between client -> server sends: nothing is
// lost or duplicated, the connections stay Connected with their ids.
func (c *matrixCell) cutStateful(t *testing.T, ids map[string]string) {
	before := reconnects(t, c.s.svc)
	const n = matrixBurst
	if err := c.d.Send(c.ctx, c.c1, "stream", n); err != nil {
		t.Fatal(err)
	}
	if _, err := c.d.WaitEvent(c.ctx, jsclient.IsMessage(c.c1, "tick")); err != nil {
		t.Fatal(err)
	}
	c.cut(t)
	close(c.s.gate(ids[c.c1]))
	for i := 1; i < n; i++ {
		ev, err := c.d.WaitEvent(c.ctx, jsclient.IsMessage(c.c1, "tick"))
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		if string(ev.Args[0]) != fmt.Sprint(i) {
			t.Fatalf("stream message %d was %s", i, ev.Args[0])
		}
	}
	for i := range n {
		if i == n/3 || i == 2*n/3 {
			c.cut(t)
		}
		if err := c.d.Send(c.ctx, c.c1, "count", i); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	var got []int
	if err := json.Unmarshal(c.invoke(t, c.c1, "counted"), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("app got %d counts, want %d: %v", len(got), n, got)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("app count %d was %d: %v", i, v, got)
		}
	}
	// The echo completion follows every tick on the connection: no duplicate arrived.
	c.echo(t, c.c1)
	if got := len(c.d.Messages(c.c1, "tick")); got != n {
		t.Fatalf("client got %d stream messages, want %d", got, n)
	}
	c.echo(t, c.c2) // idle across three cuts
	msg := c.text("after-cuts")
	c.invoke(t, c.c2, "broadcast", msg)
	c.waitText(t, c.c1, msg)
	c.waitText(t, c.c2, msg)
	for _, conn := range []string{c.c1, c.c2} {
		info, err := c.d.Info(c.ctx, conn)
		if err != nil || info.State != "Connected" || info.ConnectionID != ids[conn] {
			t.Fatalf("%s after cuts: %+v %v, want Connected as %s", conn, info, err, ids[conn])
		}
		c.noEvent(t, "reconnecting", jsclient.IsReconnecting(conn))
		c.noEvent(t, "close", jsclient.IsClose(conn))
		if err, ok := c.s.disconnectedErr(ids[conn]); ok {
			t.Fatalf("app saw %s (%s) disconnect: %v", conn, ids[conn], err)
		}
	}
	if got := reconnects(t, c.s.svc) - before; got < 3 {
		t.Fatalf("%v stateful reconnects, want at least 3 (one per cut)", got)
	}
}

// cutAutomatic cuts the sockets: each client reports reconnecting, then reconnected with a new
// connection id, and works again; the app sees the old connections go.
func (c *matrixCell) cutAutomatic(t *testing.T, ids map[string]string) {
	c.cut(t)
	for _, conn := range []string{c.c1, c.c2} {
		if _, err := c.d.WaitEvent(c.ctx, jsclient.IsReconnecting(conn)); err != nil {
			t.Fatalf("%s reconnecting: %v", conn, err)
		}
		ev, err := c.d.WaitEvent(c.ctx, jsclient.IsReconnected(conn))
		if err != nil {
			t.Fatalf("%s reconnected: %v", conn, err)
		}
		if ev.ConnectionID == "" || ev.ConnectionID == ids[conn] {
			t.Fatalf("%s reconnected as %q, want a new id (was %q)", conn, ev.ConnectionID, ids[conn])
		}
		c.echo(t, conn)
		c.noEvent(t, "close", jsclient.IsClose(conn))
	}
	msg := c.text("after-reconnect")
	c.invoke(t, c.c1, "broadcast", msg)
	c.waitText(t, c.c1, msg)
	c.waitText(t, c.c2, msg)
	c.s.expectGone(ids[c.c1], ids[c.c2])
}

// cutCloses cuts the sockets of a connection without reconnect: the client closes and the app
// sees it go.
func (c *matrixCell) cutCloses(t *testing.T, ids map[string]string) {
	before := reconnects(t, c.s.svc)
	c.cut(t)
	for _, conn := range []string{c.c1, c.c2} {
		ev, err := c.d.WaitEvent(c.ctx, jsclient.IsClose(conn))
		if err != nil {
			t.Fatalf("%s close: %v", conn, err)
		}
		t.Logf("%s closed: %q", conn, ev.Error)
		if want := matrixCutError[c.v.transport]; !strings.Contains(ev.Error, want) || (want == "" && ev.Error != "") {
			t.Fatalf("%s close error %q, want %q", conn, ev.Error, want)
		}
		if st, err := c.d.State(c.ctx, conn); err != nil || st != "Disconnected" {
			t.Fatalf("%s state %q %v after the cut", conn, st, err)
		}
		c.noEvent(t, "reconnecting", jsclient.IsReconnecting(conn))
	}
	c.s.expectGone(ids[c.c1], ids[c.c2])
	if got := reconnects(t, c.s.svc) - before; got != 0 {
		t.Fatalf("%v stateful reconnects on %s", got, c.v.transport)
	}
}

// matrixCutError is the close error the official client (10.x, node) reports when its transport's
// TCP connection is reset. WebSockets: close code 1006. SSE: the EventSource's onerror makes the
// transport stop without an error, so onclose fires with none (""), like a clean stop. LongPolling:
// the pending poll's fetch rejects and that error is reported.
var matrixCutError = map[string]string{
	"WebSockets":       "1006",
	"ServerSentEvents": "",
	"LongPolling":      "fetch failed",
}

// negotiateStateful negotiates like the JS client built withStatefulReconnect (whatever transport it
// will pick): the app redirects, and signalrd's negotiate answers useStatefulReconnect: true because
// the app server allows it. Negotiate cannot know the transport yet; the handshake version (2 only
// from a client using WebSockets) decides.
func (c *matrixCell) negotiateStateful(t *testing.T) {
	post := func(u, token string, into any) {
		t.Helper()
		req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Close = true // no idle connection left behind in http.DefaultClient
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %v", u, resp.StatusCode, err)
		}
	}
	var redirect struct{ URL, AccessToken string }
	post(c.s.appURL+"/chat/negotiate?mode="+c.mode+"&negotiateVersion=1&useStatefulReconnect=true", "", &redirect)
	base, query, _ := strings.Cut(redirect.URL, "?")
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	var got struct {
		UseStatefulReconnect bool
		AvailableTransports  []struct{ Transport string }
	}
	post(base+"negotiate?"+query+"&negotiateVersion=1&useStatefulReconnect=true", redirect.AccessToken, &got)
	if !got.UseStatefulReconnect {
		t.Fatalf("negotiate did not offer stateful reconnect: %+v", got)
	}
	if !slices.ContainsFunc(got.AvailableTransports, func(a struct{ Transport string }) bool { return a.Transport == c.v.transport }) {
		t.Fatalf("negotiate with stateful reconnect does not offer %s: %+v", c.v.transport, got.AvailableTransports)
	}
}
