package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// Token re-checks, client liveness and write batching, as peers see them (client-and-rest.md
// §2.6, §3, §5).

func TestExpiredTokenRejectedOnHTTPTransports(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	// Expired an hour ago: well outside the default 5 min skew.
	expired := tokenWith(t, ts, "chat", auth.IssueOptions{Lifetime: time.Second, Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	bearer := http.Header{"Authorization": {"Bearer " + expired}}

	lp := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	lp.startLongPolling(app)
	sse := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
	s, r := sse.openSSE()
	if s == nil {
		t.Fatalf("SSE GET = %v", r)
	}
	sse.handshake(app)
	s.next()

	for _, tc := range []struct {
		name, method, path string
		h                  http.Header
	}{
		{"long poll", http.MethodGet, lp.connURL("&_=1"), bearer},
		{"long-polling POST", http.MethodPost, lp.connURL(""), bearer},
		{"long-polling DELETE", http.MethodDelete, lp.connURL(""), bearer},
		{"SSE GET (query token)", http.MethodGet, sse.connURL("&access_token=" + expired), http.Header{"Authorization": {""}, "Accept": {"text/event-stream"}}},
		{"SSE POST", http.MethodPost, sse.connURL(""), bearer},
	} {
		r := lp.do(tc.method, tc.path, tc.h, "")
		if r.err != nil || r.status != http.StatusUnauthorized || !strings.HasPrefix(r.body, "Unauthorized: ") {
			t.Errorf("%s with an expired token = %v, want 401", tc.name, r)
		}
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
		}
	}
	// The rejected requests did not touch the connections.
	if r := lp.send(`{"type":6}` + "\x1e"); r.status != http.StatusOK {
		t.Errorf("long-polling POST with a valid token = %v", r)
	}
	if r := sse.send(`{"type":6}` + "\x1e"); r.status != http.StatusOK {
		t.Errorf("SSE POST with a valid token = %v", r)
	}
}

func TestTokenExpiryDuringConnection(t *testing.T) {
	t.Parallel()
	// No skew, so a token really expires within the test.
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{TokenSkew: -1}})
	app := dialApp(t, ts, "chat", "s1")
	short := func() string { return tokenWith(t, ts, "chat", auth.IssueOptions{Lifetime: 2 * time.Second}) }
	wsPeer := newHTTPPeer(t, ts, "chat", short())
	ws := wsPeer.dialWS(app)
	lp := newHTTPPeer(t, ts, "chat", short())
	lp.startLongPolling(app)

	var last reply
	eventually(t, 6*time.Second, "long-polling requests rejected once the token expired", func() bool {
		last = lp.send("")
		return last.status != http.StatusOK
	})
	if last.status != http.StatusUnauthorized {
		t.Fatalf("long-polling POST after expiry = %v, want 401", last)
	}
	if r := lp.poll(); r.status != http.StatusUnauthorized {
		t.Errorf("poll after expiry = %v, want 401", r)
	}
	// The WebSocket was authorized at upgrade and is not re-checked.
	inv := `{"type":1,"target":"still","arguments":[]}` + "\x1e"
	if err := ws.ws.Write(context.Background(), websocket.MessageText, []byte(inv)); err != nil {
		t.Fatal(err)
	}
	for {
		d := expect[svcproto.ConnectionData](t, app)
		if d.ConnectionID == ws.id {
			if string(d.Payload) != inv {
				t.Fatalf("app got %q", d.Payload)
			}
			break
		}
	}
	app.send(svcproto.ConnectionData{ConnectionID: ws.id, Payload: []byte("{\"type\":6}\x1e")})
	if got := string(ws.read()); got != "{\"type\":6}\x1e" {
		t.Fatalf("WebSocket after token expiry got %q", got)
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	const want = `{"type":7,"error":"Client hasn't sent a message/ping within the configured ClientTimeoutInterval."}` + "\x1e"
	t.Run("WebSocket", func(t *testing.T) {
		t.Parallel()
		ts := servertest.Start(t, server.Config{Defaults: server.Settings{ClientTimeout: time.Second}})
		app := dialApp(t, ts, "chat", "s1")
		silent, _ := connect(t, ts, app, "chat", "", "json")
		handshaken := time.Now()
		pinger, _ := connect(t, ts, app, "chat", "", "json")
		stop := make(chan struct{})
		pingDone := make(chan struct{})
		go func() {
			defer close(pingDone)
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := pinger.ws.Write(ctx, websocket.MessageText, []byte("{\"type\":6}\x1e"))
					cancel()
					if err != nil {
						return
					}
				}
			}
		}()
		defer func() { close(stop); <-pingDone }()

		if got := string(silent.read()); got != want {
			t.Fatalf("silent client got %q, want %q", got, want)
		}
		if el := time.Since(handshaken); el < time.Second {
			t.Errorf("closed after %v, ClientTimeout is 1s", el)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if _, _, err := silent.ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Errorf("want close 1000 after the Close frame, got %v", err)
		}
		cc := expectCloseConnection(t, app, silent.id)
		t.Logf("CloseConnection error %q", cc.ErrorMessage)
		// The client that pings stays.
		if st, _ := fence(t, app, pinger.id, 1); st != svcproto.AckOK {
			t.Errorf("pinging client was closed (%v)", st)
		}
	})
	t.Run("ServerSentEvents", func(t *testing.T) {
		t.Parallel()
		ts := servertest.Start(t, server.Config{Defaults: server.Settings{ClientTimeout: time.Second}})
		app := dialApp(t, ts, "chat", "s1")
		p := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", ""))
		s, r := p.openSSE()
		if s == nil {
			t.Fatalf("SSE GET = %v", r)
		}
		p.handshake(app)
		s.next()
		if ev := s.next(); ev.raw != "data: "+want+"\r\n\r\n" {
			t.Fatalf("event %q, want the Close frame", ev.raw)
		}
		s.expectEnd()
		expectCloseConnection(t, app, p.id)
	})
}

func TestCloseOnAuthExpire(t *testing.T) {
	t.Parallel()
	const want = `{"type":7,"error":"The access token has expired.","allowReconnect":true}` + "\x1e"
	for _, tc := range []struct {
		name string
		aeo  time.Duration // asrs.s.aeo relative to now
	}{
		{"aeo 2s ahead", 2 * time.Second},
		{"aeo in the past", -time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t)
			app := dialApp(t, ts, "chat", "s1")
			tok := tokenWith(t, ts, "chat", auth.IssueOptions{Claims: []auth.Claim{
				{Type: auth.ClaimCloseOnAuthExpire, Value: "true"},
				{Type: auth.ClaimAuthExpiresOn, Value: strconv.FormatInt(time.Now().Add(tc.aeo).Unix(), 10)},
			}})
			p := newHTTPPeer(t, ts, "chat", tok)
			ws := p.dialWSRaw()
			if err := ws.Write(context.Background(), websocket.MessageText, []byte(jsonHandshake)); err != nil {
				t.Fatal(err)
			}
			expect[svcproto.OpenConnection](t, app)
			expect[svcproto.ConnectionData](t, app)
			app.send(svcproto.ConnectionData{ConnectionID: p.id, Payload: []byte("{}\x1e")})
			c := &rawClient{t: t, ws: ws, id: p.id}
			var msgs []string
			for len(msgs) == 0 || !strings.HasPrefix(msgs[len(msgs)-1], `{"type":7`) {
				for _, m := range strings.SplitAfter(string(c.read()), "\x1e") {
					if m != "" {
						msgs = append(msgs, m)
					}
				}
			}
			if msgs[len(msgs)-1] != want {
				t.Fatalf("Close frame %q, want %q", msgs[len(msgs)-1], want)
			}
			if tc.aeo > 0 && (len(msgs) != 2 || msgs[0] != "{}\x1e") {
				t.Errorf("messages %q, want the handshake response then the Close frame", msgs)
			}
			t.Logf("client got %q", msgs)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("want close 1000 after the Close frame, got %v", err)
			}
			cc := expectCloseConnection(t, app, p.id)
			t.Logf("CloseConnection error %q", cc.ErrorMessage)
		})
	}
}

func TestWebSocketBatchesWholeMessages(t *testing.T) {
	t.Parallel()
	// Room for the big message and everything behind it: this is not a slow-consumer test.
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{OutboxBytes: 64 << 20}})
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	// The big message blocks the socket while the client does not read; the small ones queue
	// behind it and must come out as one WebSocket message of whole hub messages.
	big := bigMessage()
	small, all := smallMessages("w", 100)
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte(big)})
	sendAll(app, c.id, small)
	if st, _ := fence(t, app, c.id, 1); st != svcproto.AckOK {
		t.Fatalf("connection gone: %v", st)
	}
	var frames []string
	var got string
	for len(got) < len(big)+len(all) {
		f := string(c.read())
		if !strings.HasSuffix(f, "\x1e") {
			t.Fatalf("WebSocket message %s does not end with 0x1e", abbrev(f))
		}
		frames = append(frames, f)
		got += f
	}
	if got != big+all {
		t.Fatalf("stream mismatch: got %s", abbrev(got))
	}
	batched := false
	for _, f := range frames {
		if strings.Count(f, "\x1e") > 1 {
			batched = true
		}
	}
	// The pump may take the big message alone or with some small ones (the WebSocket writer
	// then still sends the big one alone, it exceeds the 1 MiB batch): at most 3 messages.
	if !batched || len(frames) > 3 {
		t.Errorf("%d WebSocket messages (batched: %v); want the 100 small ones in at most 2", len(frames), batched)
	}
}
