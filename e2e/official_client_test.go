package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/server"
)

var protocols = []string{"json", "messagepack"}

// variant is one transport and protocol combination the official clients offer.
type variant struct{ transport, protocol string }

func (v variant) String() string { return v.transport + "/" + v.protocol }

// variants lists every transport with every protocol it supports (SSE is text only).
var variants = []variant{
	{"WebSockets", "json"}, {"WebSockets", "messagepack"},
	{"ServerSentEvents", "json"},
	{"LongPolling", "json"}, {"LongPolling", "messagepack"},
}

// jsConn connects one official client through the app server's negotiate redirect.
func jsConn(t *testing.T, d *jsclient.Driver, s *stack, name, user string, v variant) string {
	t.Helper()
	id, err := d.Connect(ctxT(t), name, jsclient.ConnectOptions{
		URL:       s.AppURL + "/chat?user=" + user,
		Protocol:  v.protocol,
		Transport: v.transport,
		Handlers:  []string{"message", "seq"},
	})
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return id
}

func waitMsg(t *testing.T, d *jsclient.Driver, conn, want string) {
	t.Helper()
	ev, err := d.WaitEvent(ctxT(t), jsclient.IsMessage(conn, "message"))
	if err != nil {
		t.Fatalf("%s waiting for %q: %v", conn, want, err)
	}
	var got string
	if err := json.Unmarshal(ev.Args[0], &got); err != nil || got != want {
		t.Fatalf("%s got %s, want %q", conn, ev.Args[0], want)
	}
}

// noMsg checks that conn received no "message" with text bad (fenced by a later message).
func noMsg(t *testing.T, d *jsclient.Driver, conn, bad string) {
	t.Helper()
	for _, ev := range d.Messages(conn, "message") {
		if strings.Contains(string(ev.Args[0]), bad) {
			t.Fatalf("%s received %q", conn, bad)
		}
	}
}

func TestOfficialClientDefaultMode(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, server.Config{})
			d := jsclient.Start(t)
			ctx := ctxT(t)
			a1 := jsConn(t, d, s, "a1", "alice", v)
			a2 := jsConn(t, d, s, "a2", "alice", v)
			b := jsConn(t, d, s, "b", "bob", v)
			if info, err := d.Info(ctx, "a1"); err != nil || info.Transport != v.transport {
				t.Fatalf("negotiated transport %+v %v, want %s", info, err, v.transport)
			}

			t.Run("echo", func(t *testing.T) {
				res, err := d.Invoke(ctx, "a1", "echo", map[string]any{"n": 42, "s": "hi"})
				if err != nil {
					t.Fatal(err)
				}
				var got map[string]any
				_ = json.Unmarshal(res, &got)
				if got["n"] != float64(42) || got["s"] != "hi" {
					t.Fatalf("echo = %s", res)
				}
				who, err := d.Invoke(ctx, "b", "whoami")
				if err != nil || string(who) != `"bob"` {
					t.Fatalf("whoami = %s %v", who, err)
				}
				if _, err := d.Invoke(ctx, "b", "fail"); err == nil || !strings.Contains(err.Error(), "nope") {
					t.Fatalf("hub error = %v", err)
				}
			})
			t.Run("broadcast", func(t *testing.T) {
				if _, err := d.Invoke(ctx, "a1", "broadcast", "all-1"); err != nil {
					t.Fatal(err)
				}
				for _, c := range []string{"a1", "a2", "b"} {
					waitMsg(t, d, c, "all-1")
				}
			})
			t.Run("excluded", func(t *testing.T) {
				if _, err := d.Invoke(ctx, "a1", "others", "others-1"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a2", "others-1")
				waitMsg(t, d, "b", "others-1")
				if _, err := d.Invoke(ctx, "a1", "allExcept", "except-1", []string{b}); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "except-1")
				waitMsg(t, d, "a2", "except-1")
				if _, err := d.Invoke(ctx, "a1", "broadcast", "fence-1"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "fence-1")
				waitMsg(t, d, "a2", "fence-1")
				waitMsg(t, d, "b", "fence-1")
				noMsg(t, d, "a1", "others-1")
				noMsg(t, d, "b", "except-1")
			})
			t.Run("groups", func(t *testing.T) {
				for _, c := range []string{"a1", "b"} {
					if _, err := d.Invoke(ctx, c, "join", "room"); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := d.Invoke(ctx, "a2", "sendGroup", "room", "room-1"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "room-1")
				waitMsg(t, d, "b", "room-1")
				if _, err := d.Invoke(ctx, "a2", "sendGroupExcept", "room", "room-2", []string{a1}); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "b", "room-2")
				if _, err := d.Invoke(ctx, "b", "leave", "room"); err != nil {
					t.Fatal(err)
				}
				if _, err := d.Invoke(ctx, "a2", "sendGroup", "room", "room-3"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "room-3")
				if _, err := d.Invoke(ctx, "a2", "broadcast", "fence-2"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "fence-2")
				waitMsg(t, d, "a2", "fence-2")
				waitMsg(t, d, "b", "fence-2")
				noMsg(t, d, "a2", "room-")
				noMsg(t, d, "a1", "room-2")
				noMsg(t, d, "b", "room-3")
			})
			t.Run("user", func(t *testing.T) {
				if _, err := d.Invoke(ctx, "b", "sendUser", "alice", "to-alice"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "a1", "to-alice")
				waitMsg(t, d, "a2", "to-alice")
			})
			t.Run("connection", func(t *testing.T) {
				if _, err := d.Invoke(ctx, "a1", "sendConnection", b, "to-b"); err != nil {
					t.Fatal(err)
				}
				waitMsg(t, d, "b", "to-b")
				if _, err := d.Invoke(ctx, "a1", "broadcast", "fence-3"); err != nil {
					t.Fatal(err)
				}
				for _, c := range []string{"a1", "a2", "b"} {
					waitMsg(t, d, c, "fence-3")
				}
				noMsg(t, d, "b", "to-alice")
				noMsg(t, d, "a1", "to-b")
				noMsg(t, d, "a2", "to-b")
			})
			t.Run("order", func(t *testing.T) {
				if _, err := d.Invoke(ctx, "b", "burst", 200); err != nil {
					t.Fatal(err)
				}
				for i := range 200 {
					ev, err := d.WaitEvent(ctx, jsclient.IsMessage("b", "seq"))
					if err != nil {
						t.Fatal(err)
					}
					if string(ev.Args[0]) != fmt.Sprint(i) {
						t.Fatalf("message %d was %s", i, ev.Args[0])
					}
				}
			})
			t.Run("server close", func(t *testing.T) {
				if err := d.Send(ctx, "a2", "kick"); err != nil {
					t.Fatal(err)
				}
				if _, err := d.WaitEvent(ctx, jsclient.IsClose("a2")); err != nil {
					t.Fatal(err)
				}
				eventually(t, "OnDisconnected for a2", func() bool { _, ok := s.disconnectedErr(a2); return ok })
			})
			t.Run("client close", func(t *testing.T) {
				if err := d.Stop(ctx, "a1"); err != nil {
					t.Fatal(err)
				}
				eventually(t, "OnDisconnected for a1", func() bool { _, ok := s.disconnectedErr(a1); return ok })
			})
			t.Run("app server lost", func(t *testing.T) {
				_ = s.app.Close()
				ev, err := d.WaitEvent(ctx, jsclient.IsClose("b"))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(ev.Error, "app server") {
					t.Fatalf("close error %q", ev.Error)
				}
			})
		})
	}
}
