package e2e

import (
	"strings"
	"testing"

	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
)

// TestGoClientDefaultMode drives the Go client through negotiate redirect, invocations, group
// fan-out and a large message, in both protocols.
func TestGoClientDefaultMode(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, server.Config{})
			ctx := ctxT(t)
			dial := func(user string) (*client.Conn, chan string) {
				c, err := client.Dial(ctx, client.Options{URL: s.AppURL + "/chat?user=" + user, Protocol: proto})
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				t.Cleanup(func() { _ = c.Close(ctx) })
				got := make(chan string, 16)
				c.On("message", func(args []hubproto.Raw) {
					var s string
					_ = c.Unmarshal(args[0], &s)
					got <- s
				})
				return c, got
			}
			c1, got1 := dial("carol")
			c2, got2 := dial("dave")
			var who string
			if err := c1.InvokeInto(ctx, &who, "whoami"); err != nil || who != "carol" {
				t.Fatalf("whoami = %q %v", who, err)
			}
			if err := c2.InvokeInto(ctx, nil, "join", "g"); err != nil {
				t.Fatal(err)
			}
			if err := c1.InvokeInto(ctx, nil, "sendGroup", "g", "hello g"); err != nil {
				t.Fatal(err)
			}
			if m := <-got2; m != "hello g" {
				t.Fatalf("got %q", m)
			}
			// A message close to the 1 MB mark crosses the service in both directions.
			big := strings.Repeat("x", 1<<20)
			var n int
			if err := c1.InvokeInto(ctx, &n, "length", big); err != nil || n != len(big) {
				t.Fatalf("length = %d %v", n, err)
			}
			if err := c2.InvokeInto(ctx, nil, "broadcast", big); err != nil {
				t.Fatal(err)
			}
			if m := <-got1; m != big {
				t.Fatalf("big broadcast: got %d bytes", len(m))
			}
			if m := <-got2; m != big {
				t.Fatalf("big broadcast: got %d bytes", len(m))
			}
		})
	}
}
