package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// TestStatefulReconnectSurvivesCut cuts the client's TCP connection in the middle of a stream in
// both directions; the official client reconnects with the same connection token and nothing is
// lost or duplicated.
func TestStatefulReconnectSurvivesCut(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			svc := servertest.Start(t, server.Config{})
			proxy := startProxy(t, svc.Addr)
			// Clients reach the service through the proxy (ClientEndpoint), the app server directly.
			cs := strings.TrimSuffix(svc.ConnectionString(), ";") + ";ClientEndpoint=http://" + proxy.Addr() + ";"
			if _, err := auth.ParseConnectionString(cs); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []int
			hub := &appserver.Hub{}
			hub.On("count", func(c *appserver.Context, n int) {
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
			})
			hub.On("stream", func(c *appserver.Context, n int) error {
				for i := range n {
					if err := c.Clients.Caller().Send(c, "seq", i); err != nil {
						return err
					}
					if i%10 == 9 {
						time.Sleep(time.Millisecond) // keep the stream going while the test cuts it
					}
				}
				return nil
			})
			app, err := appserver.New(appserver.Options{ConnectionString: cs, AllowStatefulReconnects: true})
			if err != nil {
				t.Fatal(err)
			}
			app.MapHub("chat", hub)
			if err := app.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = app.Close() })
			if err := app.Ready(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.Handle("/chat/negotiate", app.NegotiateHandler("chat", appserver.NegotiateOptions{}))
			hs := httptest.NewServer(mux)
			t.Cleanup(hs.Close)

			d := jsclient.Start(t)
			ctx := ctxT(t)
			if _, err := d.Connect(ctx, "c", jsclient.ConnectOptions{
				URL: hs.URL + "/chat", Protocol: proto, Transport: "WebSockets",
				StatefulReconnect: true, Handlers: []string{"seq"},
			}); err != nil {
				t.Fatal(err)
			}
			const n = 500
			// Server -> client: a burst, cut in the middle.
			if err := d.Send(ctx, "c", "stream", n); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WaitEvent(ctx, jsclient.IsMessage("c", "seq")); err != nil {
				t.Fatal(err)
			}
			if proxy.Cut() == 0 {
				t.Fatal("nothing to cut")
			}
			if got := len(d.Messages("c", "seq")); got >= n {
				t.Fatalf("the stream ended before the cut (%d messages)", got)
			}
			for i := 1; i < n; i++ {
				ev, err := d.WaitEvent(ctx, jsclient.IsMessage("c", "seq"))
				if err != nil {
					t.Fatalf("after %d messages: %v", i, err)
				}
				if string(ev.Args[0]) != fmt.Sprint(i) {
					t.Fatalf("message %d was %s", i, ev.Args[0])
				}
			}
			// Client -> server: sends interleaved with cuts.
			for i := range n {
				if i == n/3 || i == 2*n/3 {
					proxy.Cut()
				}
				if err := d.Send(ctx, "c", "count", i); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			eventually(t, "every count", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) >= n
			})
			time.Sleep(200 * time.Millisecond) // a duplicate would arrive right behind
			mu.Lock()
			defer mu.Unlock()
			if len(got) != n {
				t.Fatalf("app got %d messages, want %d", len(got), n)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("app message %d was %d", i, v)
				}
			}
			if n := reconnects(t, svc); n < 3 {
				t.Fatalf("%v stateful reconnects, want 3 (one per cut)", n)
			}
			if st, _ := d.State(ctx, "c"); st != "Connected" {
				t.Fatalf("state %s", st)
			}
			if ev := d.Messages("c", "seq"); len(ev) != n {
				t.Fatalf("client got %d seq messages", len(ev))
			}
		})
	}
}

func reconnects(t *testing.T, svc *servertest.Instance) float64 {
	t.Helper()
	mfs, err := svc.Server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "signalrd_stateful_reconnects_total" {
			total := 0.0
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			return total
		}
	}
	return 0
}
