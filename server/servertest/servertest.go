package servertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

// Instance is a running test server.
type Instance struct {
	Server *server.Server
	Addr   string // host:port
	URL    string // http://127.0.0.1:port
	Key    string // primary key of the default instance
}

// ConnectionString is the string an app server uses to reach this instance.
func (i *Instance) ConnectionString() string {
	_, port, _ := net.SplitHostPort(i.Addr)
	var p int
	fmt.Sscanf(port, "%d", &p)
	return auth.FormatConnectionString("http://127.0.0.1", p, i.Key)
}

// Start runs a server with cfg (Listen is replaced by 127.0.0.1:0) until the test ends.
// Set SIGNALRD_TEST_LOG=1 to see the server's logs.
func Start(t testing.TB, cfg server.Config) *Instance {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Logger == nil && os.Getenv("SIGNALRD_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatalf("servertest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("servertest: serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("servertest: server did not stop within 30s")
		}
	})
	key := server.DevAccessKey
	if len(cfg.Instances) > 0 && cfg.Instances[0].PrimaryKey != "" {
		key = cfg.Instances[0].PrimaryKey
	}
	addr := l.Addr().String()
	return &Instance{Server: srv, Addr: addr, URL: "http://" + addr, Key: key}
}
