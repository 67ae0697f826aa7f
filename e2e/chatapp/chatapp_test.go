package chatapp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/chatapp"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startApp(t *testing.T) *httptest.Server {
	t.Helper()
	svc := servertest.Start(t, server.Config{})
	app, err := chatapp.New(ctxT(t), svc.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	hs := httptest.NewServer(app.Handler())
	t.Cleanup(hs.Close)
	return hs
}

func TestHandlerRoutes(t *testing.T) {
	t.Parallel()
	hs := startApp(t)
	tests := []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `id="messages"`},
		{"GET", "/?user=alice&transport=LongPolling", 200, "text/html; charset=utf-8", "window.chatState"},
		{"GET", "/lib/signalr.js", 200, "text/javascript; charset=utf-8", "HubConnectionBuilder"},
		{"GET", "/lib/msgpack.js", 200, "text/javascript; charset=utf-8", "MessagePackHubProtocol"},
		{"POST", "/chat/negotiate?user=alice&negotiateVersion=1", 200, "application/json", `"accessToken"`},
		{"GET", "/favicon.ico", 204, "", ""},
		{"GET", "/nope", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequestWithContext(ctxT(t), tc.method, hs.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); tc.contentType != "" && !strings.HasPrefix(ct, tc.contentType) {
				t.Fatalf("Content-Type %q, want %q", ct, tc.contentType)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Fatalf("body lacks %q", tc.contains)
			}
		})
	}
}

type msg struct{ method, room, user, text string }

func dial(t *testing.T, url, user, proto string) (*client.Conn, chan msg) {
	t.Helper()
	ctx := ctxT(t)
	c, err := client.Dial(ctx, client.Options{URL: url + "/chat?user=" + user, Protocol: proto})
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	got := make(chan msg, 16)
	strs := func(args []hubproto.Raw) []string {
		out := make([]string, len(args))
		for i, a := range args {
			_ = c.Unmarshal(a, &out[i])
		}
		return out
	}
	c.On("message", func(args []hubproto.Raw) {
		s := strs(args)
		got <- msg{method: "message", user: s[0], text: s[1]}
	})
	c.On("roomMessage", func(args []hubproto.Raw) {
		s := strs(args)
		got <- msg{method: "roomMessage", room: s[0], user: s[1], text: s[2]}
	})
	return c, got
}

func next(t *testing.T, ch chan msg) msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a message")
		return msg{}
	}
}

func TestHub(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"json", "messagepack"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			hs := startApp(t) // its own service: broadcasts must not cross subtests
			ctx := ctxT(t)
			alice, gotA := dial(t, hs.URL, "alice-"+proto, proto)
			bob, gotB := dial(t, hs.URL, "bob-"+proto, proto)

			if err := alice.InvokeInto(ctx, nil, "send", "alice", "  hi all "); err != nil {
				t.Fatal(err)
			}
			want := msg{method: "message", user: "alice", text: "hi all"}
			for _, ch := range []chan msg{gotA, gotB} {
				if m := next(t, ch); m != want {
					t.Fatalf("got %+v, want %+v", m, want)
				}
			}
			// An empty name falls back to the negotiated user id.
			if err := bob.InvokeInto(ctx, nil, "send", "", "anon"); err != nil {
				t.Fatal(err)
			}
			if m := next(t, gotA); m.user != "bob-"+proto {
				t.Fatalf("user = %q", m.user)
			}
			next(t, gotB)

			room := "room-" + proto
			if err := bob.InvokeInto(ctx, nil, "join", room); err != nil {
				t.Fatal(err)
			}
			if err := alice.InvokeInto(ctx, nil, "sendRoom", room, "alice", "psst"); err != nil {
				t.Fatal(err)
			}
			if m := next(t, gotB); m != (msg{method: "roomMessage", room: room, user: "alice", text: "psst"}) {
				t.Fatalf("room message %+v", m)
			}
			if err := bob.InvokeInto(ctx, nil, "leave", room); err != nil {
				t.Fatal(err)
			}
			if err := alice.InvokeInto(ctx, nil, "sendRoom", room, "alice", "gone"); err != nil {
				t.Fatal(err)
			}
			// Fence: bob must see the broadcast without the room message before it.
			if err := alice.InvokeInto(ctx, nil, "send", "alice", "fence"); err != nil {
				t.Fatal(err)
			}
			if m := next(t, gotB); m.text != "fence" {
				t.Fatalf("bob got %+v after leaving, want the fence", m)
			}

			for _, bad := range [][]any{{"send", "alice", "   "}, {"send", "alice", strings.Repeat("x", 2001)}, {"join", ""}} {
				err := alice.InvokeInto(ctx, nil, bad[0].(string), bad[1:]...)
				var he *client.HubError
				if !errors.As(err, &he) {
					t.Fatalf("%v: err = %v, want a hub error", bad[0], err)
				}
			}
		})
	}
}

func TestMissingBundles(t *testing.T) {
	t.Parallel()
	_, err := chatapp.New(ctxT(t), "Endpoint=http://127.0.0.1;Port=1;AccessKey=x;Version=1.0;", nil,
		chatapp.WithBundleDir(t.TempDir()))
	if !errors.Is(err, chatapp.ErrBundlesMissing) || !strings.Contains(err.Error(), "make deps-js") {
		t.Fatalf("err = %v, want ErrBundlesMissing with advice", err)
	}
}
