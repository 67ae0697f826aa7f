package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signalrd/signalrd/e2e/chatapp"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// browserResult is the JSON line e2e/js/browser.mjs prints.
type browserResult struct {
	OK         bool            `json:"ok"`
	Step       string          `json:"step"`
	Error      string          `json:"error"`
	DurationMs int             `json:"durationMs"`
	Chromium   string          `json:"chromium"`
	Artifacts  []string        `json:"artifacts"`
	States     json.RawMessage `json:"states"`
	Users      []struct {
		User         string `json:"user"`
		ConnectionID string `json:"connectionId"`
		Transport    string `json:"transport"`
		HubProtocol  string `json:"hubProtocol"`
		WebSockets   int    `json:"websockets"`
		EventSources int    `json:"eventsources"`
		Polls        int    `json:"polls"`
	} `json:"users"`
}

// TestBrowserChat runs the chat sample in headless Chromium: two users on the official browser
// bundle connect through the app's negotiate redirect to signalrd with each transport and hub
// protocol (the cross-origin case: page on the app's origin, transports on the service's) and
// exchange messages.
func TestBrowserChat(t *testing.T) {
	t.Parallel()
	node, jsDir, chromium := browserPrereqs(t)

	tests := []struct{ transport, protocol string }{
		{"WebSockets", "json"},
		{"WebSockets", "messagepack"},
		// The official client refuses MessagePack (binary) over Server-Sent Events.
		{"ServerSentEvents", "json"},
		{"LongPolling", "json"},
		{"LongPolling", "messagepack"},
	}
	for _, tc := range tests {
		// Not parallel: one Chromium at a time keeps a 2-core machine responsive.
		t.Run(tc.transport+"/"+tc.protocol, func(t *testing.T) {
			svc := servertest.Start(t, server.Config{})
			var log *slog.Logger
			if os.Getenv("SIGNALRD_TEST_LOG") != "" {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			app, err := chatapp.New(ctxT(t), svc.ConnectionString(), log)
			if err != nil {
				t.Fatalf("chatapp: %v", err)
			}
			t.Cleanup(func() { _ = app.Close() })
			hs := httptest.NewServer(app.Handler())
			t.Cleanup(hs.Close)

			artifacts, err := filepath.Abs(filepath.Join("artifacts", filepath.FromSlash(t.Name())))
			if err != nil {
				t.Fatal(err)
			}
			_ = os.RemoveAll(artifacts)
			spec, _ := json.Marshal(map[string]string{
				"baseURL":      hs.URL,
				"transport":    tc.transport,
				"protocol":     tc.protocol,
				"artifactsDir": artifacts,
			})

			res, stderr := runBrowser(t, node, jsDir, chromium, spec)
			if !res.OK {
				t.Logf("browser.mjs stderr:\n%s", stderr)
				t.Fatalf("browser chat %s/%s failed at %q: %s\npage states: %s\nartifacts (screenshots, console logs): %s",
					tc.transport, tc.protocol, res.Step, res.Error, res.States, artifacts)
			}
			_ = os.RemoveAll(artifacts)
			if len(res.Users) != 2 {
				t.Fatalf("result has %d users, want 2", len(res.Users))
			}
			for _, u := range res.Users {
				if u.Transport != tc.transport || u.HubProtocol != tc.protocol || u.ConnectionID == "" {
					t.Fatalf("%s connected with %s/%s (id %q), want %s/%s", u.User, u.Transport, u.HubProtocol, u.ConnectionID, tc.transport, tc.protocol)
				}
			}
			u := res.Users[0]
			t.Logf("Chromium %s: %s/%s chat passed in %d ms (%s opened %d WebSockets, %d EventSources, %d polls)",
				res.Chromium, tc.transport, tc.protocol, res.DurationMs, u.User, u.WebSockets, u.EventSources, u.Polls)
		})
	}
}

// browserPrereqs finds node, e2e/js with playwright-core installed, and Chromium; it fails the
// test (never skips) when one is missing.
func browserPrereqs(t *testing.T) (node, jsDir, chromium string) {
	t.Helper()
	jsDir, err := filepath.Abs("js")
	if err != nil {
		t.Fatal(err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (>= 20) not found on PATH: %v; install it, then run `make deps`", err)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s (%v); run `make deps` (or `npm ci` there)", jsDir, err)
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium not found at %s (%v); run `make deps` (installs Debian's chromium) or set CHROMIUM to a Chromium binary", chromium, err)
	}
	return node, jsDir, chromium
}

// runBrowser runs browser.mjs with spec and returns its result line and its stderr.
func runBrowser(t *testing.T, node, jsDir, chromium string, spec []byte) (browserResult, string) {
	t.Helper()
	stdout, stderr, runErr := runNodeScript(node, jsDir, chromium, "browser.mjs", spec)
	var res browserResult
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Logf("browser.mjs stderr:\n%s", stderr)
		t.Fatalf("browser.mjs (%v) printed no result line: %v\nstdout: %s", runErr, err, stdout)
	}
	if res.OK && runErr != nil {
		t.Fatalf("browser.mjs reported success but exited with %v", runErr)
	}
	if !res.OK && runErr == nil {
		t.Fatalf("browser.mjs reported failure but exited 0: %s", stdout)
	}
	return res, stderr
}

// runNodeScript runs a Playwright script of e2e/js with a JSON spec against Chromium, bounded to
// two minutes; SIGTERM lets Playwright close Chromium, SIGKILL follows if it does not.
func runNodeScript(node, jsDir, chromium, script string, spec []byte) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, string(spec))
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}
