package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

func TestDisplayAddr(t *testing.T) {
	t.Parallel()
	tests := []struct{ bound, requested, want string }{
		{"127.0.0.1:5000", "localhost:5000", "localhost:5000"},
		{"127.0.0.1:41234", "localhost:0", "localhost:41234"},
		{"[::]:5000", ":5000", "localhost:5000"},
		{"0.0.0.0:5000", "0.0.0.0:5000", "localhost:5000"},
		{"10.0.0.2:5000", "10.0.0.2:5000", "10.0.0.2:5000"},
	}
	for _, tc := range tests {
		t.Run(tc.requested, func(t *testing.T) {
			t.Parallel()
			bound, err := net.ResolveTCPAddr("tcp", tc.bound)
			if err != nil {
				t.Fatal(err)
			}
			if got := displayAddr(bound, tc.requested); got != tc.want {
				t.Fatalf("displayAddr(%s, %s) = %s, want %s", tc.bound, tc.requested, got, tc.want)
			}
		})
	}
}

func TestRunArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--listen", "127.0.0.1:0", "--connection-string", "Endpoint=x"}, "is signalrd running?"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), tc.args, func(string) string { return "" }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestRunServesChat starts the command against an in-process signalrd (its connection string
// from the environment variable) and fetches the page from the URL it prints.
func TestRunServesChat(t *testing.T) {
	t.Parallel()
	svc := servertest.Start(t, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := func(k string) string {
		if k == "SIGNALRD_CONNECTION_STRING" {
			return svc.ConnectionString()
		}
		return ""
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0"}, env, pw, io.Discard)
		_ = pw.Close()
	}()

	lines := bufio.NewScanner(pr)
	var url string
	for lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) > 1 && f[0] == "Open" {
			url = strings.TrimSuffix(f[1], "/?user=alice")
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatalf("no URL printed; run: %v", <-done)
	}
	resp, err := http.Get(url + "/?user=alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "window.chatState") {
		t.Fatalf("GET / = %d %.80s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
