package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// stack is signalrd plus one Go app server hosting the "chat" hub, reachable by clients at
// AppURL/chat (negotiate redirects them to signalrd).
type stack struct {
	svc    *servertest.Instance
	app    *appserver.Server
	AppURL string

	mu           sync.Mutex
	disconnected map[string]error // connection id -> OnDisconnected error
}

func chatHub(s *stack) *appserver.Hub {
	h := &appserver.Hub{
		// ASP.NET Core's 32 KB default would refuse the large-message tests.
		MaximumReceiveMessageSize: 2 << 20,
		OnDisconnected: func(c *appserver.Context, err error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.disconnected[c.ConnectionID] = err
		},
	}
	h.On("echo", func(c *appserver.Context, v map[string]any) (map[string]any, error) { return v, nil })
	h.On("whoami", func(c *appserver.Context) (string, error) { return c.UserID, nil })
	h.On("length", func(c *appserver.Context, s string) (int, error) { return len(s), nil })
	h.On("broadcast", func(c *appserver.Context, msg string) error {
		return c.Clients.All().Send(c, "message", msg)
	})
	h.On("others", func(c *appserver.Context, msg string) error {
		return c.Clients.Others().Send(c, "message", msg)
	})
	h.On("allExcept", func(c *appserver.Context, msg string, excluded []string) error {
		return c.Clients.AllExcept(excluded...).Send(c, "message", msg)
	})
	h.On("join", func(c *appserver.Context, g string) error { return c.Groups.Add(c, c.ConnectionID, g) })
	h.On("leave", func(c *appserver.Context, g string) error { return c.Groups.Remove(c, c.ConnectionID, g) })
	h.On("sendGroup", func(c *appserver.Context, g, msg string) error {
		return c.Clients.Group(g).Send(c, "message", msg)
	})
	h.On("sendGroupExcept", func(c *appserver.Context, g, msg string, excluded []string) error {
		return c.Clients.GroupExcept(g, excluded...).Send(c, "message", msg)
	})
	h.On("sendUser", func(c *appserver.Context, user, msg string) error {
		return c.Clients.User(user).Send(c, "message", msg)
	})
	h.On("sendConnection", func(c *appserver.Context, id, msg string) error {
		return c.Clients.Client(id).Send(c, "message", msg)
	})
	h.On("burst", func(c *appserver.Context, n int) error {
		for i := range n {
			if err := c.Clients.Caller().Send(c, "seq", i); err != nil {
				return err
			}
		}
		return nil
	})
	h.On("kick", func(c *appserver.Context) error {
		c.Abort()
		return nil
	})
	h.On("fail", func(c *appserver.Context) error { return appserver.NewHubError("nope") })
	return h
}

func startStack(t *testing.T, cfg server.Config) *stack {
	t.Helper()
	s := &stack{disconnected: map[string]error{}}
	s.svc = servertest.Start(t, cfg)
	s.app = startApp(t, s.svc, chatHub(s))
	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", s.app.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	s.AppURL = hs.URL
	return s
}

func startApp(t *testing.T, svc *servertest.Instance, hub *appserver.Hub) *appserver.Server {
	t.Helper()
	return startAppConnStr(t, svc.ConnectionString(), hub)
}

// startAppConnStr starts a Go app server hosting hub "chat" with a connection string and waits
// until its sockets are up.
func startAppConnStr(t *testing.T, connStr string, hub *appserver.Hub) *appserver.Server {
	t.Helper()
	app, err := appserver.New(appserver.Options{ConnectionString: connStr})
	if err != nil {
		t.Fatal(err)
	}
	app.MapHub("chat", hub)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.Ready(ctx); err != nil {
		t.Fatalf("app server not ready: %v", err)
	}
	return app
}

func (s *stack) disconnectedErr(id string) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err, ok := s.disconnected[id]
	return err, ok
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
