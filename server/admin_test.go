package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// adminGet fetches an admin endpoint; the body is returned whole.
func adminGet(t *testing.T, ts *servertest.Instance, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(ts.AdminURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads /metrics in the Prometheus text format, as a scraper does.
func scrape(t *testing.T, ts *servertest.Instance) []sample {
	t.Helper()
	status, body := adminGet(t, ts, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %q", status, body)
	}
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable metrics line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[lp[1]] = lp[2]
		}
		out = append(out, s)
	}
	return out
}

// find returns the sample of name whose labels are exactly labels.
func find(samples []sample, name string, labels map[string]string) (float64, bool) {
next:
	for _, s := range samples {
		if s.name != name || len(s.labels) != len(labels) {
			continue
		}
		for k, v := range labels {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

func labelString(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// metricCheck is one expectation on a scraped series.
type metricCheck struct {
	name   string
	labels map[string]string
	ok     func(float64) bool
	want   string
}

func eq(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
func atLeast(n float64) func(float64) bool {
	return func(v float64) bool { return v >= n }
}

// expectMetrics scrapes until every check holds (counters of written batches are bumped right
// after the write, so the reader may be a moment ahead of them).
func expectMetrics(t *testing.T, ts *servertest.Instance, checks []metricCheck) {
	t.Helper()
	var failed []string
	deadline := time.Now().Add(waitLimit)
	for {
		samples := scrape(t, ts)
		failed = failed[:0]
		for _, c := range checks {
			v, found := find(samples, c.name, c.labels)
			if !found || !c.ok(v) {
				failed = append(failed, fmt.Sprintf("%s%s = %v (found %v), want %s", c.name, labelString(c.labels), v, found, c.want))
			}
		}
		if len(failed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n  %s", strings.Join(failed, "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminMetrics(t *testing.T) {
	t.Parallel()
	// MaxPollInterval: the long-polling client below does not poll again while the test runs.
	ts := servertest.Start(t, server.Config{AdminListen: "on", Defaults: server.Settings{OutboxBytes: 64 << 10, MaxPollInterval: time.Minute}})
	app := dialApp(t, ts, "chat", "s1")

	// A WebSocket client that sends one message and receives one.
	c1, _ := connect(t, ts, app, "chat", "u1", "json")
	inv := `{"type":1,"target":"echo","arguments":["hi"]}` + "\x1e"
	if err := c1.ws.Write(t.Context(), websocket.MessageText, []byte(inv)); err != nil {
		t.Fatal(err)
	}
	if cd := expect[svcproto.ConnectionData](t, app); string(cd.Payload) != inv {
		t.Fatalf("forwarded %q", cd.Payload)
	}
	app.send(svcproto.ConnectionData{ConnectionID: c1.id, Payload: []byte(inv)})
	if got := string(c1.read()); got != inv {
		t.Fatalf("client read %q", got)
	}

	// A long-polling client.
	lp := newHTTPPeer(t, ts, "chat", clientToken(t, ts, "chat", "u2"))
	lp.startLongPolling(app)

	// REST: one send, one request matching no operation.
	if r := doREST(t, ts, restCase{method: "POST", path: "/api/hubs/chat/:send", body: `{"target":"m","arguments":[1]}`}); r.status != http.StatusAccepted {
		t.Fatalf("REST send: %d %s", r.status, r.body)
	}
	if r := doREST(t, ts, restCase{method: "POST", path: "/api/nothing/here"}); r.status != http.StatusNotFound {
		t.Fatalf("REST unmatched: %d %s", r.status, r.body)
	}
	if r := doREST(t, ts, restCase{method: "PATCH", path: "/api/hubs/chat/users/u1"}); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("REST bad method: %d %s", r.status, r.body)
	}

	// A slow consumer: a second WebSocket client that never reads.
	c2, _ := connect(t, ts, app, "chat", "u3", "json")
	chunk := []byte(`{"type":1,"target":"m","arguments":["` + strings.Repeat("x", 16<<10) + `"]}` + "\x1e")
	closed := false
	for i := 0; !closed && i < 10000; i++ {
		app.send(svcproto.ConnectionData{ConnectionID: c2.id, Payload: chunk})
		for drained := false; !drained && !closed; {
			select {
			case m := <-app.msgs:
				if cc, ok := m.(svcproto.CloseConnection); ok && cc.ConnectionID == c2.id {
					closed = true
				}
			default:
				drained = true
			}
		}
	}
	if !closed {
		t.Fatal("slow consumer never closed")
	}

	inst := func(kv ...string) map[string]string {
		m := map[string]string{"instance": "default"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	expectMetrics(t, ts, []metricCheck{
		{"signalrd_client_connections", inst("transport", "WebSockets", "protocol", "json"), eq(1), "1 (c1; c2 was closed)"},
		{"signalrd_client_connections", inst("transport", "LongPolling", "protocol", "json"), eq(1), "1"},
		{"signalrd_client_opens_total", inst("transport", "WebSockets"), eq(2), "2"},
		{"signalrd_client_opens_total", inst("transport", "LongPolling"), eq(1), "1"},
		{"signalrd_client_closes_total", inst("reason", "slow_consumer"), eq(1), "1"},
		{"signalrd_server_sockets", inst(), eq(1), "1"},
		{"signalrd_messages_received_total", inst("from", "client"), atLeast(1), ">= 1"},
		{"signalrd_bytes_received_total", inst("from", "client"), atLeast(float64(len(inv))), ">= one invocation"},
		{"signalrd_messages_received_total", inst("from", "server"), atLeast(4), ">= 4"},
		{"signalrd_bytes_received_total", inst("from", "server"), atLeast(64 << 10), ">= the slow consumer's outbox"},
		{"signalrd_messages_sent_total", inst("to", "client"), atLeast(4), ">= 4 (handshakes, echo, REST broadcast)"},
		{"signalrd_bytes_sent_total", inst("to", "client"), atLeast(float64(len(inv))), ">= one invocation"},
		{"signalrd_messages_sent_total", inst("to", "server"), atLeast(7), ">= 7 (opens, handshakes, data, close)"},
		{"signalrd_bytes_sent_total", inst("to", "server"), atLeast(1), "> 0"},
		{"signalrd_rest_requests_total", inst("operation", "POST /hubs/{hub}/:send", "status", "2xx"), eq(1), "1"},
		{"signalrd_rest_requests_total", inst("operation", "unmatched", "status", "4xx"), eq(1), "1"},
		{"signalrd_rest_requests_total", inst("operation", "method_not_allowed", "status", "4xx"), eq(1), "1"},
		{"signalrd_stateful_reconnects_total", inst(), eq(0), "0"},
		{"signalrd_client_migrations_total", inst(), eq(0), "0"},
	})
	// Every label value comes from a fixed set: no connection ids, users, hubs or paths.
	for _, s := range scrape(t, ts) {
		if !strings.HasPrefix(s.name, "signalrd_") {
			continue
		}
		for k, v := range s.labels {
			if strings.Contains(v, c1.id) || strings.Contains(v, "u1") || strings.Contains(v, "chat") || strings.Contains(v, "nothing") {
				t.Errorf("%s: label %s=%q is unbounded", s.name, k, v)
			}
		}
	}
}

func TestAdminUpstreamMetrics(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(up.Close)
	settings := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(settings, []byte(`{"UpstreamSettings":{"Templates":[{"UrlTemplate":"`+up.URL+`/{hub}/{category}/{event}","EventPattern":"*","HubPattern":"*","CategoryPattern":"*"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := servertest.Start(t, server.Config{AdminListen: "on", Defaults: server.Settings{Mode: server.ModeServerless, UpstreamFile: settings}})
	c := dialClient(t, ts, "solo", "u1", "json")
	if got := string(c.read()); got != "{}\x1e" {
		t.Fatalf("handshake response %q", got)
	}
	expectMetrics(t, ts, []metricCheck{
		{"signalrd_upstream_calls_total", map[string]string{"instance": "default"}, atLeast(1), ">= 1 (connected event)"},
		{"signalrd_upstream_failures_total", map[string]string{"instance": "default"}, atLeast(1), ">= 1 (the upstream answers 500)"},
		{"signalrd_upstream_dropped_total", map[string]string{"instance": "default"}, eq(0), "0"},
		{"signalrd_upstream_unmatched_total", map[string]string{"instance": "default"}, eq(0), "0"},
		{"signalrd_client_opens_total", map[string]string{"instance": "default", "transport": "WebSockets"}, eq(1), "1"},
	})
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		pprof     bool
		wantPprof int
	}{
		{"without pprof", false, http.StatusNotFound},
		{"with pprof", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := servertest.Start(t, server.Config{AdminListen: "on", EnablePprof: tc.pprof})
			for _, p := range []struct {
				path   string
				status int
			}{
				{"/healthz", http.StatusOK},
				{"/readyz", http.StatusOK},
				{"/metrics", http.StatusOK},
				{"/debug/pprof/", tc.wantPprof},
				{"/debug/pprof/cmdline", tc.wantPprof},
				{"/nothing", http.StatusNotFound},
			} {
				if got, body := adminGet(t, ts, p.path); got != p.status {
					t.Errorf("GET %s = %d %q, want %d", p.path, got, body, p.status)
				}
			}
			// The service listener serves none of them.
			for _, path := range []string{"/metrics", "/debug/pprof/"} {
				resp, err := http.Get(ts.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("service listener GET %s = %d, want 404", path, resp.StatusCode)
				}
			}
		})
	}
}

func TestAdminConfig(t *testing.T) {
	t.Parallel()
	if _, err := server.New(server.Config{EnablePprof: true}); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("pprof without an admin listener: err = %v", err)
	}
	ts := servertest.Start(t, server.Config{})
	if ts.AdminURL != "" || ts.Server.AdminAddr() != nil {
		t.Fatalf("admin listener started without AdminListen: %q", ts.AdminURL)
	}
}

func TestReadyzDuringShutdown(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{AdminListen: "on", ShutdownTimeout: 30 * time.Second})
	if st, _ := adminGet(t, ts, "/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz before shutdown = %d", st)
	}
	// Hold the graceful shutdown open with a REST request whose body never comes. The server's
	// "100 Continue" proves the handler is already reading it, so shutdown must wait for it.
	pq := "/api/hubs/chat/:send?api-version=2022-06-01"
	hold, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	fmt.Fprintf(hold, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n", pq, ts.Addr, sdkToken(t, ts.Key, pq))
	_ = hold.SetReadDeadline(time.Now().Add(waitLimit))
	if line, err := bufio.NewReader(hold).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("held request: got %q, %v; want 100 Continue", line, err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	eventually(t, waitLimit, "/readyz answers 503 once shutdown began", func() bool {
		st, _ := adminGet(t, ts, "/readyz")
		return st == http.StatusServiceUnavailable
	})
	// Liveness and metrics stay up during the drain.
	if st, _ := adminGet(t, ts, "/healthz"); st != http.StatusOK {
		t.Errorf("/healthz during shutdown = %d, want 200", st)
	}
	if st, _ := adminGet(t, ts, "/metrics"); st != http.StatusOK {
		t.Errorf("/metrics during shutdown = %d, want 200", st)
	}
	select {
	case err := <-stopped:
		t.Fatalf("shutdown finished while a request was in flight: %v", err)
	default:
	}
	hold.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("shutdown did not finish after the request ended")
	}
	if resp, err := http.Get(ts.AdminURL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("admin listener still answers after shutdown: %d", resp.StatusCode)
	}
}
