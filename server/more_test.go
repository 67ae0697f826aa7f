package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// metricValue reads one counter or gauge sample from the server's registry.
func metricValue(t *testing.T, ts *servertest.Instance, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := ts.Server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func TestLegacyGroupMessages(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "erin", "json")
	app.send(svcproto.JoinGroup{ConnectionID: c.id, Group: "old"})
	app.send(svcproto.GroupBroadcastData{Group: "old", Payloads: payloads("legacy-join")})
	mustGet(t, c, "legacy-join")
	app.send(svcproto.LeaveGroup{ConnectionID: c.id, Group: "old"})
	app.send(svcproto.UserJoinGroup{UserID: "erin", Group: "uold"})
	app.send(svcproto.GroupBroadcastData{Group: "old", Payloads: payloads("after-leave")})
	app.send(svcproto.GroupBroadcastData{Group: "uold", Payloads: payloads("legacy-user")})
	mustGet(t, c, "legacy-user") // proves after-leave was not delivered: order is kept per socket
	app.send(svcproto.UserLeaveGroup{UserID: "erin", Group: "uold"})
	app.send(svcproto.GroupBroadcastData{Group: "uold", Payloads: payloads("gone")})
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte("fence\x1e")})
	if got := string(c.read()); got != "fence\x1e" {
		t.Fatalf("got %q", got)
	}
}

func TestHandshakeTimeoutFromToken(t *testing.T) {
	t.Parallel()
	ts := start(t)
	dialApp(t, ts, "chat", "s1")
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	tok, _ := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ClientAudience("chat"),
		Claims: []auth.Claim{{Type: auth.ClaimHandshakeTimeout, Value: "1"}}})
	_, neg := negotiate(t, ts, "chat", tok)
	u := strings.Replace(ts.URL, "http", "ws", 1) + "/client/?hub=chat&id=" + url.QueryEscape(neg["connectionToken"].(string)) + "&access_token=" + tok
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	ws, _, err := websocket.Dial(ctx, u, nil) // token in the query, as browsers send it
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	if err != nil || string(b) != `{"error":"Handshake was canceled."}`+"\x1e" {
		t.Fatalf("got %q %v", b, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("handshake timeout took %v, want about 1s", el)
	}
}

func TestNegotiateVersions(t *testing.T) {
	t.Parallel()
	ts := start(t)
	dialApp(t, ts, "chat", "s1")
	tok := clientToken(t, ts, "chat", "")
	post := func(q string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/client/negotiate?hub=chat"+q, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := jsonDecode(resp, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	v0 := post("")
	if v0["negotiateVersion"] != float64(0) || v0["connectionToken"] != nil || v0["connectionId"] == "" {
		t.Fatalf("v0 = %v", v0)
	}
	v1 := post("&negotiateVersion=1")
	if v1["negotiateVersion"] != float64(1) || v1["connectionToken"] == v1["connectionId"] || v1["connectionToken"] == nil {
		t.Fatalf("v1 = %v", v1)
	}
	tr := v1["availableTransports"].([]any)[0].(map[string]any)
	if tr["transport"] != "WebSockets" {
		t.Fatalf("transports %v", v1["availableTransports"])
	}
	if v := post("&negotiateVersion=7"); v["negotiateVersion"] != float64(1) {
		t.Fatalf("v7 = %v", v)
	}
	if v := post("&negotiateVersion=x"); !strings.Contains(v["error"].(string), "invalid protocol version") {
		t.Fatalf("vx = %v", v)
	}
	// A v0 connection connects with its connectionId; an unknown id is 404.
	u := strings.Replace(ts.URL, "http", "ws", 1) + "/client/?hub=chat&id="
	h := http.Header{"Authorization": {"Bearer " + tok}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u+v0["connectionId"].(string), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("v0 connect: %v", err)
	}
	ws.CloseNow()
	_, resp, err := websocket.Dial(ctx, u+"unknown", &websocket.DialOptions{HTTPHeader: h})
	if err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown id: %v %v", resp, err)
	}
	// A negotiated id is single-use: 409 while the first socket is still attached, 404 after.
	_, resp, err = websocket.Dial(ctx, u+v0["connectionId"].(string), &websocket.DialOptions{HTTPHeader: h})
	if err == nil || (resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusConflict) {
		t.Fatalf("reused id: %v %v", resp, err)
	}
}

func TestServerEndpointAuth(t *testing.T) {
	t.Parallel()
	ts := start(t)
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	clientTok, _ := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ClientAudience("chat")})
	otherHub, _ := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience("other")})
	wrongKey, _ := auth.IssueToken("not-the-key", auth.IssueOptions{Audience: cs.ServerAudience("chat")})
	for name, tok := range map[string]string{"client token": clientTok, "other hub": otherHub, "wrong key": wrongKey, "none": ""} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h := http.Header{}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
		_, resp, err := websocket.Dial(ctx, cs.ServerURL("chat", "cid1"), &websocket.DialOptions{HTTPHeader: h})
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %v %v", name, resp, err)
		}
	}
}

func TestServerHandshakeVersionMismatch(t *testing.T) {
	t.Parallel()
	ts := start(t)
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	tok, _ := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience("chat")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, cs.ServerURL("chat", "c1"), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	f, _ := svcproto.AppendFrame(nil, svcproto.HandshakeRequest{Version: 2})
	_ = ws.Write(ctx, websocket.MessageBinary, f)
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &svcproto.Reader{}
	r.Write(b)
	m, err := r.Next()
	if hr, ok := m.(svcproto.HandshakeResponse); err != nil || !ok || hr.ErrorMessage != "Version mismatch." {
		t.Fatalf("got %#v %v", m, err)
	}
}

func TestWeakSocketCarriesNoClients(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{Mode: server.ModeDefault}})
	cs, _ := auth.ParseConnectionString(ts.ConnectionString())
	tok, _ := auth.IssueToken(ts.Key, auth.IssueOptions{Audience: cs.ServerAudience("chat")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, cs.ServerURL("chat", "weak1"), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	f, _ := svcproto.AppendFrame(nil, svcproto.HandshakeRequest{Version: 1, ConnectionType: svcproto.ConnWeak})
	_ = ws.Write(ctx, websocket.MessageBinary, f)
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	st, neg := negotiate(t, ts, "chat", clientToken(t, ts, "chat", ""))
	if st != 200 || neg["error"] == nil {
		t.Fatalf("a weak socket must not count as an app server: %d %v", st, neg)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	return jsonNewDecoder(resp).Decode(v)
}
