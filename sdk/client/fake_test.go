package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
)

// waitLimit bounds every wait in the tests; reaching it is a failure, never the expected path.
const waitLimit = 10 * time.Second

// recordedRequest is what the fake server saw of one HTTP request.
type recordedRequest struct {
	Method string
	URL    *url.URL
	Header http.Header
}

// fakeServer is a minimal SignalR endpoint: negotiate on POST …/negotiate, a WebSocket with the
// hub handshake on everything else. Tests drive accepted connections through serverConn.
type fakeServer struct {
	t   testing.TB
	srv *httptest.Server

	// negotiate answers a negotiate request; nil = a v1 connection response.
	negotiate func(w http.ResponseWriter, r *http.Request, n int)
	// connect, when set, may answer a non-negotiate request itself (returns true if it did).
	connect func(w http.ResponseWriter, r *http.Request) bool
	// handshakeError is sent as the handshake error when non-empty.
	handshakeError string
	// noHandshakeReply makes the server never answer the handshake.
	noHandshakeReply bool

	mu         sync.Mutex
	negotiates []recordedRequest
	connects   []recordedRequest

	conns chan *serverConn
}

func newFakeServer(t testing.TB, configure func(fs *fakeServer)) *fakeServer {
	t.Helper()
	fs := &fakeServer{t: t, conns: make(chan *serverConn, 16)}
	if configure != nil {
		configure(fs)
	}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serveHTTP))
	t.Cleanup(fs.srv.Close)
	return fs
}

func record(r *http.Request) recordedRequest {
	u := *r.URL
	return recordedRequest{Method: r.Method, URL: &u, Header: r.Header.Clone()}
}

func (fs *fakeServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/negotiate") {
		fs.mu.Lock()
		fs.negotiates = append(fs.negotiates, record(r))
		n := len(fs.negotiates)
		fs.mu.Unlock()
		if r.Method != http.MethodPost {
			http.Error(w, "negotiate needs POST", http.StatusMethodNotAllowed)
			return
		}
		if fs.negotiate != nil {
			fs.negotiate(w, r, n)
			return
		}
		writeJSON(w, connectionResponse(n, 1))
		return
	}
	fs.mu.Lock()
	fs.connects = append(fs.connects, record(r))
	fs.mu.Unlock()
	if fs.connect != nil && fs.connect(w, r) {
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	sc := &serverConn{t: fs.t, ws: ws, req: record(r)}
	fs.t.Cleanup(func() { _ = ws.CloseNow() })
	if !fs.handshake(sc) {
		return
	}
	sc.frames = make(chan frame, 64)
	fs.conns <- sc
	// Keep reading like a real server, so close handshakes complete promptly.
	defer close(sc.frames)
	for {
		typ, b, err := ws.Read(context.Background())
		if err != nil {
			sc.readErr = err
			return
		}
		sc.frames <- frame{typ, b}
	}
}

type frame struct {
	typ websocket.MessageType
	b   []byte
}

// handshake reads the client's handshake request and answers it.
func (fs *fakeServer) handshake(sc *serverConn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	typ, b, err := sc.ws.Read(ctx)
	if err != nil {
		fs.t.Errorf("server: read handshake: %v", err)
		return false
	}
	sc.handshakeType, sc.handshake = typ, b
	msg, _, rest, err := protocol.CutText(b, 0)
	if err != nil || len(rest) != 0 {
		fs.t.Errorf("server: handshake frame %q: %v (rest %q)", b, err, rest)
		return false
	}
	req, err := hubproto.ParseHandshakeRequest(msg)
	if err != nil {
		fs.t.Errorf("server: parse handshake %q: %v", msg, err)
		return false
	}
	codec, ok := hubproto.CodecFor(req.Protocol)
	if !ok {
		fs.t.Errorf("server: unknown protocol %q", req.Protocol)
		return false
	}
	sc.codec = codec
	sc.msgType = websocket.MessageText
	if codec.Format() == protocol.Binary {
		sc.msgType = websocket.MessageBinary
	}
	if fs.noHandshakeReply {
		// Hold the connection open until the client gives up.
		_, _, _ = sc.ws.Read(ctx)
		return false
	}
	resp := hubproto.AppendHandshakeResponse(nil, fs.handshakeError)
	if err := sc.ws.Write(ctx, sc.msgType, resp); err != nil {
		fs.t.Errorf("server: write handshake response: %v", err)
		return false
	}
	if fs.handshakeError != "" {
		_ = sc.ws.Close(websocket.StatusNormalClosure, "")
		return false
	}
	return true
}

// accept returns the next connection that completed the handshake.
func (fs *fakeServer) accept(t *testing.T) *serverConn {
	t.Helper()
	select {
	case sc := <-fs.conns:
		return sc
	case <-time.After(waitLimit):
		t.Fatal("server: no connection")
		return nil
	}
}

func (fs *fakeServer) recorded() (negotiates, connects []recordedRequest) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]recordedRequest(nil), fs.negotiates...), append([]recordedRequest(nil), fs.connects...)
}

func connectionResponse(n, version int) map[string]any {
	resp := map[string]any{
		"negotiateVersion": version,
		"connectionId":     "cid-" + strconv.Itoa(n),
		"availableTransports": []map[string]any{
			{"transport": "WebSockets", "transferFormats": []string{"Text", "Binary"}},
			{"transport": "ServerSentEvents", "transferFormats": []string{"Text"}},
		},
	}
	if version > 0 {
		resp["connectionToken"] = "tok-" + strconv.Itoa(n)
	}
	return resp
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// serverConn is the server side of one hub connection.
type serverConn struct {
	t             testing.TB
	ws            *websocket.Conn
	req           recordedRequest
	codec         hubproto.Codec
	msgType       websocket.MessageType
	handshakeType websocket.MessageType
	handshake     []byte
	buf           []byte

	frames  chan frame // received WebSocket messages; closed when reading fails
	readErr error      // why reading failed; read after frames is closed
}

// readFrame reads one raw WebSocket message.
func (sc *serverConn) readFrame(t *testing.T) (websocket.MessageType, []byte) {
	t.Helper()
	select {
	case f, ok := <-sc.frames:
		if !ok {
			t.Fatalf("server: read: %v", sc.readErr)
		}
		return f.typ, f.b
	case <-time.After(waitLimit):
		t.Fatal("server: read: timeout")
		return 0, nil
	}
}

// read returns the next hub message from the client.
func (sc *serverConn) read(t *testing.T) hubproto.Message {
	t.Helper()
	for {
		if len(sc.buf) > 0 {
			msg, _, rest, err := sc.codec.Cut(sc.buf, 0)
			if err == nil {
				sc.buf = rest
				m, err := sc.codec.Decode(msg)
				if err != nil {
					t.Fatalf("server: decode %q: %v", msg, err)
				}
				return m
			}
			if !errors.Is(err, protocol.ErrIncomplete) {
				t.Fatalf("server: cut: %v", err)
			}
		}
		typ, b := sc.readFrame(t)
		if typ != sc.msgType {
			t.Errorf("server: frame type %v, want %v", typ, sc.msgType)
		}
		sc.buf = append(sc.buf, b...)
	}
}

// readNonPing returns the next hub message that is not a Ping.
func (sc *serverConn) readNonPing(t *testing.T) hubproto.Message {
	t.Helper()
	for {
		if m := sc.read(t); m.Type() != hubproto.TypePing {
			return m
		}
	}
}

// readClosed reads until the client closes the WebSocket and returns the close status.
func (sc *serverConn) readClosed(t *testing.T) websocket.StatusCode {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case _, ok := <-sc.frames:
			if !ok {
				return websocket.CloseStatus(sc.readErr)
			}
		case <-timeout:
			t.Fatal("server: client did not close")
		}
	}
}

func (sc *serverConn) encode(t *testing.T, msgs ...hubproto.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = sc.codec.Append(b, m); err != nil {
			t.Fatalf("server: encode %T: %v", m, err)
		}
	}
	return b
}

// write sends msgs in one WebSocket message.
func (sc *serverConn) write(t *testing.T, msgs ...hubproto.Message) {
	t.Helper()
	sc.writeFrame(t, sc.encode(t, msgs...))
}

func (sc *serverConn) writeFrame(t *testing.T, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := sc.ws.Write(ctx, sc.msgType, b); err != nil {
		t.Fatalf("server: write: %v", err)
	}
}

func (sc *serverConn) marshal(t *testing.T, v any) hubproto.Raw {
	t.Helper()
	r, err := sc.codec.Marshal(v)
	if err != nil {
		t.Fatalf("server: marshal: %v", err)
	}
	return r
}

// echo answers every Invocation with a Completion whose result is the first argument, and
// Invocations of "fail" with an error, until the client goes away.
func (sc *serverConn) echo() {
	ctx := context.Background()
	var buf []byte
	for f := range sc.frames {
		buf = append(buf, f.b...)
		for {
			msg, _, rest, err := sc.codec.Cut(buf, 0)
			if err != nil {
				break
			}
			buf = rest
			m, err := sc.codec.Decode(msg)
			if err != nil {
				sc.t.Errorf("server: decode: %v", err)
				return
			}
			inv, ok := m.(hubproto.Invocation)
			if !ok || inv.InvocationID == "" {
				continue
			}
			comp := hubproto.Completion{InvocationID: inv.InvocationID}
			switch {
			case inv.Target == "fail":
				comp.Error = "An unexpected error occurred invoking 'fail' on the server."
			case len(inv.Arguments) > 0:
				comp.HasResult, comp.Result = true, inv.Arguments[0]
			}
			out, err := sc.codec.Append(nil, comp)
			if err != nil {
				sc.t.Errorf("server: encode: %v", err)
				return
			}
			if err := sc.ws.Write(ctx, sc.msgType, out); err != nil {
				return
			}
		}
	}
}

// dial connects a client with test-friendly defaults and closes it at cleanup.
func dial(t *testing.T, fs *fakeServer, o Options) *Conn {
	t.Helper()
	if o.URL == "" {
		o.URL = fs.srv.URL + "/chat"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = fs.srv.Client()
	}
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = -1 // tests that want pings ask for them
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := Dial(ctx, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func waitDone(t *testing.T, c *Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("connection did not end")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

var protocols = []string{hubproto.ProtocolJSON, hubproto.ProtocolMessagePack}
