package servertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

// Instance is a running test server.
type Instance struct {
	Server   *server.Server
	Addr     string // host:port
	URL      string // http://127.0.0.1:port (https:// when cfg.TLSCertFile is set)
	Key      string // primary key of the default instance
	AdminURL string // http://127.0.0.1:port of the admin listener; "" unless cfg.AdminListen was set

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// Stop shuts the server down gracefully and returns Serve's result. It is idempotent and safe to
// call from any goroutine; t.Cleanup calls it too.
func (i *Instance) Stop() error {
	i.stopOnce.Do(func() {
		i.cancel()
		select {
		case i.stopErr = <-i.done:
		case <-time.After(30 * time.Second):
			i.stopErr = errors.New("servertest: server did not stop within 30s")
		}
	})
	return i.stopErr
}

// ConnectionString is the string an app server uses to reach this instance.
func (i *Instance) ConnectionString() string {
	_, port, _ := net.SplitHostPort(i.Addr)
	var p int
	fmt.Sscanf(port, "%d", &p)
	scheme := "http"
	if i.Server.TLSEnabled() {
		scheme = "https"
	}
	return auth.FormatConnectionString(scheme+"://127.0.0.1", p, i.Key)
}

// Start runs a server with cfg (Listen is replaced by 127.0.0.1:0) until the test ends. A
// non-empty cfg.AdminListen (any value, e.g. "on") starts the admin listener on 127.0.0.1:0 too,
// at AdminURL. A zero cfg.DrainWindow closes every client at once on Stop (not the server's 5 s
// default). Set SIGNALRD_TEST_LOG=1 to see the server's logs.
func Start(t testing.TB, cfg server.Config) *Instance {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = -1 // tests stop at once unless they test the drain
	}
	if cfg.AdminListen != "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	if cfg.Logger == nil && os.Getenv("SIGNALRD_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	adminURL := ""
	if cfg.AdminListen != "" {
		a, err := srv.ListenAdmin()
		if err != nil {
			t.Fatalf("servertest: %v", err)
		}
		adminURL = "http://" + a.String()
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatalf("servertest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	key := server.DevAccessKey
	if len(cfg.Instances) > 0 && cfg.Instances[0].PrimaryKey != "" {
		key = cfg.Instances[0].PrimaryKey
	}
	addr := l.Addr().String()
	scheme := "http"
	if srv.TLSEnabled() {
		scheme = "https"
	}
	inst := &Instance{Server: srv, Addr: addr, URL: scheme + "://" + addr, Key: key, AdminURL: adminURL, cancel: cancel, done: done}
	t.Cleanup(func() {
		if err := inst.Stop(); err != nil {
			t.Errorf("servertest: serve: %v", err)
		}
	})
	return inst
}
