package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/signalrd/signalrd/server"
)

// clusterFields is the scale-out part of a server.Config.
type clusterFields struct {
	Redis, RedisPrefix, NodeID, AdvertiseURL string
	Heartbeat                                time.Duration
}

func clusterOf(cfg server.Config) clusterFields {
	return clusterFields{cfg.Redis, cfg.RedisPrefix, cfg.NodeID, cfg.AdvertiseURL, cfg.Heartbeat}
}

// TestClusterFlags checks --redis, --redis-prefix, --node-id, --advertise-url and --heartbeat
// from flags, the environment and the config file, and that without them the node runs alone.
func TestClusterFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "signalrd.yaml")
	body := "redis: redis://redis.internal:6379/0\nredis-prefix: prod\nnode-id: node-f\n" +
		"advertise-url: http://10.0.0.6:8888\nheartbeat: 3s\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	alone := clusterFields{RedisPrefix: "signalrd", Heartbeat: 2 * time.Second}
	for _, tc := range []struct {
		name  string
		flags map[string]string
		env   map[string]string
		want  clusterFields
	}{
		{"default: alone", nil, nil, alone},
		{"flags", map[string]string{
			"redis": "redis://127.0.0.1:6379", "redis-prefix": "staging", "node-id": "node-a",
			"advertise-url": "http://10.0.0.1:8888", "heartbeat": "500ms",
		}, nil, clusterFields{"redis://127.0.0.1:6379", "staging", "node-a", "http://10.0.0.1:8888", 500 * time.Millisecond}},
		{"env", nil, map[string]string{
			"SIGNALRD_REDIS": "redis-sentinel://s1:26379,s2:26379/mymaster", "SIGNALRD_REDIS_PREFIX": "envp",
			"SIGNALRD_NODE_ID": "node-e", "SIGNALRD_ADVERTISE_URL": "https://node-e.internal:8443", "SIGNALRD_HEARTBEAT": "4s",
		}, clusterFields{"redis-sentinel://s1:26379,s2:26379/mymaster", "envp", "node-e", "https://node-e.internal:8443", 4 * time.Second}},
		{"file", map[string]string{"config": file}, nil,
			clusterFields{"redis://redis.internal:6379/0", "prod", "node-f", "http://10.0.0.6:8888", 3 * time.Second}},
		{"env beats file", map[string]string{"config": file}, map[string]string{"SIGNALRD_NODE_ID": "node-e"},
			clusterFields{"redis://redis.internal:6379/0", "prod", "node-e", "http://10.0.0.6:8888", 3 * time.Second}},
		{"flag beats file", map[string]string{"config": file, "redis": "10.1.1.1:6379", "heartbeat": "1s"}, nil,
			clusterFields{"10.1.1.1:6379", "prod", "node-f", "http://10.0.0.6:8888", time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fc := loadServeFlags(t, tc.flags)
			cfg, err := fc.toServerConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := clusterOf(cfg); got != tc.want {
				t.Fatalf("cluster config %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestClusterConfigRefused: bad cluster settings are refused at startup, each named.
func TestClusterConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		flags map[string]string
		want  string
	}{
		{map[string]string{"node-id": "a|b"}, "node id"},
		{map[string]string{"node-id": "a b"}, "node id"},
		{map[string]string{"advertise-url": "10.0.0.1:8888"}, "advertise URL"},
		{map[string]string{"advertise-url": "ftp://10.0.0.1:8888"}, "advertise URL"},
		{map[string]string{"heartbeat": "-1s"}, "heartbeat"},
		{map[string]string{"redis": "redis://127.0.0.1:6379", "redis-prefix": "a b"}, "prefix"},
	} {
		fc := loadServeFlags(t, tc.flags)
		if _, err := fc.toServerConfig(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming %q", tc.flags, err, tc.want)
		}
	}
	// The same reaches `signalrd serve`, before any Redis is dialled.
	_, err := run(t, t.Context(), "serve", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:6379", "--node-id", "x|y")
	if err == nil || !strings.Contains(err.Error(), "node id") {
		t.Fatalf("serve with a bad node id: err = %v", err)
	}
}

// TestClusterKeysNeedRestart: a reload reports (and does not apply) a change of the cluster
// settings and the log level, and never prints the Redis URL, which may hold a password.
func TestClusterKeysNeedRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signalrd.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("node-id: node-a\n")
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindCommonFlags(fs)
	bindServeFlags(fs)
	if err := fs.Parse([]string{"--config", path, "--listen", "127.0.0.1:0"}); err != nil {
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
	srv, err := server.New(cfg) // no Redis: the node runs alone, as `make run` does
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := newConfigReloader(fs, srv, slog.New(slog.NewTextHandler(&logs, nil)))

	write("node-id: node-b\nredis: redis://:s3cret@127.0.0.1:6379\nheartbeat: 5s\nlog-level: debug\n")
	res, err := r.apply()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"log-level changed from info to debug",
		"node-id changed from node-a to node-b",
		"heartbeat changed from 2s to 5s",
		"redis changed",
	}
	if !slices.Equal(res.RestartRequired, want) {
		t.Fatalf("RestartRequired %q, want %q", res.RestartRequired, want)
	}
	if strings.Contains(logs.String(), "s3cret") || !strings.Contains(logs.String(), "needs a restart") {
		t.Fatalf("logs: %s", logs.String())
	}

	// Back to the running values: nothing to report.
	write("node-id: node-a\n")
	if res, err := r.apply(); err != nil || len(res.RestartRequired) != 0 {
		t.Fatalf("unchanged: %+v %v", res, err)
	}
}
