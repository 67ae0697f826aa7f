package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

func payloads(tag string) svcproto.Payloads {
	return svcproto.Payloads{
		{Protocol: "json", Data: []byte(`{"type":1,"target":"m","arguments":["` + tag + `"]}` + "\x1e")},
		{Protocol: "messagepack", Data: []byte("\x05mp-" + tag)},
	}
}

func mustGet(t *testing.T, c *rawClient, tag string) {
	t.Helper()
	if got := string(c.read()); !strings.Contains(got, tag) {
		t.Fatalf("client %s got %q, want %q", c.id, got, tag)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	a1, _ := connect(t, ts, app, "chat", "alice", "json")
	a2, _ := connect(t, ts, app, "chat", "alice", "json")
	b, _ := connect(t, ts, app, "chat", "bob", "messagepack")

	// Broadcast with an exclusion; the MessagePack client gets the MessagePack payload.
	app.send(svcproto.BroadcastData{ExcludedConnections: []string{a2.id}, Payloads: payloads("all")})
	mustGet(t, a1, "all")
	mustGet(t, b, "mp-all")
	// User send reaches both of alice's connections; MultiUser reaches bob too.
	app.send(svcproto.UserData{UserID: "alice", Payloads: payloads("user")})
	mustGet(t, a1, "user")
	mustGet(t, a2, "user") // also proves a2 missed the excluded broadcast: first frame is "user"
	app.send(svcproto.MultiUserData{UserIDs: []string{"alice", "bob"}, Payloads: payloads("users")})
	mustGet(t, a1, "users")
	mustGet(t, a2, "users")
	mustGet(t, b, "mp-users")
	// Connection sends.
	app.send(svcproto.MultiConnectionData{ConnectionIDs: []string{b.id, a2.id}, Payloads: payloads("conns")})
	mustGet(t, b, "mp-conns")
	mustGet(t, a2, "conns")

	// Groups with acks.
	app.send(svcproto.JoinGroupWithAck{ConnectionID: a1.id, Group: "g", AckID: 1})
	if ack := expect[svcproto.Ack](t, app); ack.AckID != 1 || ack.Status != svcproto.AckOK {
		t.Fatalf("join ack %+v", ack)
	}
	app.send(svcproto.JoinGroupWithAck{ConnectionID: "nope", Group: "g", AckID: 2})
	if ack := expect[svcproto.Ack](t, app); ack.AckID != 2 || ack.Status != svcproto.AckNotFound {
		t.Fatalf("join unknown ack %+v", ack)
	}
	app.send(svcproto.JoinGroupWithAck{ConnectionID: b.id, Group: "g", AckID: 3})
	expect[svcproto.Ack](t, app)
	app.send(svcproto.GroupBroadcastData{Group: "g", ExcludedConnections: []string{b.id}, Payloads: payloads("grp")})
	mustGet(t, a1, "grp")
	app.send(svcproto.GroupBroadcastData{Group: "g", ExcludedUsers: []string{"alice"}, Payloads: payloads("grp2")})
	mustGet(t, b, "mp-grp2")
	app.send(svcproto.MultiGroupBroadcastData{Groups: []string{"g", "g"}, Payloads: payloads("mg")})
	mustGet(t, a1, "mg")
	mustGet(t, b, "mp-mg")
	app.send(svcproto.LeaveGroupWithAck{ConnectionID: a1.id, Group: "g", AckID: 4})
	expect[svcproto.Ack](t, app)
	app.send(svcproto.CheckGroupExistenceWithAck{Group: "g", AckID: 5})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckOK {
		t.Fatalf("group exists ack %+v", ack)
	}
	// Leave with nil group = every group.
	app.send(svcproto.LeaveGroupWithAck{ConnectionID: b.id, AckID: 6})
	expect[svcproto.Ack](t, app)
	app.send(svcproto.CheckGroupExistenceWithAck{Group: "g", AckID: 7})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckNotFound {
		t.Fatalf("group gone ack %+v", ack)
	}

	// User groups with TTL apply to current and future connections.
	app.send(svcproto.UserJoinGroupWithAck{UserID: "alice", Group: "ug", AckID: 8, Ext: svcproto.Ext{TTL: 60, HasTTL: true}})
	expect[svcproto.Ack](t, app)
	a3, _ := connect(t, ts, app, "chat", "alice", "json")
	app.send(svcproto.GroupBroadcastData{Group: "ug", Payloads: payloads("ug")})
	mustGet(t, a1, "ug")
	mustGet(t, a2, "ug")
	mustGet(t, a3, "ug")
	app.send(svcproto.CheckUserInGroupWithAck{UserID: "alice", Group: "ug", AckID: 9})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckOK {
		t.Fatalf("user in group ack %+v", ack)
	}
	app.send(svcproto.UserLeaveGroupWithAck{UserID: "alice", Group: "ug", AckID: 10})
	expect[svcproto.Ack](t, app)
	app.send(svcproto.CheckUserInGroupWithAck{UserID: "alice", Group: "ug", AckID: 11})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckNotFound {
		t.Fatalf("user left group ack %+v", ack)
	}

	// Existence checks.
	app.send(svcproto.CheckConnectionExistenceWithAck{ConnectionID: b.id, AckID: 12})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckOK {
		t.Fatal("connection should exist")
	}
	app.send(svcproto.CheckUserExistenceWithAck{UserID: "carol", AckID: 13})
	if ack := expect[svcproto.Ack](t, app); ack.Status != svcproto.AckNotFound {
		t.Fatal("carol should not exist")
	}

	// Close user connections except one: a Close frame, then CloseConnection to the app.
	app.send(svcproto.CloseUserConnectionsWithAck{UserID: "alice", Reason: "bye", AckID: 14, ExcludedConnections: []string{a3.id}})
	expect[svcproto.Ack](t, app)
	for _, c := range []*rawClient{a1, a2} {
		if got := string(c.read()); !strings.Contains(got, `"type":7`) || !strings.Contains(got, "bye") {
			t.Fatalf("closed client got %q", got)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		cc := expect[svcproto.CloseConnection](t, app)
		seen[cc.ConnectionID] = true
	}
	if !seen[a1.id] || !seen[a2.id] {
		t.Fatalf("CloseConnection for %v", seen)
	}
}

func TestAppInitiatedClose(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	closeFrame := `{"type":7,"error":"kicked"}` + "\x1e"
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte(closeFrame), Ext: svcproto.Ext{DataMessageType: svcproto.DataClose}})
	app.send(svcproto.CloseConnection{ConnectionID: c.id})
	if got := string(c.read()); got != closeFrame {
		t.Fatalf("got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("want a normal closure, got %v", err)
	}
	// The app closed it: the service must not echo a CloseConnection back.
	app.send(svcproto.CheckConnectionExistenceWithAck{ConnectionID: c.id, AckID: 1})
	for {
		m := expect[svcproto.Message](t, app)
		if _, isClose := m.(svcproto.CloseConnection); isClose {
			t.Fatal("CloseConnection echoed to the app")
		}
		if ack, ok := m.(svcproto.Ack); ok {
			if ack.Status != svcproto.AckNotFound {
				t.Fatalf("connection still exists: %+v", ack)
			}
			return
		}
	}
}

func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	ts := start(t)
	dialApp(t, ts, "chat", "s1")
	c := dialClient(t, ts, "chat", "", "xml")
	if got := string(c.read()); got != `{"error":"The protocol 'xml' is not supported."}`+"\x1e" {
		t.Fatalf("got %q", got)
	}
}

func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{MaxMessageSize: 1024}})
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	big := `{"type":1,"target":"x","arguments":["` + strings.Repeat("a", 2000) + `"]}` + "\x1e"
	_ = c.ws.Write(context.Background(), websocket.MessageText, []byte(big))
	if got := string(c.read()); !strings.Contains(got, "maximum message size") {
		t.Fatalf("got %q", got)
	}
	if cc := expect[svcproto.CloseConnection](t, app); cc.ConnectionID != c.id {
		t.Fatal("wrong CloseConnection")
	}
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{OutboxBytes: 64 << 10}})
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	// The client stops reading; the app keeps sending until the service gives up on it.
	chunk := []byte(`{"type":1,"target":"m","arguments":["` + strings.Repeat("x", 16<<10) + `"]}` + "\x1e")
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: chunk})
		if i%16 == 15 {
			select {
			case m := <-app.msgs:
				if cc, ok := m.(svcproto.CloseConnection); ok && cc.ConnectionID == c.id {
					if !strings.Contains(cc.ErrorMessage, "slow consumer") {
						t.Fatalf("close reason %q", cc.ErrorMessage)
					}
					if n := metricValue(t, ts, "signalrd_client_closes_total", map[string]string{"reason": "slow_consumer"}); n != 1 {
						t.Fatalf("slow consumer closes counted %v", n)
					}
					return
				}
			default:
			}
		}
	}
	t.Fatal("slow consumer never closed")
}

func TestMultiTenantByHost(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Instances: []server.InstanceConfig{
		{Name: "a", Hosts: []string{"a.example"}, PrimaryKey: "key-a-0123456789", Default: true},
		{Name: "b", Hosts: []string{"b.example"}, PrimaryKey: "key-b-0123456789", SecondaryKey: "key-b2-0123456789"},
	}})
	post := func(host, key string) int {
		cs, _ := auth.ParseConnectionString(ts.ConnectionString())
		tok, _ := auth.IssueToken(key, auth.IssueOptions{Audience: cs.ClientAudience("chat")})
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/client/negotiate?hub=chat", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		host, key string
		want      int
	}{
		{"b.example", "key-b-0123456789", 200},
		{"b.example:443", "key-b2-0123456789", 200},
		{"b.example", "key-a-0123456789", 401},
		{"a.example", "key-b-0123456789", 401},
		{"other.example", "key-a-0123456789", 200}, // the default instance answers any host
	} {
		if got := post(tc.host, tc.key); got != tc.want {
			t.Errorf("host %s key %s: %d, want %d", tc.host, tc.key, got, tc.want)
		}
	}
}
