package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
)

// shortCtx bounds one client-result round trip, so a lost completion fails fast.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type infoResult struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// TestClientResults: app servers invoke official clients and get their results (InvokeClient),
// whether the client is their own or hosted by another app server, in both protocols, from
// outside a hub and from inside another connection's hub method.
func TestClientResults(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	a := c.startApp("app-a", lcAppOptions{sticky: auth.StickyPreferred})
	b := c.startApp("app-b", lcAppOptions{sticky: auth.StickyPreferred})
	d := jsclient.Start(t)
	ctx := ctxT(t)
	r1 := lcConnect(t, d, c, "r1", "app-a", jsclient.ConnectOptions{})
	r2 := lcConnect(t, d, c, "r2", "app-a", jsclient.ConnectOptions{Protocol: "messagepack"})
	lcConnect(t, d, c, "q", "app-b", jsclient.ConnectOptions{})
	for name, want := range map[string]string{"r1": "app-a#1", "r2": "app-a#1", "q": "app-b#1"} {
		if got := where(t, d, name); got != want {
			t.Fatalf("%s is on %s, want %s", name, got, want)
		}
	}
	for _, conn := range []string{"r1", "r2"} {
		if err := d.HandleResult(ctx, conn, "add", map[string]int{"r1": 5, "r2": 7}[conn]); err != nil {
			t.Fatal(err)
		}
		if err := d.HandleResult(ctx, conn, "info", map[string]any{"name": conn, "n": 3}); err != nil {
			t.Fatal(err)
		}
		if err := d.HandleError(ctx, conn, "fail", "boom"); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name   string
		caller *lcApp
		conn   string
		want   int
	}{
		{"local json", a, r1, 5},
		{"local messagepack", a, r2, 7},
		{"other server json", b, r1, 5},
		{"other server messagepack", b, r2, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := shortCtx(t)
			got, err := appserver.InvokeClient[int](ctx, tc.caller.hub, tc.conn, "add", 2, 3)
			if err != nil || got != tc.want {
				t.Fatalf("InvokeClient = %d, %v; want %d", got, err, tc.want)
			}
			info, err := appserver.InvokeClient[infoResult](ctx, tc.caller.hub, tc.conn, "info")
			if err != nil || info.N != 3 || info.Name == "" {
				t.Fatalf("InvokeClient[infoResult] = %+v, %v", info, err)
			}
			_, err = appserver.InvokeClient[int](ctx, tc.caller.hub, tc.conn, "fail")
			var he *appserver.HubError
			if !errors.As(err, &he) || !strings.Contains(he.Message, "boom") {
				t.Fatalf("client error = %v, want a HubError with the client's message", err)
			}
		})
	}
	t.Run("arguments", func(t *testing.T) {
		for _, conn := range []string{"r1", "r2"} {
			msgs := d.Messages(conn, "add")
			if len(msgs) == 0 || len(msgs[0].Args) != 2 || string(msgs[0].Args[0]) != "2" || string(msgs[0].Args[1]) != "3" {
				t.Fatalf("%s handler saw %+v", conn, msgs)
			}
		}
	})
	t.Run("from a hub method on another server", func(t *testing.T) {
		raw, err := d.Invoke(shortCtx(t), "q", "ask", r1, 1, 2)
		if err != nil || string(raw) != "5" {
			t.Fatalf("ask = %s, %v; want 5", raw, err)
		}
	})
	t.Run("unknown connection", func(t *testing.T) {
		_, err := appserver.InvokeClient[int](shortCtx(t), b.hub, "no-such-connection", "add", 1, 2)
		var he *appserver.HubError
		if !errors.As(err, &he) || !strings.Contains(he.Message, "no-such-connection") {
			t.Fatalf("error = %v, want a HubError naming the connection", err)
		}
	})
}

// TestClientResultDisconnect: a client that goes away while an invocation waits for it fails the
// invocation, for a caller on its own server and for one on another server.
func TestClientResultDisconnect(t *testing.T) {
	t.Parallel()
	for _, remote := range []bool{false, true} {
		name := "same server"
		if remote {
			name = "other server"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t)
			// The victim's app server hands out the proxy as the client endpoint, so the victim's
			// traffic from the service can be held and its connection reset.
			proxy := startProxy(t, c.svc.Addr)
			cs := strings.TrimSuffix(c.svc.ConnectionString(), ";") + ";ClientEndpoint=http://" + proxy.Addr() + ";"
			host := c.startApp("app-v", lcAppOptions{sticky: auth.StickyPreferred, connString: cs})
			caller := host
			if remote {
				caller = c.startApp("app-b", lcAppOptions{sticky: auth.StickyPreferred})
			}
			d := jsclient.Start(t)
			id := lcConnect(t, d, c, "victim", "app-v", jsclient.ConnectOptions{})
			if err := d.HandleResult(ctxT(t), "victim", "add", 1); err != nil {
				t.Fatal(err)
			}
			proxy.Hold()
			res := make(chan error, 1)
			ctx := ctxT(t)
			go func() {
				_, err := appserver.InvokeClient[int](ctx, caller.hub, id, "add", 1, 2)
				res <- err
			}()
			eventually(t, "the invocation reaches the victim's connection", func() bool { return proxy.HeldBytes() > 0 })
			select {
			case err := <-res:
				t.Fatalf("InvokeClient returned before the disconnect: %v", err)
			default:
			}
			proxy.Kill()
			select {
			case err := <-res:
				// An ErrorCompletion from the service (or, on the same server, the SDK's own
				// "Connection '<id>' is disconnected.") fails the invocation.
				var he *appserver.HubError
				if !errors.As(err, &he) {
					t.Fatalf("error = %v, want a HubError (ErrorCompletion)", err)
				}
				t.Logf("the caller got: %v", he)
			case <-time.After(10 * time.Second):
				t.Fatal("InvokeClient still waits after the client disconnected")
			}
		})
	}
}
