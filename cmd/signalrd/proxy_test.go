package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTrustedProxiesConfig checks trusted-proxies from the flag, the environment and the file,
// and that a bad entry is refused.
func TestTrustedProxiesConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "signalrd.yaml")
	if err := os.WriteFile(file, []byte("trusted-proxies: [10.0.0.0/8, 192.0.2.7]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("trusted-proxies: [not-an-ip]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flags   map[string]string
		want    []string
		wantErr string
	}{
		{"default", nil, nil, ""},
		{"flag", map[string]string{"trusted-proxies": "127.0.0.1,::1"}, []string{"127.0.0.1", "::1"}, ""},
		{"file", map[string]string{"config": file}, []string{"10.0.0.0/8", "192.0.2.7"}, ""},
		{"flag beats file", map[string]string{"config": file, "trusted-proxies": "172.16.0.0/12"}, []string{"172.16.0.0/12"}, ""},
		{"bad entry", map[string]string{"config": bad}, nil, "not-an-ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := loadServeFlags(t, tc.flags)
			cfg, err := fc.toServerConfig(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.TrustedProxies, tc.want) {
				t.Fatalf("TrustedProxies = %q, want %q", cfg.TrustedProxies, tc.want)
			}
		})
	}
}

// TestTrustedProxiesEnv reads SIGNALRD_TRUSTED_PROXIES (not parallel: it sets the environment).
func TestTrustedProxiesEnv(t *testing.T) {
	t.Setenv("SIGNALRD_TRUSTED_PROXIES", "10.1.0.0/16,10.2.0.1")
	cmd := newServeCmd(&bytes.Buffer{}, &bytes.Buffer{})
	fc, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.toServerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.1.0.0/16", "10.2.0.1"}; !slices.Equal(cfg.TrustedProxies, want) {
		t.Fatalf("TrustedProxies = %q, want %q", cfg.TrustedProxies, want)
	}
}
