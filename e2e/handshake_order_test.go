package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/server"
)

// TestBroadcastNeverPrecedesHandshakeResponse connects official clients while the app server
// broadcasts without pause. The hub handshake response must be the first thing a client gets:
// the JS client fails start() with "Expected a handshake response from the server." when a
// broadcast overtakes it. (In ASP.NET Core a connection joins "All" only after its handshake.)
func TestBroadcastNeverPrecedesHandshakeResponse(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, server.Config{})
			d := jsclient.Start(t)
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				all := s.app.Hub("chat").Clients.All()
				// Paced so node is not buried: the race window is the gap between a client's
				// OpenConnection and its handshake response, which a broadcast per millisecond hits.
				for ctx.Err() == nil {
					_ = all.Send(ctx, "message", "noise")
					time.Sleep(time.Millisecond)
				}
			}()
			defer wg.Wait()
			defer stop()
			const n = 10
			failed := 0
			for i := range n {
				name := "c" + string(rune('0'+i))
				if _, err := d.Connect(ctxT(t), name, jsclient.ConnectOptions{
					URL: s.AppURL + "/chat", Protocol: v.protocol, Transport: v.transport,
					LogLevel: "none", // no handler: the noise is dropped by the client, not logged
				}); err != nil {
					failed++
					t.Logf("connect %s: %v", name, err)
				}
			}
			if failed > 0 {
				t.Fatalf("%d of %d clients failed to start while the app broadcast", failed, n)
			}
		})
	}
}
