package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// Transport behaviour as peers see it over HTTP: client-and-rest.md §2 (negotiate, CORS) and
// §3 (WebSockets, Server-Sent Events, long polling).

const (
	trWS  = `{"transport":"WebSockets","transferFormats":["Text","Binary"]}`
	trSSE = `{"transport":"ServerSentEvents","transferFormats":["Text"]}`
	trLP  = `{"transport":"LongPolling","transferFormats":["Text","Binary"]}`
)

func TestNegotiateAvailableTransports(t *testing.T) {
	t.Parallel()
	ts := start(t)
	dialApp(t, ts, "chat", "s1")
	for _, tc := range []struct {
		htt  string // asrs.s.htt claim; "" = absent
		want []string
	}{
		{"", []string{trWS, trSSE, trLP}},
		{"1", []string{trWS}},
		{"2", []string{trSSE}},
		{"3", []string{trWS, trSSE}},
		{"4", []string{trLP}},
		{"5", []string{trWS, trLP}},
		{"6", []string{trSSE, trLP}},
		{"7", []string{trWS, trSSE, trLP}},
	} {
		t.Run("htt="+tc.htt, func(t *testing.T) {
			t.Parallel()
			var claims []auth.Claim
			if tc.htt != "" {
				claims = []auth.Claim{{Type: auth.ClaimTransports, Value: tc.htt}}
			}
			p := &httpPeer{t: t, ts: ts, hc: newHTTPClient(t), hub: "chat", tok: tokenWith(t, ts, "chat", auth.IssueOptions{Claims: claims})}
			r := p.do(http.MethodPost, "/client/negotiate?hub=chat&negotiateVersion=1", nil, "")
			if r.err != nil || r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("negotiate = %v, Content-Type %q", r, r.header.Get("Content-Type"))
			}
			var neg struct {
				NegotiateVersion    int             `json:"negotiateVersion"`
				ConnectionID        string          `json:"connectionId"`
				ConnectionToken     string          `json:"connectionToken"`
				AvailableTransports json.RawMessage `json:"availableTransports"`
			}
			if err := json.Unmarshal([]byte(r.body), &neg); err != nil {
				t.Fatal(err)
			}
			if want := "[" + strings.Join(tc.want, ",") + "]"; string(neg.AvailableTransports) != want {
				t.Errorf("availableTransports = %s, want %s", neg.AvailableTransports, want)
			}
			if neg.NegotiateVersion != 1 || len(neg.ConnectionID) != 22 || len(neg.ConnectionToken) != 22 || neg.ConnectionID == neg.ConnectionToken {
				t.Errorf("negotiate body %s", r.body)
			}
		})
	}
}

func TestNegotiatedConnectionExpiresUnused(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{NegotiateTimeout: time.Second}})
	app := dialApp(t, ts, "chat", "s1")
	idle := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	negotiated := time.Now()
	used := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	if r := used.poll(); r.status != http.StatusOK {
		t.Fatalf("first poll %v", r)
	}
	// POST does not start a transport, so it can watch the unused id without using it.
	var last reply
	eventually(t, 5*time.Second, "unused connection id expires", func() bool {
		last = idle.send("")
		return last.status == http.StatusNotFound
	})
	expectText(t, "POST on the expired id", last, http.StatusNotFound, textNoConn)
	if el := time.Since(negotiated); el < 900*time.Millisecond {
		t.Errorf("expired after %v, NegotiateTimeout is 1s", el)
	}
	expectText(t, "long poll on the expired id", idle.poll(), http.StatusNotFound, textNoConn)
	expectText(t, "WebSocket on the expired id", idle.do(http.MethodGet, idle.connURL(""), upgradeHeaders(), ""), http.StatusNotFound, textNoConn)
	// The id whose transport started in time outlives the negotiate timeout.
	used.handshake(app)
	if r := used.poll(); r.status != http.StatusOK || r.body != "{}\x1e" {
		t.Fatalf("used connection poll = %v", r)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	open := start(t)
	dialApp(t, open, "chat", "s1")
	restricted := servertest.Start(t, server.Config{Defaults: server.Settings{AllowedOrigins: []string{"https://good.example"}}})
	dialApp(t, restricted, "chat", "s1")
	const reqHeaders = "authorization,content-type,x-requested-with,x-signalr-user-agent"
	for _, tc := range []struct {
		name        string
		ts          *servertest.Instance
		method      string
		path        string
		origin      string
		status      int
		body        string // checked when not "*"
		allowOrigin string // "" = header must be absent
		methods     []string
	}{
		{"preflight negotiate", open, http.MethodOptions, "/client/negotiate?hub=chat&negotiateVersion=1", "https://app.example", http.StatusNoContent, "", "https://app.example", []string{"POST"}},
		{"preflight transport", open, http.MethodOptions, "/client/?hub=chat&id=abc&_=1", "http://localhost:5173", http.StatusNoContent, "", "http://localhost:5173", []string{"GET", "POST", "DELETE"}},
		{"negotiate with origin", open, http.MethodPost, "/client/negotiate?hub=chat&negotiateVersion=1", "https://app.example", http.StatusOK, "*", "https://app.example", nil},
		{"unauthorized still carries CORS", open, http.MethodGet, "/client/?hub=chat&id=abc&access_token=bad", "https://app.example", http.StatusUnauthorized, "*", "https://app.example", nil},
		{"listed origin preflight", restricted, http.MethodOptions, "/client/negotiate?hub=chat", "https://good.example", http.StatusNoContent, "", "https://good.example", []string{"POST"}},
		{"listed origin transport preflight", restricted, http.MethodOptions, "/client/?hub=chat&id=abc", "https://good.example", http.StatusNoContent, "", "https://good.example", []string{"GET", "POST", "DELETE"}},
		{"foreign origin preflight", restricted, http.MethodOptions, "/client/negotiate?hub=chat", "https://evil.example", http.StatusForbidden, "Origin 'https://evil.example' is not allowed.", "", nil},
		{"foreign origin transport preflight", restricted, http.MethodOptions, "/client/?hub=chat&id=abc", "https://evil.example", http.StatusForbidden, "Origin 'https://evil.example' is not allowed.", "", nil},
		{"foreign origin request gets no CORS headers", restricted, http.MethodPost, "/client/negotiate?hub=chat", "https://evil.example", http.StatusOK, "*", "", nil},
		{"listed origin request", restricted, http.MethodPost, "/client/negotiate?hub=chat", "https://good.example", http.StatusOK, "*", "https://good.example", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &httpPeer{t: t, ts: tc.ts, hc: newHTTPClient(t), hub: "chat", tok: clientToken(t, tc.ts, "chat", "")}
			h := http.Header{"Origin": {tc.origin}}
			if strings.Contains(tc.path, "access_token=") {
				h.Set("Authorization", "")
			}
			if tc.method == http.MethodOptions {
				// A browser preflight carries no credentials.
				h.Set("Authorization", "")
				h.Set("X-Requested-With", "")
				h.Set("X-Signalr-User-Agent", "")
				h.Set("Access-Control-Request-Method", "POST")
				h.Set("Access-Control-Request-Headers", reqHeaders)
			}
			r := p.do(tc.method, tc.path, h, "")
			if r.err != nil || r.status != tc.status || (tc.body != "*" && r.body != tc.body) {
				t.Fatalf("%s %s = %v, want %d %q", tc.method, tc.path, r, tc.status, tc.body)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.allowOrigin)
			}
			if tc.allowOrigin != "" {
				if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
					t.Errorf("Access-Control-Allow-Credentials = %q", got)
				}
				if !strings.Contains(r.header.Get("Vary"), "Origin") {
					t.Errorf("Vary = %q, want Origin (the answer depends on it)", r.header.Get("Vary"))
				}
			}
			if tc.method == http.MethodOptions && tc.status == http.StatusNoContent {
				if got := r.header.Get("Access-Control-Allow-Headers"); got != reqHeaders {
					t.Errorf("Access-Control-Allow-Headers = %q, want the requested %q", got, reqHeaders)
				}
				allowed := map[string]bool{}
				for _, m := range strings.Split(r.header.Get("Access-Control-Allow-Methods"), ",") {
					allowed[strings.TrimSpace(m)] = true
				}
				for _, m := range tc.methods {
					if !allowed[m] {
						t.Errorf("Access-Control-Allow-Methods = %q lacks %s", r.header.Get("Access-Control-Allow-Methods"), m)
					}
				}
			}
		})
	}
}

func TestServerSentEvents(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", "alice"))
	s, r := p.openSSE()
	if s == nil {
		t.Fatalf("SSE GET = %v", r)
	}
	for name, want := range map[string]string{
		"Content-Type":     "text/event-stream",
		"Cache-Control":    "no-cache,no-store",
		"Pragma":           "no-cache",
		"Content-Encoding": "identity",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if s.prefix != ":\r\n" {
		t.Fatalf("first bytes %q, want \":\\r\\n\"", s.prefix)
	}

	open := p.handshake(app)
	if open.Ext.Protocol != "json" || open.QueryString != "?hub=chat" {
		t.Errorf("OpenConnection protocol %q query %q, want json and ?hub=chat (id and access_token stripped)", open.Ext.Protocol, open.QueryString)
	}
	if ev := s.next(); ev.raw != "data: {}\x1e\r\n\r\n" {
		t.Fatalf("handshake event %q", ev.raw)
	}

	// A payload with raw newlines becomes one data: line per line; a trailing \r is dropped.
	multi := "{\"type\":1,\n\"target\":\"m\",\r\n\"arguments\":[]}\x1e"
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte(multi)})
	if ev := s.next(); ev.raw != "data: {\"type\":1,\r\ndata: \"target\":\"m\",\r\ndata: \"arguments\":[]}\x1e\r\n\r\n" {
		t.Fatalf("multi-line event %q", ev.raw)
	}

	// Client to app: POSTed hub messages arrive verbatim, several per POST allowed.
	inv := `{"type":1,"invocationId":"1","target":"echo","arguments":["hi"]}` + "\x1e"
	if r := p.send(inv); r.status != http.StatusOK || r.body != "" {
		t.Fatalf("send = %v", r)
	}
	if d := expect[svcproto.ConnectionData](t, app); string(d.Payload) != inv || d.ConnectionID != p.id {
		t.Fatalf("app got %q for %q", d.Payload, d.ConnectionID)
	}
	two := `{"type":6}` + "\x1e" + `{"type":1,"target":"x","arguments":[]}` + "\x1e"
	if r := p.send(two); r.status != http.StatusOK {
		t.Fatalf("send two = %v", r)
	}
	var got string
	for len(got) < len(two) {
		got += string(expect[svcproto.ConnectionData](t, app).Payload)
	}
	if got != two {
		t.Fatalf("app got %q, want %q", got, two)
	}

	// The client stops by closing its EventSource: the connection ends.
	s.close()
	cc := expectCloseConnection(t, app, p.id)
	t.Logf("CloseConnection after the EventSource closed: error %q", cc.ErrorMessage)
	expectText(t, "POST after close", p.send(inv), http.StatusNotFound, textNoConn)
}

func TestServerSentEventsBatchWholeMessages(t *testing.T) {
	t.Parallel()
	// Room for the big message and everything behind it: this is not a slow-consumer test.
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{OutboxBytes: 64 << 20}})
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	s, r := p.openSSE()
	if s == nil {
		t.Fatalf("SSE GET = %v", r)
	}
	p.handshake(app)
	s.next()
	// The big message blocks the stream while the client does not read; the small ones queue
	// behind it and must come out together, in whole messages.
	big := bigMessage()
	small, all := smallMessages("s", 100)
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte(big)})
	sendAll(app, p.id, small)
	if st, _ := fence(t, app, p.id, 1); st != svcproto.AckOK {
		t.Fatalf("connection gone: %v", st)
	}
	var events []sseEvent
	var got string
	for len(got) < len(big)+len(all) {
		ev := s.next()
		if !strings.HasSuffix(ev.data, "\x1e") {
			t.Fatalf("event %s does not end with a whole message", abbrev(ev.raw))
		}
		events = append(events, ev)
		got += ev.data
	}
	if got != big+all {
		t.Fatalf("events carry %s, want the big message then the 100 small ones", abbrev(got))
	}
	// The pump may take the big message alone or with some small ones; either way the small
	// ones share at most two events.
	if len(events) > 2 {
		t.Errorf("%d events for 101 queued messages, want at most 2", len(events))
	}
	last := events[len(events)-1]
	if strings.Count(last.data, "\x1e") < 2 || last.raw != "data: "+last.data+"\r\n\r\n" {
		t.Errorf("last event %s, want several whole messages on one data: line", abbrev(last.raw))
	}
}

func TestServerSentEventsRejectMessagePack(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	s, r := p.openSSE()
	if s == nil {
		t.Fatalf("SSE GET = %v", r)
	}
	if r := p.send(`{"protocol":"messagepack","version":1}` + "\x1e"); r.status != http.StatusOK {
		t.Fatalf("handshake POST = %v", r)
	}
	want := "data: " + `{"error":"Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."}` + "\x1e\r\n\r\n"
	if ev := s.next(); ev.raw != want {
		t.Fatalf("event %q, want %q", ev.raw, want)
	}
	s.expectEnd()
	st, others := fence(t, app, p.id, 1)
	if st != svcproto.AckNotFound {
		t.Errorf("connection exists after a failed handshake: %v", st)
	}
	for _, m := range others {
		if _, ok := m.(svcproto.OpenConnection); ok {
			t.Errorf("app got OpenConnection for a failed handshake")
		}
	}
	expectText(t, "POST after the failed handshake", p.send(`{"type":6}`+"\x1e"), http.StatusNotFound, textNoConn)
}

func TestServerSentEventsErrors(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	s, r := p.openSSE()
	if s == nil {
		t.Fatalf("SSE GET = %v", r)
	}
	p.handshake(app)
	s.next()
	noID := "/client/?hub=chat"
	unknown := "/client/?hub=chat&id=AAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name, method, path string
		h                  http.Header
		status             int
		body               string // "*": any
	}{
		{"SSE without id", http.MethodGet, noID, sseHeaders(), 400, textNoID},
		{"POST without id", http.MethodPost, noID, nil, 400, textNoID},
		{"DELETE without id", http.MethodDelete, noID, nil, 400, textNoID},
		{"poll without id", http.MethodGet, noID, nil, 400, textNoID},
		{"SSE unknown id", http.MethodGet, unknown, sseHeaders(), 404, textNoConn},
		{"POST unknown id", http.MethodPost, unknown, nil, 404, textNoConn},
		{"DELETE unknown id", http.MethodDelete, unknown, nil, 404, textNoConn},
		{"second event stream", http.MethodGet, p.connURL("&access_token=" + p.tok), sseHeaders(), 409, "*"},
		{"long poll on an SSE connection", http.MethodGet, p.connURL("&_=1"), nil, 400, textChange},
		{"WebSocket on an SSE connection", http.MethodGet, p.connURL(""), upgradeHeaders(), 400, textChange},
		{"DELETE on an SSE connection", http.MethodDelete, p.connURL(""), nil, 400, textNoDelete},
		{"PUT", http.MethodPut, p.connURL(""), nil, 405, "*"},
	} {
		r := p.do(tc.method, tc.path, tc.h, "")
		if r.err != nil || r.status != tc.status || (tc.body != "*" && r.body != tc.body) {
			t.Errorf("%s: %s = %v, want %d %q", tc.name, tc.method, r, tc.status, tc.body)
		}
	}
	// None of that disturbed the connection.
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{\"type\":6}\x1e")})
	if ev := s.next(); ev.data != "{\"type\":6}\x1e" {
		t.Fatalf("event %q", ev.raw)
	}
}

func TestLongPolling(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", "bob"))
	noCache := func(what string, r reply) {
		t.Helper()
		for name, want := range map[string]string{
			"Cache-Control": "no-cache, no-store",
			"Pragma":        "no-cache",
			"Expires":       "Thu, 01 Jan 1970 00:00:00 GMT",
		} {
			if got := r.header.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", what, name, got, want)
			}
		}
	}

	first := p.poll()
	if first.err != nil || first.status != http.StatusOK || first.body != "" {
		t.Fatalf("first poll = %v, want 200 empty at once", first)
	}
	if first.took > 2*time.Second {
		t.Errorf("first poll took %v, it must return at once", first.took)
	}
	noCache("first poll", first)

	open := p.handshake(app)
	if open.Ext.Protocol != "json" || open.QueryString != "?hub=chat" {
		t.Errorf("OpenConnection protocol %q query %q, want json and ?hub=chat (id and _ stripped)", open.Ext.Protocol, open.QueryString)
	}
	hs := p.poll()
	if hs.status != http.StatusOK || hs.body != "{}\x1e" || hs.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("handshake poll = %v Content-Type %q", hs, hs.header.Get("Content-Type"))
	}
	noCache("data poll", hs)

	// Messages queued between polls come back together.
	msgs, all := smallMessages("q", 3)
	sendAll(app, p.id, msgs)
	fence(t, app, p.id, 1)
	if r := p.poll(); r.status != http.StatusOK || r.body != all {
		t.Fatalf("poll = %v, want %q", r, all)
	}

	// Client to app.
	inv := `{"type":1,"target":"echo","arguments":["lp"]}` + "\x1e"
	if r := p.send(inv); r.status != http.StatusOK || r.body != "" || r.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("send = %v", r)
	}
	if d := expect[svcproto.ConnectionData](t, app); string(d.Payload) != inv {
		t.Fatalf("app got %q", d.Payload)
	}

	// A new poll completes the pending one with 204 and takes its place.
	pending := p.pendingPoll()
	next := p.pollAsync()
	if r := wait(t, pending, "superseded poll"); r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("superseded poll = %v, want 204", r)
	}
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{\"type\":6}\x1e")})
	if r := wait(t, next, "newest poll"); r.status != http.StatusOK || r.body != "{\"type\":6}\x1e" {
		t.Fatalf("newest poll = %v", r)
	}

	// DELETE ends the connection: 202, the pending poll completes with 204, the app is told.
	pending = p.pendingPoll()
	del := p.do(http.MethodDelete, p.connURL(""), nil, "")
	if del.err != nil || del.status != http.StatusAccepted {
		t.Fatalf("DELETE = %v, want 202", del)
	}
	t.Logf("DELETE answer: %v Content-Type %q", del, del.header.Get("Content-Type"))
	if r := wait(t, pending, "poll pending at DELETE"); r.status != http.StatusNoContent {
		t.Fatalf("pending poll after DELETE = %v, want 204", r)
	}
	expectCloseConnection(t, app, p.id)
	expectText(t, "poll after DELETE", p.poll(), http.StatusNotFound, textNoConn)
	expectText(t, "second DELETE", p.do(http.MethodDelete, p.connURL(""), nil, ""), http.StatusNotFound, textNoConn)
}

func TestLongPollTimeoutAnswersEmpty(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{PollTimeout: 500 * time.Millisecond}})
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	p.startLongPolling(app)
	r := p.poll()
	if r.err != nil || r.status != http.StatusOK || r.body != "" || r.header.Get("Content-Length") != "0" {
		t.Fatalf("idle poll = %v Content-Length %q, want 200 with Content-Length 0", r, r.header.Get("Content-Length"))
	}
	if r.took < 450*time.Millisecond {
		t.Errorf("idle poll answered after %v, PollTimeout is 500ms", r.took)
	}
	// The connection lives on: the next poll gets data.
	app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{\"type\":6}\x1e")})
	if r := p.poll(); r.status != http.StatusOK || r.body != "{\"type\":6}\x1e" {
		t.Fatalf("poll after timeout = %v", r)
	}
}

func TestLongPollingBatches(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	p.startLongPolling(app)

	// Queued while nobody polls: one poll body carries all of them, in order.
	msgs, all := smallMessages("a", 100)
	sendAll(app, p.id, msgs)
	fence(t, app, p.id, 1)
	if r := p.poll(); r.status != http.StatusOK || r.body != all {
		t.Fatalf("poll = %v, want the 100 messages in one body", r)
	}

	// Sent as one burst while a poll waits: far fewer polls than messages, order kept.
	pending := p.pendingPoll()
	msgs, all = smallMessages("b", 100)
	sendAll(app, p.id, msgs)
	got := wait(t, pending, "poll pending at the burst").body
	polls := 1
	for len(got) < len(all) && polls < len(msgs) {
		r := p.poll()
		if r.status != http.StatusOK {
			t.Fatalf("poll = %v", r)
		}
		got += r.body
		polls++
	}
	if got != all {
		t.Fatalf("polled %s, want %s", abbrev(got), abbrev(all))
	}
	if polls >= len(msgs) {
		t.Fatalf("%d polls for %d messages: no batching", polls, len(msgs))
	}
	t.Logf("100 messages in one burst took %d polls", polls)
}

func TestWrongTransportRequests(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	wsPeer := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	ws := wsPeer.dialWS(app)
	lp := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	lp.startLongPolling(app)
	for _, tc := range []struct {
		name   string
		p      *httpPeer
		method string
		h      http.Header
		status int
		body   string // "*": any
	}{
		{"POST on a WebSocket connection", wsPeer, http.MethodPost, nil, 405, textNoWSPost},
		{"DELETE on a WebSocket connection", wsPeer, http.MethodDelete, nil, 400, textNoDelete},
		{"long poll on a WebSocket connection", wsPeer, http.MethodGet, nil, 400, textChange},
		{"SSE on a WebSocket connection", wsPeer, http.MethodGet, sseHeaders(), 400, textChange},
		{"second WebSocket", wsPeer, http.MethodGet, upgradeHeaders(), 409, "*"},
		{"SSE on a long-polling connection", lp, http.MethodGet, sseHeaders(), 400, textChange},
		{"WebSocket on a long-polling connection", lp, http.MethodGet, upgradeHeaders(), 400, textChange},
	} {
		r := tc.p.do(tc.method, tc.p.connURL(""), tc.h, "")
		if r.err != nil || r.status != tc.status || (tc.body != "*" && r.body != tc.body) {
			t.Errorf("%s: %v, want %d %q", tc.name, r, tc.status, tc.body)
		}
	}
	// Both connections still work.
	app.send(svcproto.ConnectionData{ConnectionID: ws.id, Payload: []byte("{\"type\":6}\x1e")})
	if got := string(ws.read()); got != "{\"type\":6}\x1e" {
		t.Fatalf("WebSocket got %q", got)
	}
	app.send(svcproto.ConnectionData{ConnectionID: lp.id, Payload: []byte("{\"type\":6}\x1e")})
	if r := lp.poll(); r.body != "{\"type\":6}\x1e" {
		t.Fatalf("poll = %v", r)
	}
}

func TestLongPollingClientStopsPolling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		ttl      string // asrs.s.ttl claim; "" = absent
		min, max time.Duration
	}{
		{"default MaxPollInterval 5s", "", 4750 * time.Millisecond, 8 * time.Second},
		{"asrs.s.ttl=1", "1", 750 * time.Millisecond, 3500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t)
			app := dialApp(t, ts, "chat", "s1")
			var claims []auth.Claim
			if tc.ttl != "" {
				claims = []auth.Claim{{Type: auth.ClaimMaxPollInterval, Value: tc.ttl}}
			}
			p := newHTTPPeer(t, ts, "chat", tokenWith(t, ts, "chat", auth.IssueOptions{Claims: claims}))
			p.startLongPolling(app)
			stopped := time.Now()
			cc := expectCloseConnection(t, app, p.id)
			el := time.Since(stopped)
			t.Logf("CloseConnection after %v, error %q", el.Round(time.Millisecond), cc.ErrorMessage)
			if el < tc.min || el > tc.max {
				t.Errorf("client ended %v after its last poll, want between %v and %v", el, tc.min, tc.max)
			}
			expectText(t, "poll after the client was ended", p.poll(), http.StatusNotFound, textNoConn)
		})
	}
}

// A poll the server holds keeps the connection alive, whatever MaxPollInterval says; that must
// also hold for a poll that superseded an older one.
func TestLongPollPendingPollKeepsConnection(t *testing.T) {
	t.Parallel()
	for _, superseding := range []bool{false, true} {
		t.Run("superseding="+strconv.FormatBool(superseding), func(t *testing.T) {
			t.Parallel()
			ts := servertest.Start(t, server.Config{Defaults: server.Settings{MaxPollInterval: time.Second, PollTimeout: 4 * time.Second}})
			app := dialApp(t, ts, "chat", "s1")
			p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
			p.startLongPolling(app)
			var pending <-chan reply
			if superseding {
				pending = p.pendingPoll()
			} else {
				pending = p.pollAsync()
			}
			r := wait(t, pending, "held poll")
			if r.status != http.StatusOK || r.body != "" || r.took < 3500*time.Millisecond {
				t.Errorf("held poll = %v, want 200 empty after the 4s PollTimeout", r)
			}
			st, others := fence(t, app, p.id, 1)
			for _, m := range others {
				if cc, ok := m.(svcproto.CloseConnection); ok {
					t.Errorf("app got CloseConnection %q while a poll was held", cc.ErrorMessage)
				}
			}
			if st != svcproto.AckOK {
				t.Errorf("connection ended while a poll was held (ack %v)", st)
			}
		})
	}
}

func TestLongPollingAppClosesConnection(t *testing.T) {
	t.Parallel()
	closeFrame := `{"type":7,"error":"kicked"}` + "\x1e"
	closeMsgs := func(app *fakeApp, id string, withFrame bool) {
		if withFrame {
			app.send(svcproto.ConnectionData{ConnectionID: id, Payload: []byte(closeFrame), Ext: svcproto.Ext{DataMessageType: svcproto.DataClose}})
		}
		app.send(svcproto.CloseConnection{ConnectionID: id})
	}
	noEcho := func(t *testing.T, app *fakeApp, id string) {
		t.Helper()
		st, others := fence(t, app, id, 99)
		if st != svcproto.AckNotFound {
			t.Errorf("connection still exists: %v", st)
		}
		for _, m := range others {
			if _, ok := m.(svcproto.CloseConnection); ok {
				t.Error("CloseConnection echoed to the app that closed the connection")
			}
		}
	}

	t.Run("close queued between polls", func(t *testing.T) {
		t.Parallel()
		ts := start(t)
		app := dialApp(t, ts, "chat", "s1")
		p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
		p.startLongPolling(app)
		closeMsgs(app, p.id, true)
		fence(t, app, p.id, 1)
		if r := p.poll(); r.status != http.StatusOK || r.body != closeFrame {
			t.Fatalf("poll = %v, want the Close frame", r)
		}
		// Everything was delivered with the Close frame, so the connection is already gone.
		expectText(t, "poll after the Close frame", p.poll(), http.StatusNotFound, textNoConn)
		noEcho(t, app, p.id)
	})
	t.Run("close while a poll waits", func(t *testing.T) {
		t.Parallel()
		ts := start(t)
		app := dialApp(t, ts, "chat", "s1")
		p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
		p.startLongPolling(app)
		pending := p.pendingPoll()
		closeMsgs(app, p.id, true)
		r := wait(t, pending, "poll pending at close")
		if r.status != http.StatusOK || r.body != closeFrame {
			t.Fatalf("poll = %v, want the Close frame", r)
		}
		// Whether the poll saw the outbox closed decides between 204 (closed by the server) and
		// 404 (already gone); the JS client stops on either after reading the Close frame.
		after := p.poll()
		if after.status != http.StatusNoContent && after.status != http.StatusNotFound {
			t.Fatalf("poll after the Close frame = %v, want 204 or 404", after)
		}
		t.Logf("poll after the Close frame: %v", after)
		if after.status == http.StatusNoContent {
			expectText(t, "poll after 204", p.poll(), http.StatusNotFound, textNoConn)
		}
		noEcho(t, app, p.id)
	})
	t.Run("close without frame while a poll waits", func(t *testing.T) {
		t.Parallel()
		ts := start(t)
		app := dialApp(t, ts, "chat", "s1")
		p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
		p.startLongPolling(app)
		pending := p.pendingPoll()
		closeMsgs(app, p.id, false)
		if r := wait(t, pending, "poll pending at close"); r.status != http.StatusNoContent || r.body != "" {
			t.Fatalf("poll = %v, want 204 (connection closed by the server)", r)
		}
		expectText(t, "poll after 204", p.poll(), http.StatusNotFound, textNoConn)
		noEcho(t, app, p.id)
	})
}

// A client may send its first transport request and a POST or DELETE at once (only the client
// orders them). Run with -race: the server must not read the connection's transport unguarded.
func TestLongPollingConcurrentFirstRequests(t *testing.T) {
	t.Parallel()
	ts := start(t)
	dialApp(t, ts, "chat", "s1")
	for range 20 {
		p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
		var wg sync.WaitGroup
		res := make([]reply, 3)
		wg.Add(3)
		go func() { defer wg.Done(); res[0] = p.poll() }()
		go func() { defer wg.Done(); res[1] = p.send("") }()
		go func() { defer wg.Done(); res[2] = p.do(http.MethodDelete, p.connURL(""), nil, "") }()
		wg.Wait()
		for _, r := range res {
			if r.err != nil || r.status >= 500 {
				t.Fatalf("request: %v", r)
			}
		}
	}
}

// A DELETE racing the handshake POST must not leave a connection behind: either the handshake
// loses (no OpenConnection) or the app is told with CloseConnection and the router forgets it.
// The window is narrow, so batches of connections race at once for up to 8 s.
func TestLongPollingDeleteDuringHandshake(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	opened, tries, ackID := 0, 0, 1000
	for deadline := time.Now().Add(8 * time.Second); tries < 2000 && time.Now().Before(deadline); {
		peers := make([]*httpPeer, 8)
		for i := range peers {
			peers[i] = newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
			if r := peers[i].poll(); r.status != http.StatusOK {
				t.Fatalf("first poll %v", r)
			}
		}
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(2)
			go func() { defer wg.Done(); p.send(jsonHandshake) }()
			go func() { defer wg.Done(); p.do(http.MethodDelete, p.connURL(""), nil, "") }()
		}
		wg.Wait()
		// Each DELETE and POST answered after telling the app; the fences order everything
		// before them.
		opens, closes, exists := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, p := range peers {
			ackID++
			st, others := fence(t, app, p.id, ackID)
			exists[p.id] = st == svcproto.AckOK
			for _, m := range others {
				switch m := m.(type) {
				case svcproto.OpenConnection:
					opens[m.ConnectionID] = true
				case svcproto.CloseConnection:
					closes[m.ConnectionID] = true
				}
			}
		}
		for _, p := range peers {
			tries++
			if opens[p.id] {
				opened++
			}
			if exists[p.id] || opens[p.id] && !closes[p.id] {
				t.Fatalf("try %d: after DELETE the connection exists=%v; app got OpenConnection=%v CloseConnection=%v", tries, exists[p.id], opens[p.id], closes[p.id])
			}
		}
	}
	t.Logf("handshake won the race %d times in %d", opened, tries)
}

// Overlapping polls (a poll superseding one that is about to answer) must not share buffers:
// every message arrives exactly once. Run with -race.
func TestLongPollingOverlappingPolls(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	p.startLongPolling(app)
	msgs, _ := smallMessages("o", 1000)
	go sendAll(app, p.id, msgs)
	var mu sync.Mutex
	var got []string
	var bad []reply
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r := p.poll()
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				if r.err != nil || (r.status != http.StatusOK && r.status != http.StatusNoContent) {
					bad = append(bad, r)
					mu.Unlock()
					return
				}
				for _, m := range strings.SplitAfter(r.body, "\x1e") {
					if m != "" {
						got = append(got, m)
					}
				}
				mu.Unlock()
			}
		}()
	}
	var received int
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		received = len(got)
		done := received >= len(msgs) || len(bad) > 0
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	p.do(http.MethodDelete, p.connURL(""), nil, "") // releases the held poll
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("poll failed: %v", bad[0])
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[m]++
	}
	lost, dup := 0, 0
	for _, m := range msgs {
		switch seen[m] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	if lost > 0 || dup > 0 || len(got) != len(msgs) {
		t.Errorf("received %d messages for %d sent: %d lost, %d duplicated", len(got), len(msgs), lost, dup)
	}
}
