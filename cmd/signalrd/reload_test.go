package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

type reloadOutcome struct {
	res server.ReloadResult
	err error
}

func TestConfigReloadWatchesFileAndSIGHUP(t *testing.T) {
	const (
		keyA = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		keyB = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	)
	dir := t.TempDir()
	path := filepath.Join(dir, "signalrd.yaml")
	write := func(body string) {
		t.Helper()
		// Atomically, as deployment tools do: the watcher must never see a half-written file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("instances:\n  - name: main\n    primary-key: " + keyA + "\n")

	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindCommonFlags(fs)
	bindServeFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfig(fs)
	if err != nil {
		t.Fatal(err)
	}
	if fc.DrainWindow != 5*time.Second || fc.ShutdownTimeout != 10*time.Second {
		t.Fatalf("drain-window %v, shutdown-timeout %v: want the 5s and 10s defaults", fc.DrainWindow, fc.ShutdownTimeout)
	}
	cfg, err := fc.toServerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := make(chan reloadOutcome, 8)
	r := newConfigReloader(fs, srv, slog.New(slog.DiscardHandler))
	r.interval = 10 * time.Millisecond
	r.onReload = func(res server.ReloadResult, err error) { outcomes <- reloadOutcome{res, err} }
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx, hup) }()
	t.Cleanup(func() { cancel(); <-done })
	next := func(what string) reloadOutcome {
		t.Helper()
		select {
		case o := <-outcomes:
			return o
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reload", what)
			return reloadOutcome{}
		}
	}
	negotiateWith := func(key string) int {
		tok, err := auth.IssueToken(key, auth.IssueOptions{Audience: "http://localhost/client/?hub=chat"})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "http://localhost/client/negotiate?hub=chat&negotiateVersion=1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if a, b := negotiateWith(keyA), negotiateWith(keyB); a != http.StatusOK || b != http.StatusUnauthorized {
		t.Fatalf("before: A %d, B %d", a, b)
	}

	// The file changes (the size too, so coarse mtimes cannot hide it): B is the key now.
	write("# rotated\ninstances:\n  - name: main\n    primary-key: " + keyB + "\n    settings:\n      client-timeout: 45s\n")
	if o := next("file change"); o.err != nil || !slices.Equal(o.res.Changed, []string{"main"}) {
		t.Fatalf("reload after the change: %+v", o)
	}
	if a, b := negotiateWith(keyA), negotiateWith(keyB); a != http.StatusUnauthorized || b != http.StatusOK {
		t.Fatalf("after: A %d, B %d; want 401, 200", a, b)
	}

	// A broken file is refused with every problem, and B stays.
	write("instances:\n  - name: main\n    settings:\n      mode: Sometimes\n  - name: main\n")
	o := next("broken file")
	if o.err == nil || !strings.Contains(o.err.Error(), "Sometimes") || !strings.Contains(o.err.Error(), "duplicate") {
		t.Fatalf("broken file: %+v, want both problems", o)
	}
	if b := negotiateWith(keyB); b != http.StatusOK {
		t.Fatalf("after a broken file: B %d", b)
	}

	// SIGHUP re-reads even without a change; a hosts change needs a restart and is reported.
	write("instances:\n  - name: main\n    hosts: [a.example]\n    default: true\n    primary-key: " + keyA + "\n")
	o = next("file change")
	if o.err != nil || len(o.res.RestartRequired) != 1 || !strings.Contains(o.res.RestartRequired[0], "hosts") {
		t.Fatalf("hosts change: %+v", o)
	}
	hup <- nil
	if o := next("SIGHUP"); o.err != nil || len(o.res.Changed) != 0 {
		t.Fatalf("SIGHUP without a change: %+v", o)
	}
	if a := negotiateWith(keyA); a != http.StatusOK {
		t.Fatalf("A after it came back: %d", a)
	}
}

func TestDrainWindowFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration // server.Config.DrainWindow
	}{
		{nil, nil, 5 * time.Second},
		{[]string{"--drain-window", "0"}, nil, -1},
		{[]string{"--drain-window", "2s", "--shutdown-timeout", "30s"}, nil, 2 * time.Second},
		{nil, map[string]string{"SIGNALRD_DRAIN_WINDOW": "3s"}, 3 * time.Second},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			bindCommonFlags(fs)
			bindServeFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			fc, err := loadConfig(fs)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := fc.toServerConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DrainWindow != tc.want {
				t.Fatalf("DrainWindow = %v, want %v", cfg.DrainWindow, tc.want)
			}
		})
	}
}
