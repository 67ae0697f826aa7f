package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// clientResultsPair is a client hosted by "host" while "caller" invokes it: the client connects
// while only the host is there.
func clientResultsPair(t *testing.T) (caller, host *sdkLink, c *rawClient) {
	t.Helper()
	ts := start(t)
	host = dialSDKLink(t, ts, "chat", "host_0123456789abcdef0123456789abcdef", vector(t, "HandshakeRequest"))
	c = dialClient(t, ts, "chat", "alice", "json")
	host.acceptClient(t, c)
	caller = dialSDKLink(t, ts, "chat", "caller_0123456789abcdef0123456789abcdef", vector(t, "HandshakeRequest"))
	return caller, host, c
}

func invocationFor(c *rawClient, id string) svcproto.ClientInvocation {
	return svcproto.ClientInvocation{
		InvocationID: id, ConnectionID: c.id, CallerServerID: "caller_0123456789abcdef0123456789abcdef",
		Payloads: svcproto.Payloads{
			{Protocol: "json", Data: []byte(`{"type":1,"invocationId":"` + id + `","target":"add","arguments":[1,2]}` + "\x1e")},
			{Protocol: "messagepack", Data: []byte{0x01, 0x02}},
		},
	}
}

// TestClientResultAcrossServers follows service-protocol §2.7 with the .NET SDK's exact
// messages: the caller's ClientInvocation reaches the client and is forwarded to the hosting
// server; the client's Completion goes to the host as ConnectionData; the host relays it as
// ClientCompletion the way ServiceLifetimeManager.SetConnectionResultAsync writes it, with
// callerServerId = the HOST's own server id (_callerId), and the service must pass it to the
// caller.
func TestClientResultAcrossServers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		relayCallerID  func(caller, host *sdkLink) string
		dotnetBehavior bool
	}{
		// What Microsoft.Azure.SignalR sends (SetConnectionResultAsync uses _callerId, the id of
		// the server writing the message).
		{"callerServerId of the host, as the .NET SDK writes it", func(_, host *sdkLink) string { return host.serverID }, true},
		{"callerServerId of the caller", func(caller, _ *sdkLink) string { return caller.serverID }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			caller, host, c := clientResultsPair(t)
			const id = "inv-1"
			inv := invocationFor(c, id)
			caller.send(inv)
			if got := string(c.read()); got != string(inv.Payloads[0].Data) {
				t.Fatalf("client got %q", got)
			}
			fwd, ok := host.next(t).(svcproto.ClientInvocation)
			if !ok || fwd.InvocationID != id || fwd.ConnectionID != c.id || fwd.CallerServerID != caller.serverID {
				t.Fatalf("host got %#v, want the forwarded ClientInvocation", fwd)
			}
			completion := `{"type":3,"invocationId":"` + id + `","result":3}` + "\x1e"
			if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(completion)); err != nil {
				t.Fatal(err)
			}
			if d, ok := host.next(t).(svcproto.ConnectionData); !ok || string(d.Payload) != completion {
				t.Fatalf("host got %#v, want the client's completion", d)
			}
			host.send(svcproto.ClientCompletion{
				InvocationID: id, ConnectionID: c.id, CallerServerID: tc.relayCallerID(caller, host),
				Protocol: "json", Payload: []byte(completion), Ext: svcproto.Ext{Protocol: "json"},
			})
			// Once the host's echo is back the service has dispatched the ClientCompletion (one
			// reader per link), so anything it sent the caller is queued before the caller's echo.
			host.fenceEcho(t, "fence")
			var got *svcproto.ClientCompletion
			for _, m := range caller.fenceEcho(t, "fence") {
				if cc, ok := m.(svcproto.ClientCompletion); ok {
					got = &cc
				}
			}
			if got == nil {
				t.Fatalf("the caller never got the ClientCompletion (relayed with callerServerId %q)", tc.relayCallerID(caller, host))
			}
			if got.InvocationID != id || got.ConnectionID != c.id || string(got.Payload) != completion || got.Protocol != "json" {
				t.Fatalf("caller got %+v", got)
			}
		})
	}
}

// TestClientResultLocalCompletion: the caller hosts the client itself, so nothing is forwarded,
// and its cleanup ClientCompletion (empty payload) is not echoed back.
func TestClientResultLocalCompletion(t *testing.T) {
	t.Parallel()
	ts := start(t)
	s1 := dialSDKLink(t, ts, "chat", "caller_0123456789abcdef0123456789abcdef", vector(t, "HandshakeRequest"))
	c := dialClient(t, ts, "chat", "alice", "json")
	s1.acceptClient(t, c)
	inv := invocationFor(c, "inv-local")
	s1.send(inv)
	if got := string(c.read()); got != string(inv.Payloads[0].Data) {
		t.Fatalf("client got %q", got)
	}
	completion := `{"type":3,"invocationId":"inv-local","result":3}` + "\x1e"
	if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(completion)); err != nil {
		t.Fatal(err)
	}
	if d, ok := s1.next(t).(svcproto.ConnectionData); !ok || string(d.Payload) != completion {
		t.Fatalf("got %#v, want the completion as ConnectionData", d)
	}
	s1.send(svcproto.ClientCompletion{InvocationID: "inv-local", ConnectionID: c.id, CallerServerID: s1.serverID, Protocol: "json", Payload: []byte{}, Ext: svcproto.Ext{Protocol: "json"}})
	for _, m := range s1.fenceEcho(t, "fence") {
		t.Errorf("unexpected %#v", m)
	}
}

// TestClientResultErrors: a missing connection and a client leaving mid-invocation produce
// ErrorCompletion to the caller.
func TestClientResultErrors(t *testing.T) {
	t.Parallel()
	caller, host, c := clientResultsPair(t)
	caller.send(svcproto.ClientInvocation{InvocationID: "inv-none", ConnectionID: "nope", CallerServerID: caller.serverID})
	if ec, ok := caller.next(t).(svcproto.ErrorCompletion); !ok || ec.InvocationID != "inv-none" || ec.ConnectionID != "nope" || ec.CallerServerID != caller.serverID || ec.Error == "" {
		t.Fatalf("want ErrorCompletion for a missing connection, got %#v", ec)
	}

	caller.send(invocationFor(c, "inv-2"))
	c.read()
	if _, ok := host.next(t).(svcproto.ClientInvocation); !ok {
		t.Fatal("not forwarded")
	}
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	ec, ok := caller.next(t).(svcproto.ErrorCompletion)
	if !ok || ec.InvocationID != "inv-2" || ec.ConnectionID != c.id || ec.CallerServerID != caller.serverID || !strings.Contains(ec.Error, c.id) {
		t.Fatalf("want ErrorCompletion for the disconnected client, got %#v", ec)
	}
}
