package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
)

func run(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestConnStr(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", []string{"connstr"}, nil, "Endpoint=http://localhost;Port=8888;AccessKey=" + server.DevAccessKey + ";Version=1.0;\n"},
		{"flags", []string{"connstr", "--listen", "127.0.0.1:9000", "--access-key", "k1"}, nil, "Endpoint=http://localhost;Port=9000;AccessKey=k1;Version=1.0;\n"},
		{"env", []string{"connstr"}, map[string]string{"SIGNALRD_ACCESS_KEY": "envkey", "SIGNALRD_LISTEN": "localhost:7000"}, "Endpoint=http://localhost;Port=7000;AccessKey=envkey;Version=1.0;\n"},
		{"flag beats env", []string{"connstr", "--access-key", "flagkey"}, map[string]string{"SIGNALRD_ACCESS_KEY": "envkey"}, "Endpoint=http://localhost;Port=8888;AccessKey=flagkey;Version=1.0;\n"},
		{"endpoint", []string{"connstr", "--endpoint", "https://sr.example.com/", "--listen", "0.0.0.0:443", "--access-key", "k"}, nil, "Endpoint=https://sr.example.com;Port=443;AccessKey=k;Version=1.0;\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := run(t, context.Background(), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if _, err := auth.ParseConnectionString(strings.TrimSpace(got)); err != nil {
				t.Fatalf("printed connection string does not parse: %v", err)
			}
		})
	}
}

func TestDevKeyRefusedOffLoopback(t *testing.T) {
	_, err := run(t, context.Background(), "serve", "--listen", "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "development key") {
		t.Fatalf("err = %v", err)
	}
	// Explicitly allowed, or with a real key, validation passes (connstr validates the same config).
	if _, err := run(t, context.Background(), "connstr", "--listen", "0.0.0.0:0", "--allow-dev-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, context.Background(), "connstr", "--listen", "0.0.0.0:0", "--access-key", "real"); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileInstances(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signalrd.yaml")
	yaml := `
listen: localhost:8123
defaults:
  handshake-timeout: 5s
instances:
  - name: a
    hosts: [a.example]
    primary-key: keyA
  - name: b
    hosts: [b.example]
    default: true
    primary-key: keyB
    settings:
      max-message-size: 1024
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := run(t, context.Background(), "connstr", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if got != "Endpoint=http://localhost;Port=8123;AccessKey=keyB;Version=1.0;\n" {
		t.Fatalf("got %q", got)
	}
	fc, err := loadConfigForTest(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.toServerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Instances) != 2 || cfg.Defaults.HandshakeTimeout != 5*time.Second || cfg.Instances[1].Settings.MaxMessageSize != 1024 {
		t.Fatalf("config %+v", cfg)
	}
	// Invalid: two defaults, missing key.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("instances:\n  - name: a\n    default: true\n  - name: b\n    default: true\n    primary-key: k\n"), 0o600)
	if _, err := run(t, context.Background(), "connstr", "--config", bad); err == nil ||
		!strings.Contains(err.Error(), "at most one instance") || !strings.Contains(err.Error(), "access key is required") {
		t.Fatalf("err = %v", err)
	}
}

// loadServeFlags merges the configuration `signalrd serve` would see with these flags set.
func loadServeFlags(t *testing.T, flags map[string]string) fileConfig {
	t.Helper()
	cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
	for k, v := range flags {
		if err := cmd.Flags().Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	fc, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

func loadConfigForTest(path string) (fileConfig, error) {
	cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
	_ = cmd.Flags().Set("config", path)
	return loadConfig(cmd.Flags())
}

func TestServePrintsConnectionStringAndServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	cmd := newRootCmd(&out, &bytes.Buffer{})
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	re := regexp.MustCompile(`Endpoint=http://localhost;Port=(\d+);AccessKey=` + server.DevAccessKey + `;Version=1.0;`)
	var port string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		cancel()
		t.Fatalf("no connection string in %q", out.String())
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/api/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTokenCommand(t *testing.T) {
	got, err := run(t, context.Background(), "token", "--hub", "Chat", "--user", "u1")
	if err != nil {
		t.Fatal(err)
	}
	v := &auth.Verifier{Keys: []string{server.DevAccessKey}}
	tok, err := v.Verify(strings.TrimSpace(got), auth.KindClient, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if tok.UserID != "u1" {
		t.Fatalf("user %q", tok.UserID)
	}
	got, err = run(t, context.Background(), "token", "--hub", "chat", "--kind", "server", "--user", "srv1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(strings.TrimSpace(got), auth.KindServer, "chat"); err != nil {
		t.Fatal(err)
	}
}

func TestModeAndUpstreamFlags(t *testing.T) {
	cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
	_ = cmd.Flags().Set("mode", "serverless")
	_ = cmd.Flags().Set("upstream-file", "/tmp/settings.json")
	fc, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if fc.Defaults.Mode != "serverless" || fc.Defaults.UpstreamFile != "/tmp/settings.json" {
		t.Fatalf("defaults %+v", fc.Defaults)
	}
	t.Setenv("SIGNALRD_MODE", "Default")
	fc, err = loadConfig(newServeCmd(&bytes.Buffer{}, &bytes.Buffer{}).Flags())
	if err != nil || fc.Defaults.Mode != "Default" {
		t.Fatalf("env mode: %+v %v", fc.Defaults, err)
	}
	if _, err := (fileConfig{Defaults: fileSettings{Mode: "weird"}}).toServerConfig(nil); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("bad mode accepted: %v", err)
	}
}
