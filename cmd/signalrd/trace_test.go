package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTraceTokenSources checks --trace-token, SIGNALRD_TRACE_TOKEN and trace-token in the file.
func TestTraceTokenSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "signalrd.yaml")
	if err := os.WriteFile(file, []byte("admin-listen: 127.0.0.1:9101\ntrace-token: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags map[string]string
		env   map[string]string
		want  string
	}{
		{"default", nil, nil, ""},
		{"flag", map[string]string{"trace-token": "from-flag"}, nil, "from-flag"},
		{"env", nil, map[string]string{"SIGNALRD_TRACE_TOKEN": "from-env"}, "from-env"},
		{"file", map[string]string{"config": file}, nil, "from-file"},
		{"flag beats file", map[string]string{"config": file, "trace-token": "from-flag"}, nil, "from-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fc := loadServeFlags(t, tc.flags)
			if fc.TraceToken != tc.want {
				t.Fatalf("TraceToken %q, want %q", fc.TraceToken, tc.want)
			}
		})
	}
}
