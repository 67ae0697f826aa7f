package appserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

const testKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// waitTimeout bounds every wait in the tests; nothing normally takes more than milliseconds.
const waitTimeout = 10 * time.Second

// fakeService is the service side of the service protocol, just enough to watch the SDK's wire
// behaviour: it accepts /server/ sockets, records the upgrade request (including the raw bytes),
// answers the handshake and hands every socket to the test.
type fakeService struct {
	t   *testing.T
	srv *httptest.Server

	mu            sync.Mutex
	handshakeErrs []string // errors for the next handshakes, in order ("" = success)
	raw           map[string][]byte

	conns chan *fakeConn
}

// fakeConn is one accepted server connection.
type fakeConn struct {
	t         *testing.T
	req       *http.Request
	raw       []byte // raw bytes of the upgrade request
	ws        *websocket.Conn
	firstType websocket.MessageType
	firstMsg  []byte // first WebSocket message (the handshake request, framed)
	handshake svcproto.HandshakeRequest
	msgs      chan svcproto.Message
	closed    chan struct{}
	closeErr  error

	lastMu sync.Mutex
	last   []svcproto.Message
}

// recordingListener keeps the first bytes of every accepted connection, keyed by remote address.
type recordingListener struct {
	net.Listener
	svc *fakeService
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, svc: l.svc}, nil
}

type recordingConn struct {
	net.Conn
	svc  *fakeService
	done bool
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.done {
		c.svc.mu.Lock()
		key := c.Conn.RemoteAddr().String()
		c.svc.raw[key] = append(c.svc.raw[key], p[:n]...)
		if bytes.Contains(c.svc.raw[key], []byte("\r\n\r\n")) {
			c.done = true
		}
		c.svc.mu.Unlock()
	}
	return n, err
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	f := &fakeService{t: t, conns: make(chan *fakeConn, 64), raw: make(map[string][]byte)}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	f.srv.Listener = recordingListener{Listener: f.srv.Listener, svc: f}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// connectionString points the SDK at the fake service.
func (f *fakeService) connectionString() string {
	return "Endpoint=" + f.srv.URL + ";AccessKey=" + testKey + ";Version=1.0;"
}

func (f *fakeService) rejectNext(errs ...string) {
	f.mu.Lock()
	f.handshakeErrs = append(f.handshakeErrs, errs...)
	f.mu.Unlock()
}

func (f *fakeService) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/server/") {
		http.NotFound(w, r)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	f.mu.Lock()
	raw := append([]byte(nil), f.raw[r.RemoteAddr]...)
	f.mu.Unlock()
	fc := &fakeConn{t: f.t, req: r, raw: raw, ws: ws, msgs: make(chan svcproto.Message, 1024), closed: make(chan struct{})}
	ctx := context.Background()
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return
	}
	fc.firstType, fc.firstMsg = typ, data
	var rd svcproto.Reader
	rd.Write(data)
	m, err := rd.Next()
	if err != nil {
		_ = ws.Close(websocket.StatusProtocolError, "bad handshake")
		return
	}
	hs, ok := m.(svcproto.HandshakeRequest)
	if !ok {
		_ = ws.Close(websocket.StatusProtocolError, "not a handshake")
		return
	}
	fc.handshake = hs
	f.mu.Lock()
	errMsg := ""
	if len(f.handshakeErrs) > 0 {
		errMsg, f.handshakeErrs = f.handshakeErrs[0], f.handshakeErrs[1:]
	}
	f.mu.Unlock()
	cid := r.URL.Query().Get("cid")
	fc.send(svcproto.HandshakeResponse{ErrorMessage: errMsg, ConnectionID: cid})
	f.conns <- fc
	defer close(fc.closed)
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			fc.closeErr = err
			return
		}
		rd.Write(data)
		for {
			m, err := rd.Next()
			if errors.Is(err, protocol.ErrIncomplete) {
				break
			}
			if err != nil {
				f.t.Errorf("fake service: bad message from SDK: %v", err)
				continue
			}
			fc.msgs <- m
		}
	}
}

// accept waits for the next socket whose handshake completed.
func (f *fakeService) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no server connection arrived")
		return nil
	}
}

func (c *fakeConn) send(m svcproto.Message) {
	c.t.Helper()
	buf, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		c.t.Errorf("fake service: encode %T: %v", m, err)
		return
	}
	_ = c.ws.Write(context.Background(), websocket.MessageBinary, buf)
}

// next returns the next message that is not a keep-alive or status ping.
func (c *fakeConn) next(t *testing.T) svcproto.Message {
	t.Helper()
	return c.expect(t, func(m svcproto.Message) bool {
		if p, ok := m.(svcproto.Ping); ok {
			if _, ka := p.Get("#clientInHub"); ka {
				return false
			}
			if _, st := p.Get("status"); st {
				return false
			}
		}
		return true
	})
}

// expect returns the first message satisfying pred, dropping the others.
func (c *fakeConn) expect(t *testing.T, pred func(svcproto.Message) bool) svcproto.Message {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case m := <-c.msgs:
			if pred(m) {
				return m
			}
		case <-deadline:
			t.Fatal("expected message did not arrive")
			return nil
		}
	}
}

// waitClosed waits until the SDK closed the socket.
func (c *fakeConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(waitTimeout):
		t.Fatal("socket was not closed")
	}
}

// testOptions are Options wired to the fake service with fast timers.
func testOptions(f *fakeService) Options {
	return Options{
		ConnectionString: f.connectionString(),
		ServerID:         "testhost_0123456789abcdef0123456789abcdef",
		ConnectionCount:  1,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		Timing: Timing{
			ReconnectBase: 10 * time.Millisecond,
		},
	}
}

// startServer maps hubs, starts the server and waits for its sockets; Close runs at cleanup.
func startServer(t *testing.T, opts Options, hubs map[string]*Hub) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for name, h := range hubs {
		s.MapHub(name, h)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func waitReady(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// poll waits until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openClient announces a client and performs its hub handshake; it returns the handshake response.
func (c *fakeConn) openClient(t *testing.T, id, protocolName string, claims []svcproto.Claim, headers svcproto.Headers, query string) svcproto.ConnectionData {
	t.Helper()
	c.send(svcproto.OpenConnection{ConnectionID: id, Claims: claims, Headers: headers, QueryString: query, Ext: svcproto.Ext{Protocol: protocolName}})
	c.send(svcproto.ConnectionData{ConnectionID: id, Payload: []byte(fmt.Sprintf("{\"protocol\":%q,\"version\":1}\x1e", protocolName))})
	return c.expectData(t, id)
}

// expectData waits for the next ConnectionData for connection id.
func (c *fakeConn) expectData(t *testing.T, id string) svcproto.ConnectionData {
	t.Helper()
	m := c.expect(t, func(m svcproto.Message) bool {
		d, ok := m.(svcproto.ConnectionData)
		return ok && d.ConnectionID == id
	})
	return m.(svcproto.ConnectionData)
}
