package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

const testTraceToken = "s3cret-trace-token"

// traceEvent mirrors the JSON of one live-trace event.
type traceEvent struct {
	Seq             uint64  `json:"seq"`
	Kind            string  `json:"kind"`
	Instance        string  `json:"instance"`
	Hub             string  `json:"hub"`
	ConnectionID    string  `json:"connectionId"`
	UserID          string  `json:"userId"`
	Transport       string  `json:"transport"`
	Protocol        string  `json:"protocol"`
	Reason          string  `json:"reason"`
	ServerID        string  `json:"serverId"`
	CID             string  `json:"cid"`
	SocketType      string  `json:"socketType"`
	Direction       string  `json:"direction"`
	Target          string  `json:"target"`
	Size            int     `json:"size"`
	MessageType     string  `json:"messageType"`
	Payload         *string `json:"payload"`
	PayloadEncoding string  `json:"payloadEncoding"`
}

// traceStream reads /trace/events in the background.
type traceStream struct {
	t      *testing.T
	events chan traceEvent
}

func openTrace(t *testing.T, ts *servertest.Instance, query string) *traceStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.AdminURL+"/trace/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testTraceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("trace events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("trace events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &traceStream{t: t, events: make(chan traceEvent, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.events)
		br := bufio.NewReader(resp.Body)
		event := ""
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "trace":
				var e traceEvent
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e); err != nil {
					t.Errorf("trace event %q: %v", line, err)
					return
				}
				s.events <- e
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}

// expect waits for the first event matching ok, skipping others.
func (s *traceStream) expect(what string, ok func(traceEvent) bool) traceEvent {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, open := <-s.events:
			if !open {
				s.t.Fatalf("trace stream ended while waiting for %s", what)
			}
			if ok(e) {
				return e
			}
		case <-timeout:
			s.t.Fatalf("no trace event %s within 10s", what)
		}
	}
}

func traceGet(t *testing.T, url string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestTraceDisabledAndAuth(t *testing.T) {
	t.Parallel()
	off := servertest.Start(t, server.Config{AdminListen: "on"})
	on := servertest.Start(t, server.Config{AdminListen: "on", TraceToken: testTraceToken})
	bearer := http.Header{"Authorization": {"Bearer " + testTraceToken}}
	wrong := http.Header{"Authorization": {"Bearer nope"}}
	for _, tc := range []struct {
		name   string
		ts     *servertest.Instance
		path   string
		header http.Header
		want   int
	}{
		{"disabled page", off, "/trace?token=" + testTraceToken, nil, http.StatusNotFound},
		{"disabled snapshot", off, "/trace/snapshot", bearer, http.StatusNotFound},
		{"disabled events", off, "/trace/events", bearer, http.StatusNotFound},
		{"page without token", on, "/trace", nil, http.StatusUnauthorized},
		{"snapshot without token", on, "/trace/snapshot", nil, http.StatusUnauthorized},
		{"events without token", on, "/trace/events", nil, http.StatusUnauthorized},
		{"wrong bearer", on, "/trace/snapshot", wrong, http.StatusUnauthorized},
		{"wrong query token", on, "/trace/snapshot?token=" + testTraceToken + "x", nil, http.StatusUnauthorized},
		{"page with query token", on, "/trace?token=" + testTraceToken, nil, http.StatusOK},
		{"snapshot with bearer", on, "/trace/snapshot", bearer, http.StatusOK},
		{"unknown instance", on, "/trace/snapshot?instance=nope", bearer, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, h, body := traceGet(t, tc.ts.AdminURL+tc.path, tc.header)
			if st != tc.want {
				t.Fatalf("GET %s = %d %q, want %d", tc.path, st, body, tc.want)
			}
			if st == http.StatusOK && strings.HasPrefix(tc.path, "/trace?") {
				if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
					t.Fatalf("page headers %v", h)
				}
				if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
					t.Fatal("the trace page references an external asset")
				}
			}
		})
	}
	// The service listener never serves live trace.
	if st, _, _ := traceGet(t, on.URL+"/trace/snapshot", bearer); st != http.StatusNotFound {
		t.Fatalf("service listener /trace/snapshot = %d, want 404", st)
	}
	if _, err := server.New(server.Config{TraceToken: "x"}); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("trace token without admin listener: err = %v", err)
	}
}

func TestTraceSnapshotAndEvents(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{AdminListen: "on", TraceToken: testTraceToken})
	plain := openTrace(t, ts, "")
	withPayloads := openTrace(t, ts, "payloads=1")

	app := dialApp(t, ts, "chat", "app-1")
	for _, s := range []*traceStream{plain, withPayloads} {
		e := s.expect("server.connected", func(e traceEvent) bool { return e.Kind == "server.connected" })
		if e.ServerID != "app-1" || e.Hub != "chat" || e.Instance != "default" || e.CID == "" || e.SocketType == "" {
			t.Fatalf("server.connected = %+v", e)
		}
	}
	c, _ := connect(t, ts, app, "chat", "alice", "json")
	for _, s := range []*traceStream{plain, withPayloads} {
		e := s.expect("client.connected", func(e traceEvent) bool { return e.Kind == "client.connected" })
		if e.ConnectionID != c.id || e.UserID != "alice" || e.Transport != "WebSockets" || e.Protocol != "json" {
			t.Fatalf("client.connected = %+v", e)
		}
	}

	// Snapshot: the app server with its socket, and the client.
	st, _, body := traceGet(t, ts.AdminURL+"/trace/snapshot?token="+testTraceToken, nil)
	if st != http.StatusOK {
		t.Fatalf("snapshot = %d %s", st, body)
	}
	var snap struct {
		Instances []struct {
			Name string `json:"name"`
			Hubs []struct {
				Name    string `json:"name"`
				Servers []struct {
					ID      string `json:"id"`
					Clients int    `json:"clients"`
					Sockets []struct {
						CID     string `json:"cid"`
						Type    string `json:"type"`
						Clients int    `json:"clients"`
					} `json:"sockets"`
				} `json:"servers"`
				Clients []struct {
					ID        string `json:"id"`
					UserID    string `json:"userId"`
					Transport string `json:"transport"`
					Protocol  string `json:"protocol"`
					ServerID  string `json:"serverId"`
				} `json:"clients"`
			} `json:"hubs"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatalf("snapshot %s: %v", body, err)
	}
	if len(snap.Instances) != 1 || len(snap.Instances[0].Hubs) != 1 {
		t.Fatalf("snapshot %s", body)
	}
	hub := snap.Instances[0].Hubs[0]
	if hub.Name != "chat" || len(hub.Servers) != 1 || hub.Servers[0].ID != "app-1" || hub.Servers[0].Clients != 1 ||
		len(hub.Servers[0].Sockets) != 1 || hub.Servers[0].Sockets[0].Clients != 1 || hub.Servers[0].Sockets[0].Type != "Default" {
		t.Fatalf("snapshot servers: %s", body)
	}
	if len(hub.Clients) != 1 || hub.Clients[0].ID != c.id || hub.Clients[0].UserID != "alice" ||
		hub.Clients[0].Transport != "WebSockets" || hub.Clients[0].Protocol != "json" || hub.Clients[0].ServerID != "app-1" {
		t.Fatalf("snapshot clients: %s", body)
	}

	// Client → server: payload only for the viewer that asked.
	inv := `{"type":1,"target":"send","arguments":["hello trace"]}`
	if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(inv+"\x1e")); err != nil {
		t.Fatal(err)
	}
	isInbound := func(e traceEvent) bool { return e.Kind == "message" && e.Direction == "client-to-server" }
	e := plain.expect("client-to-server message", isInbound)
	if e.ConnectionID != c.id || e.MessageType != "Invocation" || e.Size != len(inv) || e.Payload != nil {
		t.Fatalf("plain inbound message = %+v (payload must be hidden)", e)
	}
	e = withPayloads.expect("client-to-server message", isInbound)
	if e.Payload == nil || *e.Payload != inv || e.PayloadEncoding != "text" {
		t.Fatalf("payload inbound message = %+v", e)
	}

	// Server → client, addressed to the connection and broadcast.
	out := `{"type":1,"target":"recv","arguments":["hi"]}` + "\x1e"
	app.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte(out)})
	if got := string(c.read()); got != out {
		t.Fatalf("client got %q", got)
	}
	isOutbound := func(e traceEvent) bool {
		return e.Kind == "message" && e.Direction == "server-to-client" && e.MessageType == "Invocation" && e.Target == ""
	}
	e = plain.expect("server-to-client message", isOutbound)
	if e.ConnectionID != c.id || e.Size != len(out) || e.ServerID != "app-1" || e.Payload != nil {
		t.Fatalf("plain outbound message = %+v", e)
	}
	if e = withPayloads.expect("server-to-client message", isOutbound); e.Payload == nil || *e.Payload != out {
		t.Fatalf("payload outbound message = %+v", e)
	}
	app.send(svcproto.BroadcastData{Payloads: svcproto.Payloads{{Protocol: "json", Data: []byte(out)}}})
	c.read()
	if e = plain.expect("broadcast", func(e traceEvent) bool { return e.Target == "broadcast" }); e.Size != len(out) || e.MessageType != "Invocation" {
		t.Fatalf("broadcast = %+v", e)
	}

	// Disconnects.
	c.ws.Close(websocket.StatusNormalClosure, "")
	e = plain.expect("client.disconnected", func(e traceEvent) bool { return e.Kind == "client.disconnected" })
	if e.ConnectionID != c.id || e.Reason == "" {
		t.Fatalf("client.disconnected = %+v", e)
	}
	app.ws.Close(websocket.StatusNormalClosure, "")
	if e = plain.expect("server.disconnected", func(e traceEvent) bool { return e.Kind == "server.disconnected" }); e.ServerID != "app-1" {
		t.Fatalf("server.disconnected = %+v", e)
	}

	// A late viewer gets the recent events, without payloads.
	late := openTrace(t, ts, "payloads=1")
	if e = late.expect("replayed inbound message", isInbound); e.Payload != nil {
		t.Fatalf("replayed event carries a payload: %+v", e)
	}
}

func TestTraceNetworkACL(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{AdminListen: "on", TraceToken: testTraceToken, Instances: []server.InstanceConfig{{
		Name: "locked", PrimaryKey: server.DevAccessKey,
		Network: server.NetworkACL{Trace: server.NetworkRule{Allow: []string{"10.0.0.0/8"}}},
	}}})
	bearer := http.Header{"Authorization": {"Bearer " + testTraceToken}}
	if st, _, body := traceGet(t, ts.AdminURL+"/trace/snapshot", bearer); st != http.StatusOK || !strings.Contains(body, `"instances":[]`) {
		t.Fatalf("snapshot = %d %s, want no visible instance", st, body)
	}
	if st, _, body := traceGet(t, ts.AdminURL+"/trace/snapshot?instance=locked", bearer); st != http.StatusForbidden {
		t.Fatalf("snapshot of a denied instance = %d %s, want 403", st, body)
	}
}

// TestTraceRESTSends: messages the REST API sends show in the live trace like an app server's,
// with "rest-api" as the server.
func TestTraceRESTSends(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{AdminListen: "on", TraceToken: testTraceToken, Defaults: server.Settings{Mode: server.ModeServerless}})
	s := openTrace(t, ts, "payloads=1")
	if st := restSendAll(t, ts, server.DevAccessKey, "chat", "news"); st != http.StatusAccepted {
		t.Fatalf("REST broadcast = %d", st)
	}
	e := s.expect("REST broadcast", func(e traceEvent) bool { return e.Kind == "message" && e.ServerID == "rest-api" })
	if e.Hub != "chat" || e.Target != "broadcast" || e.Direction != "server-to-client" || e.MessageType != "Invocation" ||
		e.Payload == nil || !strings.Contains(*e.Payload, `"news"`) {
		t.Fatalf("REST broadcast event = %+v", e)
	}
}

// TestTraceServerlessReply: what the service itself answers a serverless client (here the error
// completion for an invocation with no upstream configured) shows with server "upstream".
func TestTraceServerlessReply(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{AdminListen: "on", TraceToken: testTraceToken, Defaults: server.Settings{Mode: server.ModeServerless}})
	s := openTrace(t, ts, "payloads=1")
	c := dialClient(t, ts, "chat", "alice", "json")
	if got := string(c.read()); got != "{}\x1e" {
		t.Fatalf("handshake response %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(`{"type":1,"invocationId":"1","target":"hello","arguments":[]}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if got := string(c.read()); !strings.Contains(got, `"type":3`) || !strings.Contains(got, "No upstream") {
		t.Fatalf("reply %q, want an error completion", got)
	}
	e := s.expect("serverless reply", func(e traceEvent) bool { return e.Kind == "message" && e.ServerID == "upstream" })
	if e.ConnectionID != c.id || e.UserID != "alice" || e.MessageType != "Completion" || e.Payload == nil || !strings.Contains(*e.Payload, "No upstream") {
		t.Fatalf("serverless reply event = %+v", e)
	}
}
