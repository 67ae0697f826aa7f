package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminFlags checks --admin-listen and --pprof from flags, environment and the config file.
func TestAdminFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signalrd.yaml")
	if err := os.WriteFile(file, []byte("admin-listen: 127.0.0.1:9101\npprof: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		flags     map[string]string
		env       map[string]string
		wantAddr  string
		wantPprof bool
	}{
		{"default", nil, nil, "", false},
		{"flags", map[string]string{"admin-listen": "127.0.0.1:9100", "pprof": "true"}, nil, "127.0.0.1:9100", true},
		{"env", nil, map[string]string{"SIGNALRD_ADMIN_LISTEN": "127.0.0.1:9102", "SIGNALRD_PPROF": "true"}, "127.0.0.1:9102", true},
		{"file", map[string]string{"config": file}, nil, "127.0.0.1:9101", true},
		{"flag beats file", map[string]string{"config": file, "admin-listen": "127.0.0.1:9103"}, nil, "127.0.0.1:9103", true},
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
			if cfg.AdminListen != tc.wantAddr || cfg.EnablePprof != tc.wantPprof {
				t.Fatalf("AdminListen %q EnablePprof %v, want %q %v", cfg.AdminListen, cfg.EnablePprof, tc.wantAddr, tc.wantPprof)
			}
		})
	}
	// pprof needs the admin listener.
	cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
	_ = cmd.Flags().Set("pprof", "true")
	fc, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.toServerConfig(nil); err == nil || !strings.Contains(err.Error(), "admin listen") {
		t.Fatalf("--pprof without --admin-listen: err = %v", err)
	}
}
