package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// vector returns the unframed bytes of a named service-protocol test vector.
func vector(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../protocol/svcproto/testdata/service-protocol-vectors.json")
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var vs []struct {
		Name  string `json:"name"`
		Bytes string `json:"bytes_base64"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Name == name {
			b, err := base64.StdEncoding.DecodeString(v.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no vector %q", name)
	return nil
}

// fakeApp speaks the service protocol exactly as the .NET SDK does, message by message.
type fakeApp struct {
	t        *testing.T
	ws       *websocket.Conn
	serverID string
	msgs     chan svcproto.Message
	mu       sync.Mutex
}

func dialApp(t *testing.T, ts *servertest.Instance, hub, serverID string) *fakeApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := auth.ParseConnectionString(ts.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience(hub), Claims: auth.ServerClaims(serverID)})
	if err != nil {
		t.Fatal(err)
	}
	u := cs.ServerURL(hub, "7c6e3a2f-0d2b-4e55-9a43-1f5a2e9d8b10")
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	h.Set("X-ASRS-Server-Id", serverID)
	h.Set("Asrs-User-Agent", "Microsoft.Azure.SignalR/1.30.0 (.NET 8.0.0; Linux; X64)")
	h.Set("X-Requested-With", "XMLHttpRequest")
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v (resp %v)", u, err, resp)
	}
	ws.SetReadLimit(-1)
	// The exact handshake bytes of SDK >= 1.26 (7 elements), framed.
	if err := ws.Write(ctx, websocket.MessageBinary, protocol.AppendFrame(nil, vector(t, "HandshakeRequest"))); err != nil {
		t.Fatal(err)
	}
	a := &fakeApp{t: t, ws: ws, serverID: serverID, msgs: make(chan svcproto.Message, 1024)}
	first := make(chan svcproto.Message, 1)
	go a.readLoop(first)
	select {
	case m := <-first:
		hr, ok := m.(svcproto.HandshakeResponse)
		if !ok || hr.ErrorMessage != "" {
			t.Fatalf("first message = %#v, want a successful HandshakeResponse", m)
		}
	case <-ctx.Done():
		t.Fatal("no handshake response")
	}
	t.Cleanup(func() { ws.CloseNow() })
	return a
}

func (a *fakeApp) readLoop(first chan svcproto.Message) {
	r := &svcproto.Reader{}
	gotFirst := false
	for {
		_, b, err := a.ws.Read(context.Background())
		if err != nil {
			close(a.msgs)
			return
		}
		r.Write(b)
		for {
			m, err := r.Next()
			if err != nil {
				break
			}
			if !gotFirst {
				gotFirst = true
				first <- m
				continue
			}
			if p, ok := m.(svcproto.Ping); ok && len(p.Values) == 0 {
				continue // keep-alive
			}
			a.msgs <- m
		}
	}
}

func (a *fakeApp) send(m svcproto.Message) {
	a.t.Helper()
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ws.Write(context.Background(), websocket.MessageBinary, f); err != nil {
		a.t.Fatalf("app write: %v", err)
	}
}

// expect waits for the next message of type T.
func expect[T svcproto.Message](t *testing.T, a *fakeApp) T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-a.msgs:
			if !ok {
				t.Fatalf("app link closed while waiting for %T", *new(T))
			}
			if v, ok := m.(T); ok {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("timed out waiting for %T", zero)
			return zero
		}
	}
}

// rawClient is a SignalR client at the byte level.
type rawClient struct {
	t  *testing.T
	ws *websocket.Conn
	id string
}

func clientToken(t *testing.T, ts *servertest.Instance, hub, user string) string {
	t.Helper()
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	var claims []auth.Claim
	if user != "" {
		claims = []auth.Claim{{Type: auth.ClaimUserID, Value: user}}
	}
	tok, err := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ClientAudience(hub), Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func negotiate(t *testing.T, ts *servertest.Instance, hub, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/client/negotiate?hub="+hub+"&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

func dialClient(t *testing.T, ts *servertest.Instance, hub, user, proto string) *rawClient {
	t.Helper()
	tok := clientToken(t, ts, hub, user)
	st, neg := negotiate(t, ts, hub, tok)
	if st != 200 || neg["connectionToken"] == nil {
		t.Fatalf("negotiate: %d %v", st, neg)
	}
	u := strings.Replace(ts.URL, "http", "ws", 1) + "/client/?hub=" + hub + "&asrs_request_id=x&id=" + url.QueryEscape(neg["connectionToken"].(string))
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("client dial: %v", err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"protocol":"`+proto+`","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, ws: ws, id: neg["connectionId"].(string)}
}

func (c *rawClient) read() []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("client read: %v", err)
	}
	return b
}

func start(t *testing.T) *servertest.Instance {
	return servertest.Start(t, server.Config{})
}

// connect runs the whole connect sequence for one client and returns it with its OpenConnection.
func connect(t *testing.T, ts *servertest.Instance, app *fakeApp, hub, user, proto string) (*rawClient, svcproto.OpenConnection) {
	t.Helper()
	c := dialClient(t, ts, hub, user, proto)
	open := expect[svcproto.OpenConnection](t, app)
	if open.ConnectionID != c.id {
		t.Fatalf("OpenConnection id %q, negotiated %q", open.ConnectionID, c.id)
	}
	hs := expect[svcproto.ConnectionData](t, app)
	if string(hs.Payload) != `{"protocol":"`+proto+`","version":1}`+"\x1e" {
		t.Fatalf("first ConnectionData = %q, want the raw handshake", hs.Payload)
	}
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte("{}\x1e"), Ext: svcproto.Ext{DataMessageType: svcproto.DataHandshake}})
	if got := string(c.read()); got != "{}\x1e" {
		t.Fatalf("client handshake response %q", got)
	}
	return c, open
}

func TestSDKConnectSequence(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "host_0123456789abcdef0123456789abcdef")
	c, open := connect(t, ts, app, "chat", "alice", "json")
	if open.Ext.Protocol != "json" {
		t.Errorf("OpenConnection protocol ext = %q", open.Ext.Protocol)
	}
	if !strings.HasPrefix(open.QueryString, "?hub=chat") || strings.Contains(open.QueryString, "&id=") {
		t.Errorf("query string %q", open.QueryString)
	}
	var uid, nameid bool
	for _, cl := range open.Claims {
		if cl.Type == auth.ClaimUserID && cl.Value == "alice" {
			uid = true
		}
		if cl.Type == "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier" {
			nameid = true
		}
	}
	if !uid {
		t.Errorf("claims %v lack asrs.s.uid", open.Claims)
	}
	_ = nameid
	if open.Headers.Get("Authorization") != nil {
		t.Error("Authorization header forwarded")
	}
	if open.Headers.Get("X-Forwarded-For") == nil {
		t.Error("X-Forwarded-For missing")
	}

	// client -> app, verbatim
	inv := `{"type":1,"invocationId":"0","target":"echo","arguments":["hi"]}` + "\x1e"
	if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(inv)); err != nil {
		t.Fatal(err)
	}
	d := expect[svcproto.ConnectionData](t, app)
	if string(d.Payload) != inv {
		t.Fatalf("app got %q", d.Payload)
	}
	// app -> client, verbatim
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte(`{"type":3,"invocationId":"0","result":"hi"}` + "\x1e")})
	if got := string(c.read()); !strings.Contains(got, `"result":"hi"`) {
		t.Fatalf("client got %q", got)
	}
	// status ping
	app.send(svcproto.Ping{Values: []string{"status", "1"}})
	p := expect[svcproto.Ping](t, app)
	if v, _ := p.Get("status"); v != "1" {
		t.Errorf("status reply %v", p.Values)
	}
	// client leaves -> CloseConnection to the app
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	cc := expect[svcproto.CloseConnection](t, app)
	if cc.ConnectionID != c.id {
		t.Errorf("CloseConnection for %q", cc.ConnectionID)
	}
}

func TestNoAppServer(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{Mode: server.ModeDefault}})
	st, neg := negotiate(t, ts, "lonely", clientToken(t, ts, "lonely", ""))
	if st != 200 || !strings.HasPrefix(neg["error"].(string), "No server available") {
		t.Fatalf("negotiate = %d %v", st, neg)
	}
}

func TestClientEndpointErrors(t *testing.T) {
	t.Parallel()
	ts := start(t)
	for _, tc := range []struct {
		method, path string
		auth         bool
		status       int
		body         string
	}{
		{"GET", "/client", false, 400, "'hub' query parameter is required."},
		{"GET", "/client/?hub=a&hub=b", false, 400, "Only one 'hub'"},
		{"POST", "/client/negotiate?hub=chat", false, 401, "Unauthorized"},
		{"GET", "/client/negotiate?hub=chat", true, 405, "Method not allowed"},
		{"GET", "/api/health", false, 200, ""},
		{"HEAD", "/api/v1/health", false, 200, ""},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		if tc.auth {
			req.Header.Set("Authorization", "Bearer "+clientToken(t, ts, "chat", ""))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}

func TestServerLostClosesClients(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	app.ws.CloseNow()
	got := string(c.read())
	if !strings.Contains(got, `"type":7`) || !strings.Contains(got, "app server") || !strings.Contains(got, `"allowReconnect":true`) {
		t.Fatalf("client got %q, want a reconnectable Close", got)
	}
	_, _, err := c.ws.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure && !errors.Is(err, io.EOF) {
		t.Logf("close: %v", err)
	}
}

func jsonNewDecoder(resp *http.Response) *json.Decoder { return json.NewDecoder(resp.Body) }
