package upstream

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// eventually polls cond until it holds (10 s at most).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// start creates a Client and runs it until the test ends; Run must have returned by then.
func start(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return c
}

// call dispatches ev and waits for its result.
func call(t *testing.T, c *Client, ev Event) Result {
	t.Helper()
	ch := make(chan Result, 1)
	c.Dispatch(ev, func(r Result) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
		return Result{}
	}
}

func staticTo(url string) Settings {
	return Settings{Templates: []Template{{URLTemplate: url}}}
}

type received struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// receiver records every request and answers with h (204 when nil).
func receiver(t *testing.T, h http.HandlerFunc) (*httptest.Server, chan received) {
	t.Helper()
	ch := make(chan received, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- received{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body}
		if h == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func next(t *testing.T, ch chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
		return received{}
	}
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// logRecorder is a slog.Handler keeping messages with their attributes.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

func TestRequest(t *testing.T) {
	t.Parallel()
	srv, reqs := receiver(t, nil)
	var keys atomic.Pointer[[]string]
	keys.Store(&[]string{"primary-key", "secondary-key"})
	logs := &logRecorder{}
	c := start(t, Options{
		Settings: Settings{Templates: []Template{
			{URLTemplate: srv.URL + "/api/{hub}/{category}/{event}?code=secret"},
		}},
		Keys:   func() []string { return *keys.Load() },
		Logger: slog.New(logs),
	})
	ev := Event{
		Hub: "chat", Category: CategoryConnections, Event: EventConnected,
		ConnectionID: "conn-1", UserID: "alice",
		Claims: []Claim{{"name", "Alice"}, {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "alice"}},
		Query:  "?hub=chat&id=tok&extra=1",
		Body:   ConnectedBody(), ContentType: ContentTypeJSON,
	}
	if r := call(t, c, ev); r.Completion != nil {
		t.Fatalf("connection event produced a completion: %q", r.Completion)
	}
	r := next(t, reqs)
	if r.method != http.MethodPost || r.path != "/api/chat/connections/connected" || r.query != "code=secret" {
		t.Fatalf("request %s %s?%s", r.method, r.path, r.query)
	}
	for h, want := range map[string]string{
		"X-ASRS-Connection-Id": "conn-1",
		"X-ASRS-Hub":           "chat",
		"X-ASRS-Category":      "connections",
		"X-ASRS-Event":         "connected",
		"X-ASRS-User-Id":       "alice",
		"X-ASRS-User-Claims":   "name: Alice, http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier: alice",
		"X-ASRS-Client-Query":  "?hub=chat&id=tok&extra=1",
		"Content-Type":         "application/json",
		"Authorization":        "",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// Functions split the one header value on "," and compare ignoring case: every key must be
	// there, upper-case hex like the emulator.
	sigs := strings.Split(r.header.Get("X-ASRS-Signature"), ",")
	if len(r.header.Values("X-ASRS-Signature")) != 1 || len(sigs) != 2 ||
		sigs[0] != "sha256="+strings.ToUpper(hmacHex("primary-key", "conn-1")) ||
		sigs[1] != "sha256="+strings.ToUpper(hmacHex("secondary-key", "conn-1")) {
		t.Fatalf("signature %q", r.header.Values("X-ASRS-Signature"))
	}
	if string(r.body) != `{"type":10}` {
		t.Fatalf("body %q", r.body)
	}

	// A message without user, claims or query; keys rotated since.
	keys.Store(&[]string{"", "rotated"})
	inv := []byte{0x96, 0x01, 0x80, 0xc0, 0xa4, 's', 'e', 'n', 'd', 0x91, 0x01, 0x90}
	call(t, c, Event{Hub: "chat", Category: CategoryMessages, Event: "send", ConnectionID: "conn-2",
		Body: inv, ContentType: ContentTypeMessagePack, Protocol: "messagepack"})
	r = next(t, reqs)
	if r.path != "/api/chat/messages/send" || string(r.body) != string(inv) || r.header.Get("Content-Type") != ContentTypeMessagePack {
		t.Fatalf("message request %s %q %q", r.path, r.body, r.header.Get("Content-Type"))
	}
	for _, h := range []string{"X-ASRS-User-Id", "X-ASRS-User-Claims", "X-ASRS-Client-Query"} {
		if v, ok := r.header[http.CanonicalHeaderKey(h)]; ok {
			t.Errorf("%s sent: %q", h, v)
		}
	}
	if got, want := r.header.Get("X-ASRS-Signature"), "sha256="+strings.ToUpper(hmacHex("rotated", "conn-2")); got != want {
		t.Fatalf("rotated signature %q, want %q", got, want)
	}

	// A disconnected event, a default content type, and no keys at all.
	keys.Store(&[]string{})
	call(t, c, Event{Hub: "chat", Category: CategoryConnections, Event: EventDisconnected, ConnectionID: "conn-1",
		Body: DisconnectedBody("boom\r\n"), Claims: []Claim{{"evil", "a\r\nX-Injected: 1"}}})
	r = next(t, reqs)
	if string(r.body) != `{"Type":11,"Error":"boom\r\n"}` || r.header.Get("Content-Type") != ContentTypeJSON {
		t.Fatalf("disconnected %q %q", r.body, r.header.Get("Content-Type"))
	}
	if _, ok := r.header["X-Asrs-Signature"]; ok {
		t.Fatal("signature sent without keys")
	}
	if got := r.header.Get("X-ASRS-User-Claims"); got != "evil: a  X-Injected: 1" || r.header.Get("X-Injected") != "" {
		t.Fatalf("claims header %q", got)
	}
	if s := c.Stats(); s != (Stats{Calls: 3}) {
		t.Fatalf("stats %+v", s)
	}
	if n := logs.count("secret"); n != 0 {
		t.Fatalf("the URL's query was logged %d times", n)
	}
}

// TestHeaderCasingOnTheWire reads the raw request: the X-ASRS-* names keep their documented
// casing (HTTP/1.1 names are case-insensitive, but hand-written receivers sometimes are not).
func TestHeaderCasingOnTheWire(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	head := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			head <- err.Error()
			return
		}
		defer conn.Close()
		var buf []byte
		b := make([]byte, 4096)
		for !strings.Contains(string(buf), "\r\n\r\n") {
			n, err := conn.Read(b)
			if err != nil {
				break
			}
			buf = append(buf, b[:n]...)
		}
		io.WriteString(conn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
		head <- string(buf)
	}()
	c := start(t, Options{Settings: staticTo("http://" + l.Addr().String() + "/"), Keys: func() []string { return []string{"k"} }})
	call(t, c, Event{Hub: "h", Category: CategoryConnections, Event: EventConnected, ConnectionID: "c", UserID: "u",
		Claims: []Claim{{"a", "b"}}, Query: "?x=1", Body: ConnectedBody()})
	got := <-head
	for _, h := range []string{"X-ASRS-Connection-Id: c\r\n", "X-ASRS-Hub: h\r\n", "X-ASRS-Category: connections\r\n",
		"X-ASRS-Event: connected\r\n", "X-ASRS-User-Id: u\r\n", "X-ASRS-User-Claims: a: b\r\n", "X-ASRS-Client-Query: ?x=1\r\n",
		"X-ASRS-Signature: sha256=", "Content-Type: application/json\r\n"} {
		if !strings.Contains(got, h) {
			t.Errorf("request head lacks %q:\n%s", h, got)
		}
	}
}

func TestManagedIdentityIsWarnedOnce(t *testing.T) {
	t.Parallel()
	srv, reqs := receiver(t, nil)
	logs := &logRecorder{}
	c := start(t, Options{
		Settings: Settings{Templates: []Template{{URLTemplate: srv.URL + "/?code=secret",
			Auth: &Auth{Type: AuthManagedIdentity, Resource: "api://app"}}}},
		Logger: slog.New(logs),
	})
	for range 3 {
		call(t, c, Event{Hub: "h", Category: CategoryConnections, Event: EventConnected, ConnectionID: "c", Body: ConnectedBody()})
		if r := next(t, reqs); r.header.Get("Authorization") != "" {
			t.Fatal("Authorization sent")
		}
	}
	if n := logs.count("ManagedIdentity is not supported"); n != 1 {
		t.Fatalf("warned %d times", n)
	}
	if logs.count("secret") != 0 {
		t.Fatal("the URL's query was logged")
	}
}

func jsonCompletion(t *testing.T, m hubproto.Completion) []byte {
	t.Helper()
	b, err := hubproto.JSON().Append(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInvocationResponses(t *testing.T) {
	t.Parallel()
	framedResult := []byte("{\"type\":3,\"invocationId\":\"7\",\"result\":42}\x1e")
	mpResult := []byte{0x07, 0x95, 0x03, 0x80, 0xa1, '7', 0x03, 0x2a}
	mpVoid, _ := hubproto.MessagePack().Append(nil, &hubproto.Completion{InvocationID: "7"})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + "/"
	closed.Close()

	errText := func(s string) []byte { return jsonCompletion(t, hubproto.Completion{InvocationID: "7", Error: s}) }
	void := jsonCompletion(t, hubproto.Completion{InvocationID: "7"})
	for _, tc := range []struct {
		name     string
		h        http.HandlerFunc
		url      string // instead of the receiver
		protocol string
		ct       string
		maxResp  int64
		timeout  time.Duration
		want     []byte
		failures uint64
	}{
		{name: "200 with a framed completion", h: func(w http.ResponseWriter, _ *http.Request) { w.Write(framedResult) }, want: framedResult},
		{name: "200 with two frames", h: func(w http.ResponseWriter, _ *http.Request) {
			w.Write(append(append([]byte{}, framedResult...), framedResult...))
		},
			want: append(append([]byte{}, framedResult...), framedResult...)},
		{name: "200 messagepack", protocol: "messagepack", h: func(w http.ResponseWriter, _ *http.Request) { w.Write(mpResult) }, want: mpResult},
		{name: "200 empty", h: func(w http.ResponseWriter, _ *http.Request) {}, want: void},
		{name: "200 empty chunked", h: func(w http.ResponseWriter, _ *http.Request) { w.(http.Flusher).Flush() }, want: void},
		{name: "204", h: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, want: void},
		{name: "204 messagepack", protocol: "messagepack", h: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, want: mpVoid},
		{name: "unknown protocol: content type decides", protocol: "?", ct: ContentTypeMessagePack,
			h: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, want: mpVoid},
		{name: "202", h: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) },
			want: errText("Invocation failed, status code 202"), failures: 1},
		{name: "404", h: http.NotFound, want: errText("Invocation failed, status code 404"), failures: 1},
		{name: "500 with a body", h: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) },
			want: errText("Invocation failed, status code 500"), failures: 1},
		{name: "timeout", timeout: 50 * time.Millisecond, h: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			want: errText("Invocation failed, status code 500"), failures: 1},
		{name: "connection refused", url: refused, want: errText("Invocation failed, status code 500"), failures: 1},
		{name: "too large by Content-Length", maxResp: int64(len(framedResult)) - 1,
			h:    func(w http.ResponseWriter, _ *http.Request) { w.Write(framedResult) },
			want: errText("Invocation failed, response too large."), failures: 1},
		{name: "too large chunked", maxResp: int64(len(framedResult)) - 1,
			h: func(w http.ResponseWriter, _ *http.Request) {
				w.Write(framedResult[:5])
				w.(http.Flusher).Flush()
				w.Write(framedResult[5:])
			},
			want: errText("Invocation failed, response too large."), failures: 1},
		{name: "exactly the limit", maxResp: int64(len(framedResult)),
			h: func(w http.ResponseWriter, _ *http.Request) { w.Write(framedResult) }, want: framedResult},
		{name: "unframed body", h: func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK") },
			want: errText("Invocation failed, the upstream response is not a framed hub message."), failures: 1},
		{name: "json completion without separator", h: func(w http.ResponseWriter, _ *http.Request) { w.Write(framedResult[:len(framedResult)-1]) },
			want: errText("Invocation failed, the upstream response is not a framed hub message."), failures: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := tc.url
			if url == "" {
				srv, _ := receiver(t, tc.h)
				url = srv.URL
			}
			c := start(t, Options{Settings: staticTo(url), MaxResponseBytes: tc.maxResp, Timeout: tc.timeout})
			proto := tc.protocol
			if proto == "" {
				proto = "json"
			}
			r := call(t, c, Event{Hub: "h", Category: CategoryMessages, Event: "add", ConnectionID: "c", InvocationID: "7", Protocol: proto, ContentType: tc.ct, Body: []byte(`{}`)})
			if string(r.Completion) != string(tc.want) {
				t.Fatalf("completion %q, want %q", r.Completion, tc.want)
			}
			if s := c.Stats(); s != (Stats{Calls: 1, Failures: tc.failures}) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestResponsesIgnoredWithoutInvocationID(t *testing.T) {
	t.Parallel()
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.Header.Get("X-ASRS-Event"))
		w.WriteHeader(code)
		w.Write([]byte("{\"type\":3,\"invocationId\":\"x\"}\x1e"))
	})
	c := start(t, Options{Settings: staticTo(srv.URL)})
	for i, code := range []string{"200", "500", "404", "200"} {
		for _, cat := range []string{CategoryMessages, CategoryConnections} {
			// A connection event never answers with a completion, even carrying an id.
			if r := call(t, c, Event{Hub: "h", Category: cat, Event: code, ConnectionID: "c" + strconv.Itoa(i), InvocationID: map[string]string{CategoryConnections: "1"}[cat]}); r.Completion != nil {
				t.Fatalf("%s %s: completion %q", cat, code, r.Completion)
			}
		}
	}
	if s := c.Stats(); s != (Stats{Calls: 8, Failures: 4}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestNoMatch(t *testing.T) {
	t.Parallel()
	srv, reqs := receiver(t, nil)
	c := start(t, Options{Settings: Settings{Templates: []Template{{URLTemplate: srv.URL, HubPattern: "other"}}}})
	var r Result
	sync := false
	c.Dispatch(Event{Hub: "chat", Category: CategoryMessages, Event: "send", ConnectionID: "c", InvocationID: "9", Protocol: "json"},
		func(res Result) { r, sync = res, true })
	if !sync {
		t.Fatal("no-match result was not immediate")
	}
	if want := jsonCompletion(t, hubproto.Completion{InvocationID: "9", Error: "No upstream is configured for hub 'chat', event 'send'."}); string(r.Completion) != string(want) {
		t.Fatalf("completion %q", r.Completion)
	}
	if r := call(t, c, Event{Hub: "chat", Category: CategoryMessages, Event: "send", ConnectionID: "c"}); r.Completion != nil {
		t.Fatalf("non-blocking no-match completion %q", r.Completion)
	}
	if r := call(t, c, Event{Hub: "chat", Category: CategoryConnections, Event: EventConnected, ConnectionID: "c"}); r.Completion != nil {
		t.Fatalf("connection no-match completion %q", r.Completion)
	}
	if s := c.Stats(); s != (Stats{NoMatch: 3}) {
		t.Fatalf("stats %+v", s)
	}
	select {
	case got := <-reqs:
		t.Fatalf("unexpected request %+v", got)
	default:
	}
}

func TestPerConnectionOrder(t *testing.T) {
	t.Parallel()
	const n = 300
	var (
		mu        sync.Mutex
		inflight  = map[string]int{}
		overlap   = map[string]bool{}
		order     = map[string][]int{}
		bcWaiting atomic.Int32
		bothIn    = make(chan struct{})
	)
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-ASRS-Connection-Id")
		seq, _ := strconv.Atoi(r.Header.Get("X-ASRS-Event"))
		mu.Lock()
		inflight[id]++
		if inflight[id] > 1 {
			overlap[id] = true
		}
		order[id] = append(order[id], seq)
		mu.Unlock()
		if id == "B" || id == "C" {
			// B and C each hold a call until the other one is in flight too: only concurrent
			// connections get past this.
			if bcWaiting.Add(1) == 2 {
				close(bothIn)
			}
			select {
			case <-bothIn:
			case <-time.After(10 * time.Second):
			}
		}
		mu.Lock()
		inflight[id]--
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	c := start(t, Options{Settings: staticTo(srv.URL), MaxConcurrency: 8, QueueLimit: n})

	var dmu sync.Mutex
	done := map[string][]int{}
	var wg sync.WaitGroup
	dispatch := func(id string, seq int) {
		wg.Add(1)
		c.Dispatch(Event{Hub: "h", Category: CategoryMessages, Event: strconv.Itoa(seq), ConnectionID: id}, func(Result) {
			dmu.Lock()
			done[id] = append(done[id], seq)
			dmu.Unlock()
			wg.Done()
		})
	}
	dispatch("B", 0)
	for i := range n {
		dispatch("A", i)
		if i == n/2 {
			dispatch("C", 0)
		}
	}
	// Other connections dispatching at the same time from other goroutines.
	var g sync.WaitGroup
	for k := range 4 {
		g.Go(func() {
			for i := range 50 {
				dispatch("D"+strconv.Itoa(k), i)
			}
		})
	}
	g.Wait()
	wg.Wait()
	select {
	case <-bothIn:
	default:
		t.Fatal("connections B and C never ran concurrently")
	}
	mu.Lock()
	defer mu.Unlock()
	dmu.Lock()
	defer dmu.Unlock()
	for id, want := range map[string]int{"A": n, "B": 1, "C": 1, "D0": 50, "D1": 50, "D2": 50, "D3": 50} {
		if overlap[id] {
			t.Errorf("connection %s had two calls in flight", id)
		}
		for _, got := range [][]int{order[id], done[id]} {
			if len(got) != want {
				t.Fatalf("%s: %d events, want %d", id, len(got), want)
			}
			for i, s := range got {
				if s != i {
					t.Fatalf("%s: event %d arrived in position %d", id, s, i)
				}
			}
		}
	}
}

func TestQueueLimit(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	srv, reqs := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.WriteHeader(http.StatusNoContent)
	})
	logs := &logRecorder{}
	c := start(t, Options{Settings: staticTo(srv.URL), MaxConcurrency: 1, QueueLimit: 2, Logger: slog.New(logs)})

	var wg sync.WaitGroup
	results := make([]Result, 8)
	dispatch := func(i int, ev Event) (immediate bool) {
		wg.Add(1)
		var called atomic.Bool
		ev.Hub, ev.ConnectionID, ev.Protocol = "h", "c", "json"
		if ev.Category == "" {
			ev.Category, ev.Event = CategoryMessages, strconv.Itoa(i)
		}
		c.Dispatch(ev, func(r Result) {
			results[i] = r
			called.Store(true)
			wg.Done()
		})
		return called.Load()
	}
	dispatch(0, Event{})
	if got := next(t, reqs); got.header.Get("X-ASRS-Event") != "0" {
		t.Fatalf("first request %q", got.header.Get("X-ASRS-Event"))
	}
	// 0 is in flight; 1 and 2 fill the queue; 3, 4 and 5 are dropped at once.
	for i := 1; i <= 5; i++ {
		ev := Event{}
		if i%2 == 1 {
			ev.InvocationID = "inv" + strconv.Itoa(i)
		}
		if immediate := dispatch(i, ev); immediate != (i >= 3) {
			t.Fatalf("event %d: immediate result = %v", i, immediate)
		}
	}
	// Connection events are never dropped.
	if dispatch(6, Event{Category: CategoryConnections, Event: EventDisconnected}) {
		t.Fatal("disconnected event was dropped")
	}
	if s := c.Stats(); s.Dropped != 3 {
		t.Fatalf("stats %+v", s)
	}
	if want := jsonCompletion(t, hubproto.Completion{InvocationID: "inv3", Error: "Invocation failed, too many pending upstream calls for this connection."}); string(results[3].Completion) != string(want) {
		t.Fatalf("dropped invocation got %q", results[3].Completion)
	}
	if results[4].Completion != nil {
		t.Fatalf("dropped non-blocking message got %q", results[4].Completion)
	}
	if n := logs.count("queue full"); n != 1 {
		t.Fatalf("drop logged %d times", n)
	}
	close(gate)
	wg.Wait()
	var events []string
	for range 3 {
		events = append(events, next(t, reqs).header.Get("X-ASRS-Event"))
	}
	if strings.Join(events, ",") != "1,2,disconnected" {
		t.Fatalf("delivered %v", events)
	}
	if s := c.Stats(); s != (Stats{Calls: 4, Dropped: 3}) {
		t.Fatalf("stats %+v", s)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Write to a temporary name and rename, as editors do, so the reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestHotReload(t *testing.T) {
	t.Parallel()
	srv, reqs := receiver(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.json")
	settingsFor := func(p string) string {
		return `{"UpstreamSettings":{"Templates":[{"UrlTemplate":"` + srv.URL + p + `","EventPattern":"*","HubPattern":"*","CategoryPattern":"*"}]}}`
	}
	writeFile(t, path, settingsFor("/first"))
	logs := &logRecorder{}
	// A directory stands for its settings.json.
	c := start(t, Options{SettingsFile: dir, ReloadInterval: 5 * time.Millisecond, Logger: slog.New(logs)})
	matches := func(want string) func() bool {
		return func() bool { u, _ := c.Match("h", CategoryMessages, "e"); return u == srv.URL+want }
	}
	if !matches("/first")() {
		t.Fatal("initial settings not used")
	}

	writeFile(t, path, settingsFor("/second/{event}"))
	eventually(t, "the rewritten file", matches("/second/e"))
	call(t, c, Event{Hub: "h", Category: CategoryMessages, Event: "e", ConnectionID: "c"})
	if r := next(t, reqs); r.path != "/second/e" {
		t.Fatalf("sent to %s", r.path)
	}

	writeFile(t, path, `{"UpstreamSettings":{"Templates":[{"UrlTemplate":"relative"}]}}`)
	eventually(t, "the broken file to be logged", func() bool { return logs.count("rejected") == 1 })
	if !matches("/second/e")() {
		t.Fatal("broken file replaced the settings")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file to be logged", func() bool { return logs.count("unavailable") == 1 })
	if !matches("/second/e")() {
		t.Fatal("missing file replaced the settings")
	}

	writeFile(t, path, "UpstreamSettings:\n  Templates:\n    - UrlTemplate: "+srv.URL+"/third\n")
	eventually(t, "the YAML file", matches("/third"))
	if n := logs.count("rejected") + logs.count("unavailable"); n != 2 {
		t.Fatalf("problems logged %d times, want once each", n)
	}
	if got := c.Settings(); len(got.Templates) != 1 || got.Templates[0].HubPattern != "*" {
		t.Fatalf("Settings() = %+v", got)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := New(Options{SettingsFile: filepath.Join(dir, "missing.json")}); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"Templates":[{"UrlTemplate":"x"}]}`)
	if _, err := New(Options{SettingsFile: bad}); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `"x" must be an absolute`) {
		t.Fatalf("broken file: %v", err)
	}
	if _, err := New(Options{Timeout: -1}); err == nil {
		t.Fatal("negative timeout accepted")
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestRunStops(t *testing.T) {
	t.Parallel()
	srv, reqs := receiver(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c, err := New(Options{Settings: staticTo(srv.URL), MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Queued before Run starts: sent once it does.
	results := make(chan [2]string, 8)
	dispatch := func(id string) {
		c.Dispatch(Event{Hub: "h", Category: CategoryMessages, Event: "e", ConnectionID: "c", InvocationID: id, Protocol: "json"},
			func(r Result) { results <- [2]string{id, string(r.Completion)} })
	}
	dispatch("1")
	dispatch("2")
	stopped := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(stopped)
	}()
	next(t, reqs)
	c.Run(ctx) // a second Run returns at once
	cancel()
	<-stopped

	errText := func(id, s string) [2]string {
		return [2]string{id, string(jsonCompletion(t, hubproto.Completion{InvocationID: id, Error: s}))}
	}
	for _, want := range [][2]string{
		errText("1", "Invocation failed, status code 500"),               // in flight, cancelled
		errText("2", "Invocation failed, the service is shutting down."), // queued
	} {
		if got := <-results; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	dispatch("3")
	select {
	case got := <-results:
		if want := errText("3", "Invocation failed, the service is shutting down."); got != want {
			t.Fatalf("after stop: %q", got)
		}
	default:
		t.Fatal("Dispatch after Run returned did not finish at once")
	}
	if s := c.Stats(); s != (Stats{Calls: 1, Failures: 1, Dropped: 2}) {
		t.Fatalf("stats %+v", s)
	}
}
