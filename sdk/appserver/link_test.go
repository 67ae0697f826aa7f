package appserver

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestServerConnectionWire checks what the SDK sends when it connects: 5 sockets per hub, the
// upgrade URL and headers, the server token and the 7-element handshake bytes.
func TestServerConnectionWire(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	opts.ConnectionCount = 0 // default: 5
	s := startServer(t, opts, map[string]*Hub{"Chat": {}})

	cids := map[string]bool{}
	for range 5 {
		c := f.accept(t)
		r := c.req
		if r.URL.Path != "/server/" {
			t.Errorf("path = %q, want /server/", r.URL.Path)
		}
		q := r.URL.Query()
		if got := q.Get("hub"); got != "chat" {
			t.Errorf("hub = %q, want chat", got)
		}
		if !strings.HasPrefix(r.URL.RawQuery, "hub=chat&cid=") {
			t.Errorf("query = %q, want hub=chat&cid=...", r.URL.RawQuery)
		}
		cid := q.Get("cid")
		if !uuidRE.MatchString(cid) {
			t.Errorf("cid %q is not a lower-case v4 uuid", cid)
		}
		if cids[cid] {
			t.Errorf("cid %q reused", cid)
		}
		cids[cid] = true

		// Header spelling as the SDK writes it.
		for _, want := range []string{
			"\r\nX-ASRS-Server-Id: " + opts.ServerID + "\r\n",
			"\r\nAsrs-User-Agent: Microsoft.Azure.SignalR/" + SDKVersion + " (signalrd-go; ",
			"\r\nX-Requested-With: XMLHttpRequest\r\n",
			"\r\nAuthorization: Bearer ",
		} {
			if !bytes.Contains(c.raw, []byte(want)) {
				t.Errorf("upgrade request lacks %q:\n%s", want, c.raw)
			}
		}
		if r.Header.Get("Sec-WebSocket-Protocol") != "" {
			t.Errorf("subprotocol requested: %q", r.Header.Get("Sec-WebSocket-Protocol"))
		}
		if r.Header.Get("Sec-WebSocket-Extensions") != "" {
			t.Errorf("extensions requested: %q", r.Header.Get("Sec-WebSocket-Extensions"))
		}

		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		v := auth.Verifier{Keys: []string{testKey}, StrictAudience: true}
		tok, err := v.Verify(token, auth.KindServer, "chat")
		if err != nil {
			t.Fatalf("server token: %v", err)
		}
		if want := "http://127.0.0.1/server/?hub=chat"; tok.Audience != want {
			t.Errorf("aud = %q, want %q", tok.Audience, want)
		}
		if id, _ := tok.Claim("nameid"); id != opts.ServerID {
			t.Errorf("nameid = %q, want %q", id, opts.ServerID)
		}
		if iss, _ := tok.Claim("iss"); iss != "azure-signalr" {
			t.Errorf("iss = %q", iss)
		}
		if d := tok.Expires.Sub(tok.NotBefore); d != time.Hour {
			t.Errorf("lifetime = %v, want 1h", d)
		}

		if c.firstType != websocket.MessageBinary {
			t.Errorf("handshake frame type = %v, want binary", c.firstType)
		}
		// [1, version 1, connType 0, "", migration 0, {}, false], framed.
		want := []byte{0x08, 0x97, 0x01, 0x01, 0x00, 0xa0, 0x00, 0x80, 0xc2}
		if !bytes.Equal(c.firstMsg, want) {
			t.Errorf("handshake bytes = % x, want % x", c.firstMsg, want)
		}
	}
	waitReady(t, s)
	if !s.Hub("chat").Connected() {
		t.Error("hub not connected after Ready")
	}
}

func TestHandshakeOptions(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	opts.AllowStatefulReconnects = true
	opts.GracefulShutdown = ShutdownMigrateClients
	opts.Application = "App"
	startServer(t, opts, map[string]*Hub{"Chat": {}})
	c := f.accept(t)
	want := []byte{0x08, 0x97, 0x01, 0x01, 0x00, 0xa0, 0x01, 0x80, 0xc3}
	if !bytes.Equal(c.firstMsg, want) {
		t.Errorf("handshake bytes = % x, want % x", c.firstMsg, want)
	}
	if got := c.req.URL.Query().Get("hub"); got != "app_chat" {
		t.Errorf("hub = %q, want app_chat", got)
	}
}

// TestKeepAliveStatusEcho checks the pings the SDK sends and answers.
func TestKeepAliveStatusEcho(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	opts.Timing.KeepAlive = 30 * time.Millisecond
	opts.Timing.StatusPing = 20 * time.Millisecond
	s := startServer(t, opts, map[string]*Hub{"chat": {}})
	c := f.accept(t)
	waitReady(t, s)

	// Status ping without any prompting.
	c.expect(t, func(m svcproto.Message) bool {
		p, ok := m.(svcproto.Ping)
		return ok && slices.Equal(p.Values, []string{"status", "1"})
	})

	// Keep-alive only when data arrives and the last ping is old enough.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				c.send(svcproto.Ping{})
			}
		}
	}()
	c.expect(t, func(m svcproto.Message) bool {
		p, ok := m.(svcproto.Ping)
		return ok && slices.Equal(p.Values, []string{"#clientInHub", "0", "#client", "0"})
	})

	// Echo comes back unchanged.
	c.send(svcproto.Ping{Values: []string{"echo", "1700000000000"}})
	c.expect(t, func(m svcproto.Message) bool {
		p, ok := m.(svcproto.Ping)
		return ok && slices.Equal(p.Values, []string{"echo", "1700000000000"})
	})
}

// TestReconnect checks that a dropped socket is replaced by a new one with a new cid, and that
// handshake rejections are retried.
func TestReconnect(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	f.rejectNext("Version mismatch.", "Version mismatch.")
	s := startServer(t, testOptions(f), map[string]*Hub{"chat": {}})

	// Two rejected handshakes, then a good one.
	for range 2 {
		c := f.accept(t)
		c.waitClosed(t)
	}
	c1 := f.accept(t)
	waitReady(t, s)

	// The service drops the socket.
	_ = c1.ws.Close(websocket.StatusGoingAway, "restart")
	c2 := f.accept(t)
	if c1.req.URL.Query().Get("cid") == c2.req.URL.Query().Get("cid") {
		t.Error("reconnect reused the cid")
	}
	waitReady(t, s)
}

// TestServiceTimeout checks that a silent service socket is closed and replaced.
func TestServiceTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	opts.Timing.KeepAlive = 10 * time.Millisecond
	opts.Timing.ServiceTimeout = 80 * time.Millisecond
	opts.Timing.StatusPing = time.Hour
	startServer(t, opts, map[string]*Hub{"chat": {}})
	c1 := f.accept(t)
	c1.waitClosed(t)
	var ce websocket.CloseError
	if errors.As(c1.closeErr, &ce) && ce.Code != websocket.StatusNormalClosure {
		t.Errorf("close code = %v, want 1000", ce.Code)
	}
	f.accept(t)
}

// TestServiceErrorStopsWrites checks that a ServiceError makes the socket unusable for writes.
func TestServiceErrorStopsWrites(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	s := startServer(t, testOptions(f), map[string]*Hub{"chat": {}})
	c := f.accept(t)
	waitReady(t, s)
	hc := s.Hub("chat")
	c.send(svcproto.ServiceError{ErrorMessage: "Maximum message count limit reached: 100000"})
	poll(t, "socket marked unusable", func() bool { return !hc.Connected() })
	err := hc.Clients.All().Send(context.Background(), "m")
	if !errors.Is(err, ErrNotConnected) {
		t.Errorf("Send after ServiceError = %v, want ErrNotConnected", err)
	}
}

func TestCloseSendsNormalClosure(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	s := startServer(t, testOptions(f), map[string]*Hub{"chat": {}})
	c := f.accept(t)
	waitReady(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.waitClosed(t)
	if code := websocket.CloseStatus(c.closeErr); code != websocket.StatusNormalClosure {
		t.Errorf("close status = %v (%v), want 1000", code, c.closeErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Ready(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ready after Close = %v, want ErrClosed", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	opts.GracefulShutdown = ShutdownWaitForClientsClose
	s := startServer(t, opts, map[string]*Hub{"chat": {}})
	c := f.accept(t)
	waitReady(t, s)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	c.expect(t, func(m svcproto.Message) bool {
		p, ok := m.(svcproto.Ping)
		return ok && slices.Equal(p.Values, []string{"shutdown", "fin:2"})
	})
	c.send(svcproto.Ping{Values: []string{"shutdown", "finack"}})
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.waitClosed(t)
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	base := time.Second
	for attempt, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		d := retryDelay(base, attempt)
		if d < want*base || d >= want*base+base {
			t.Errorf("attempt %d: delay %v, want [%v, %v)", attempt, d, want*base, want*base+base)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"valid", Options{ConnectionString: "Endpoint=http://localhost:8080;AccessKey=k;Version=1.0;"}, true},
		{"missing", Options{}, false},
		{"entra", Options{ConnectionString: "Endpoint=http://localhost;AuthType=azure"}, false},
		{"algorithm", Options{ConnectionString: "Endpoint=http://localhost;AccessKey=k", Algorithm: "RS256"}, false},
		{"protocol", Options{ConnectionString: "Endpoint=http://localhost;AccessKey=k", Protocols: []string{"xml"}}, false},
		{"count", Options{ConnectionString: "Endpoint=http://localhost;AccessKey=k", ConnectionCount: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.opts.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestDefaultServerID(t *testing.T) {
	t.Parallel()
	id := defaultServerID()
	if !regexp.MustCompile(`^[^._]+_[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("server id %q is not <host>_<32 hex>", id)
	}
}
