package jsclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckModules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		installed map[string]string // package → installed version
		wantErr   string
	}{
		{name: "all pinned versions installed", installed: map[string]string{"@microsoft/signalr": "1.2.3", "x": "4.0.0"}},
		{name: "missing", installed: map[string]string{"x": "4.0.0"}, wantErr: "@microsoft/signalr is not installed"},
		{name: "stale", installed: map[string]string{"@microsoft/signalr": "1.2.2", "x": "4.0.0"}, wantErr: "is 1.2.2 but package.json pins 1.2.3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write := func(p, s string) {
				t.Helper()
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(filepath.Join(dir, "package.json"), `{"dependencies":{"@microsoft/signalr":"1.2.3","x":"4.0.0"}}`)
			for name, v := range tc.installed {
				write(filepath.Join(dir, "node_modules", name, "package.json"), `{"version":"`+v+`"}`)
			}
			err := checkModules(dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkModules: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "npm ci") {
				t.Fatalf("err = %v, want %q plus the npm ci advice", err, tc.wantErr)
			}
		})
	}
}

func TestJSDirFindsDriver(t *testing.T) {
	t.Parallel()
	dir, err := jsDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "driver.mjs")); err != nil {
		t.Fatalf("jsDir() = %s: %v", dir, err)
	}
}
