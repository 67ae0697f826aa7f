package server_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// sdkLink is one server connection of the .NET SDK at the byte level: it writes exactly the
// bytes the SDK writes and keeps every frame it receives raw, so replies can be compared byte
// for byte.
type sdkLink struct {
	t        *testing.T
	ws       *websocket.Conn
	serverID string
	frames   chan []byte // framed service messages (VarInt prefix included), keep-alives dropped
}

// keepAliveFrame is the service's plain Ping [3], framed.
var keepAliveFrame = []byte{0x02, 0x91, 0x03}

// dialSDKLink connects like the SDK (headers, token, the given unframed HandshakeRequest) and
// waits for a successful HandshakeResponse.
func dialSDKLink(t *testing.T, ts *servertest.Instance, hub, serverID string, handshake []byte) *sdkLink {
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
	h := http.Header{}
	h["Authorization"] = []string{"Bearer " + tok}
	h["X-ASRS-Server-Id"] = []string{serverID}
	h["Asrs-User-Agent"] = []string{"Microsoft.Azure.SignalR/1.30.0 (.NET 8.0.0; Linux; X64)"}
	h["X-Requested-With"] = []string{"XMLHttpRequest"}
	ws, _, err := websocket.Dial(ctx, cs.ServerURL(hub, serverID+"-cid"), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	l := &sdkLink{t: t, ws: ws, serverID: serverID, frames: make(chan []byte, 1024)}
	l.writeRaw(protocol.AppendFrame(nil, handshake))
	go l.readLoop()
	if hr, ok := l.next(t).(svcproto.HandshakeResponse); !ok || hr.ErrorMessage != "" {
		t.Fatalf("first message is not a successful HandshakeResponse: %#v", hr)
	}
	return l
}

func (l *sdkLink) readLoop() {
	defer close(l.frames)
	var buf []byte
	for {
		_, b, err := l.ws.Read(context.Background())
		if err != nil {
			return
		}
		buf = append(buf, b...)
		for {
			_, frame, rest, err := protocol.CutBinary(buf, 0)
			if err != nil {
				break
			}
			if !bytes.Equal(frame, keepAliveFrame) {
				l.frames <- bytes.Clone(frame)
			}
			buf = rest
		}
		buf = bytes.Clone(buf)
	}
}

func (l *sdkLink) writeRaw(b []byte) {
	l.t.Helper()
	if err := l.ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		l.t.Fatalf("%s write: %v", l.serverID, err)
	}
}

func (l *sdkLink) send(m svcproto.Message) {
	l.t.Helper()
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		l.t.Fatal(err)
	}
	l.writeRaw(f)
}

// nextFrame returns the next frame, raw and decoded.
func (l *sdkLink) nextFrame(t *testing.T) ([]byte, svcproto.Message) {
	t.Helper()
	select {
	case f, ok := <-l.frames:
		if !ok {
			t.Fatalf("%s: link closed", l.serverID)
		}
		msg, _, _, err := protocol.CutBinary(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := svcproto.Decode(msg)
		if err != nil {
			t.Fatalf("%s: undecodable frame %x: %v", l.serverID, f, err)
		}
		return f, m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing received", l.serverID)
		return nil, nil
	}
}

func (l *sdkLink) next(t *testing.T) svcproto.Message {
	t.Helper()
	_, m := l.nextFrame(t)
	return m
}

// fenceEcho sends an echo ping and returns everything received before its echo.
func (l *sdkLink) fenceEcho(t *testing.T, tag string) []svcproto.Message {
	t.Helper()
	l.send(svcproto.Ping{Values: []string{"echo", tag}})
	var before []svcproto.Message
	for {
		m := l.next(t)
		if p, ok := m.(svcproto.Ping); ok {
			if v, _ := p.Get("echo"); v == tag {
				return before
			}
		}
		before = append(before, m)
	}
}

// acceptClient reads the OpenConnection and handshake of a new client and answers it.
func (l *sdkLink) acceptClient(t *testing.T, c *rawClient) svcproto.OpenConnection {
	t.Helper()
	open, ok := l.next(t).(svcproto.OpenConnection)
	if !ok || open.ConnectionID != c.id {
		t.Fatalf("%s: want OpenConnection(%s), got %#v", l.serverID, c.id, open)
	}
	if hs, ok := l.next(t).(svcproto.ConnectionData); !ok || string(hs.Payload) != `{"protocol":"json","version":1}`+"\x1e" {
		t.Fatalf("%s: want the client's handshake, got %#v", l.serverID, hs)
	}
	l.send(svcproto.ConnectionData{ConnectionID: c.id, Payload: []byte("{}\x1e"), Ext: svcproto.Ext{DataMessageType: svcproto.DataHandshake}})
	if got := string(c.read()); got != "{}\x1e" {
		t.Fatalf("client handshake response %q", got)
	}
	return open
}

// sdkPing is a Ping exactly as MessagePack-CSharp writes it (fixarray, fixint 3, fixstr
// values), framed.
func sdkPing(values ...string) []byte {
	body := []byte{0x90 | byte(1+len(values)), 0x03}
	for _, v := range values {
		body = append(body, 0xa0|byte(len(v)))
		body = append(body, v...)
	}
	return protocol.AppendFrame(nil, body)
}

// TestSDKShutdownPingSequence replays what the .NET SDK does on a graceful shutdown
// (ServiceConnectionBase / RemoveConnectionAsync): ["shutdown","fin:N"] on the socket, byte for
// byte, and expects ["shutdown","finack"] byte for byte, after which the server gets no new
// clients. WaitForClientsClose keeps the server's clients; MigrateClients (announced by the
// handshake's migrationLevel 1) moves them to the other server first.
func TestSDKShutdownPingSequence(t *testing.T) {
	t.Parallel()
	// 93 03 a8 "shutdown" a6 "finack", with its VarInt length 0x12.
	finack := append(append([]byte{0x12, 0x93, 0x03, 0xa8}, "shutdown"...), append([]byte{0xa6}, "finack"...)...)
	if !bytes.Equal(finack, sdkPing("shutdown", "finack")) {
		t.Fatalf("sdkPing is not MessagePack-CSharp's encoding: %x", sdkPing("shutdown", "finack"))
	}
	for _, tc := range []struct {
		name, fin, handshake string
		migrates             bool
	}{
		{"WaitForClientsClose", "fin:2", "HandshakeRequest", false},
		{"MigrateClients", "fin:1", "HandshakeRequestWithMigratableStatus", true},
		// A server that did not announce migration is only drained, as the SDK never sends
		// fin:1 without migrationLevel 1.
		{"MigrateClientsWithoutMigrationLevel", "fin:1", "HandshakeRequest", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t)
			s1 := dialSDKLink(t, ts, "chat", "host1_0123456789abcdef0123456789abcdef", vector(t, tc.handshake))
			c1 := dialClient(t, ts, "chat", "alice", "json")
			s1.acceptClient(t, c1)
			s2 := dialSDKLink(t, ts, "chat", "host2_0123456789abcdef0123456789abcdef", vector(t, tc.handshake))

			fin := append(append([]byte{0x11, 0x93, 0x03, 0xa8}, "shutdown"...), append([]byte{0xa5}, tc.fin...)...)
			if !bytes.Equal(fin, sdkPing("shutdown", tc.fin)) {
				t.Fatalf("fin bytes %x", fin)
			}
			s1.writeRaw(fin)
			var beforeAck []svcproto.Message
			for {
				raw, m := s1.nextFrame(t)
				if p, ok := m.(svcproto.Ping); ok && len(p.Values) > 0 && p.Values[0] == "shutdown" {
					if !bytes.Equal(raw, finack) {
						t.Fatalf("finack bytes %x, want %x", raw, finack)
					}
					break
				}
				beforeAck = append(beforeAck, m)
			}
			if tc.migrates {
				// The old server hears of the migration before its finack.
				if len(beforeAck) != 1 {
					t.Fatalf("before finack: %#v, want one CloseConnection", beforeAck)
				}
				cc, ok := beforeAck[0].(svcproto.CloseConnection)
				if !ok || cc.ConnectionID != c1.id || cc.ErrorMessage != "" || !equalStrings(cc.Headers.Get("Asrs-Migrate-To"), s2.serverID) {
					t.Fatalf("want CloseConnection(%s, Asrs-Migrate-To %s), got %#v", c1.id, s2.serverID, beforeAck[0])
				}
				open, ok := s2.next(t).(svcproto.OpenConnection)
				if !ok || open.ConnectionID != c1.id || !equalStrings(open.Headers.Get("Asrs-Migrate-From"), s1.serverID) || open.Ext.Protocol != "json" {
					t.Fatalf("want OpenConnection(%s, Asrs-Migrate-From %s), got %#v", c1.id, s1.serverID, open)
				}
				if uid := claimValue(open.Claims, auth.ClaimUserID); uid != "alice" {
					t.Errorf("migrated OpenConnection lost the claims: uid %q", uid)
				}
				if hs, ok := s2.next(t).(svcproto.ConnectionData); !ok || string(hs.Payload) != `{"protocol":"json","version":1}`+"\x1e" {
					t.Fatalf("want a synthesized handshake, got %#v", hs)
				}
				// The SDK sends no handshake response for a migrated-in client (Asrs-Migrate-From).
			} else if len(beforeAck) != 0 {
				t.Fatalf("before finack: %#v", beforeAck)
			}
			// The SDK re-sends fin every 5 s until finack: every fin is answered.
			s1.writeRaw(fin)
			if raw, _ := s1.nextFrame(t); !bytes.Equal(raw, finack) {
				t.Fatalf("second finack %x", raw)
			}

			// New clients go to the other server only.
			for i := range 3 {
				c := dialClient(t, ts, "chat", "u"+strconv.Itoa(i), "json")
				s2.acceptClient(t, c)
			}
			for _, m := range s1.fenceEcho(t, "fence") {
				if _, ok := m.(svcproto.OpenConnection); ok {
					t.Fatalf("a draining server got a new client: %#v", m)
				}
			}

			// c1 goes on without a close: its data reaches its (old or new) server, and that
			// server's data reaches it.
			host := s1
			if tc.migrates {
				host = s2
			}
			inv := `{"type":1,"target":"m","arguments":[1]}` + "\x1e"
			if err := c1.ws.Write(context.Background(), websocket.MessageText, []byte(inv)); err != nil {
				t.Fatal(err)
			}
			for {
				m := host.next(t)
				if d, ok := m.(svcproto.ConnectionData); ok && d.ConnectionID == c1.id {
					if string(d.Payload) != inv {
						t.Fatalf("%s got %q", host.serverID, d.Payload)
					}
					break
				}
				if _, ok := m.(svcproto.CloseConnection); ok {
					t.Fatalf("%s got %#v", host.serverID, m)
				}
			}
			host.send(svcproto.MultiConnectionData{ConnectionIDs: []string{c1.id}, Payloads: svcproto.Payloads{{Protocol: "json", Data: []byte(`{"type":1,"target":"after","arguments":[]}` + "\x1e")}}})
			if got := string(c1.read()); got != `{"type":1,"target":"after","arguments":[]}`+"\x1e" {
				t.Fatalf("client got %q, want only the message (no close, no second handshake response)", got)
			}
		})
	}
}

// TestShutdownLastServer: once the only server drains, negotiate answers "No server available"
// (Default mode; in Auto mode the service would answer new clients itself).
func TestShutdownLastServer(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Defaults: server.Settings{Mode: server.ModeDefault}})
	s1 := dialSDKLink(t, ts, "chat", "only", vector(t, "HandshakeRequest"))
	s1.writeRaw(sdkPing("shutdown", "fin:2"))
	if raw, _ := s1.nextFrame(t); !bytes.Equal(raw, sdkPing("shutdown", "finack")) {
		t.Fatalf("finack %x", raw)
	}
	st, neg := negotiate(t, ts, "chat", clientToken(t, ts, "chat", ""))
	if msg, _ := neg["error"].(string); st != 200 || !strings.HasPrefix(msg, "No server available") {
		t.Fatalf("negotiate = %d %v", st, neg)
	}
}

// TestServersPing: ["servers",""] (sent by the SDK while it live-scales endpoints) is answered
// with "<stamp>:<ids sorted case-insensitively>" (the hub's servers only).
func TestServersPing(t *testing.T) {
	t.Parallel()
	ts := start(t)
	b := dialSDKLink(t, ts, "chat", "b-server", vector(t, "HandshakeRequest"))
	dialSDKLink(t, ts, "chat", "A-server", vector(t, "HandshakeRequest"))
	dialSDKLink(t, ts, "chat", "c-server", vector(t, "HandshakeRequest"))
	dialSDKLink(t, ts, "other", "d-server", vector(t, "HandshakeRequest"))
	var last int64
	for range 2 {
		b.writeRaw(sdkPing("servers", ""))
		p, ok := b.next(t).(svcproto.Ping)
		v, _ := p.Get("servers")
		stamp, ids, found := strings.Cut(v, ":")
		n, err := strconv.ParseInt(stamp, 10, 64)
		if !ok || !found || err != nil || ids != "A-server;b-server;c-server" {
			t.Fatalf("servers reply %#v", p)
		}
		if n < last || n < 1e12 {
			t.Errorf("stamp %d after %d: want a Unix-millisecond stamp that never decreases", n, last)
		}
		last = n
	}
}

func equalStrings(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func claimValue(cs []svcproto.Claim, typ string) string {
	for _, c := range cs {
		if c.Type == typ {
			return c.Value
		}
	}
	return ""
}
