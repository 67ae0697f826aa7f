package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/server/upstream"
)

func TestUpstreamInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "dir")
	want := filepath.Join(dir, "settings.json")

	out, err := run(t, context.Background(), "upstream", "init", "-o", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != want {
		t.Fatalf("printed %q, want %q", out, want)
	}
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(upstream.StarterSettings()) {
		t.Fatalf("wrote %s", data)
	}
	if _, err := upstream.ParseSettings(data); err != nil {
		t.Fatal(err)
	}

	// An existing file is kept unless --force.
	if err := os.WriteFile(want, []byte(`{"Templates":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, context.Background(), "upstream", "init", "--output", dir); err == nil || !strings.Contains(err.Error(), "already exists (use --force") {
		t.Fatalf("overwrite without --force: %v", err)
	}
	if data, _ := os.ReadFile(want); string(data) != `{"Templates":[]}` {
		t.Fatalf("file changed: %s", data)
	}
	if _, err := run(t, context.Background(), "upstream", "init", "-o", dir, "--force"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(want); string(data) != string(upstream.StarterSettings()) {
		t.Fatalf("--force did not overwrite: %s", data)
	}
	if _, err := run(t, context.Background(), "upstream", "init", "extra"); err == nil {
		t.Fatal("positional argument accepted")
	}
}

func TestUpstreamList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := run(t, context.Background(), "upstream", "init", "-o", dir); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, context.Background(), "upstream", "list", "-c", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "[0] http://localhost:7071/runtime/webhooks/signalr (hub: '*', category: '*', event: '*')") {
		t.Fatalf("list printed %q", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("Templates:\n  - UrlTemplate: nope\n    CategoryPattern: message\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, context.Background(), "upstream", "list", "-c", bad)
	if err == nil || !strings.Contains(err.Error(), `"nope" must be an absolute`) || !strings.Contains(err.Error(), `unknown category "message"`) {
		t.Fatalf("list of a broken file: %v", err)
	}
}
