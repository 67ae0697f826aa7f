package e2e

import (
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/server"
)

// traceResult is the JSON line e2e/js/trace.mjs prints.
type traceResult struct {
	OK         bool   `json:"ok"`
	Step       string `json:"step"`
	Error      string `json:"error"`
	DurationMs int    `json:"durationMs"`
	Chromium   string `json:"chromium"`
	Screenshot string `json:"screenshot"`
	DOM        *struct {
		Status  string `json:"status"`
		Servers []struct {
			ServerID string `json:"serverId"`
			CID      string `json:"cid"`
		} `json:"servers"`
		Clients []struct {
			ConnectionID string   `json:"connectionId"`
			Cells        []string `json:"cells"`
		} `json:"clients"`
		Events []struct {
			Kind  string   `json:"kind"`
			Cells []string `json:"cells"`
		} `json:"events"`
	} `json:"dom"`
}

// TestTraceBrowser opens the live-trace page in headless Chromium while an app server and a Go
// client are connected, makes the client send messages, and checks the page (DOM rows and a
// screenshot): the app server and its socket, the client, and live message event rows, with the
// payload shown only once asked for.
func TestTraceBrowser(t *testing.T) {
	t.Parallel()
	node, jsDir, chromium := browserPrereqs(t)
	const token = "trace-e2e-token"
	s := startStack(t, server.Config{AdminListen: "on", TraceToken: token})
	ctx := ctxT(t)
	c, err := client.Dial(ctx, client.Options{URL: s.AppURL + "/chat?user=tracy", Protocol: "json"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	// The app server's id, from the snapshot API.
	serverID := traceServerID(t, s.svc.AdminURL+"/trace/snapshot?token="+token)

	payloadText := "trace-payload-" + time.Now().Format("150405.000")
	trigger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ictx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var n int
		if err := c.InvokeInto(ictx, &n, "length", payloadText); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "sent")
	}))
	t.Cleanup(trigger.Close)

	artifacts, err := filepath.Abs(filepath.Join("artifacts", filepath.FromSlash(t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(artifacts)
	spec, _ := json.Marshal(map[string]string{
		"pageURL":      s.svc.AdminURL + "/trace?token=" + token,
		"triggerURL":   trigger.URL,
		"serverId":     serverID,
		"connectionId": c.ConnectionID(),
		"payloadText":  payloadText,
		"artifactsDir": artifacts,
	})
	res, stderr := runTraceScript(t, node, jsDir, chromium, spec)
	if !res.OK {
		t.Logf("trace.mjs stderr:\n%s", stderr)
		t.Fatalf("trace page failed at %q: %s\nartifacts (screenshot, console log): %s", res.Step, res.Error, artifacts)
	}

	// Screenshot check: a real, non-empty PNG of a sensible size.
	f, err := os.Open(res.Screenshot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", res.Screenshot, err)
	}
	if st, err := os.Stat(res.Screenshot); err != nil || st.Size() < 1000 || cfg.Width < 800 || cfg.Height < 400 {
		t.Fatalf("screenshot %s: %dx%d, %v bytes (err %v)", res.Screenshot, cfg.Width, cfg.Height, st, err)
	}

	// DOM check: the rows the page shows.
	d := res.DOM
	if d == nil || d.Status != "live" {
		t.Fatalf("page DOM %+v, want status live", d)
	}
	if len(d.Servers) == 0 || d.Servers[0].ServerID != serverID || d.Servers[0].CID == "" {
		t.Fatalf("server rows %+v, want %s", d.Servers, serverID)
	}
	if len(d.Clients) != 1 || d.Clients[0].ConnectionID != c.ConnectionID() || !strings.Contains(strings.Join(d.Clients[0].Cells, "|"), "tracy|WebSockets|json") {
		t.Fatalf("client rows %+v, want %s (tracy, WebSockets, json)", d.Clients, c.ConnectionID())
	}
	var inbound, outbound, withPayload int
	for _, e := range d.Events {
		row := strings.Join(e.Cells, "|")
		if e.Kind != "message" || !strings.Contains(row, c.ConnectionID()) {
			continue
		}
		switch {
		case strings.Contains(row, "client-to-server"):
			inbound++
		case strings.Contains(row, "server-to-client"):
			outbound++
		}
		if strings.Contains(row, payloadText) {
			withPayload++
		}
	}
	if inbound < 2 || outbound < 1 || withPayload < 1 {
		t.Fatalf("event rows: %d client-to-server, %d server-to-client, %d with the payload; rows %+v", inbound, outbound, withPayload, d.Events)
	}
	if os.Getenv("SIGNALRD_KEEP_ARTIFACTS") == "" {
		_ = os.RemoveAll(artifacts) // kept on failure only
	}
	if testing.Verbose() {
		t.Logf("trace.mjs stderr:\n%s", stderr)
	}
	t.Logf("Chromium %s: trace page checked in %d ms (%d event rows, screenshot %dx%d)", res.Chromium, res.DurationMs, len(d.Events), cfg.Width, cfg.Height)
}

func traceServerID(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap struct {
		Instances []struct {
			Hubs []struct {
				Name    string `json:"name"`
				Servers []struct {
					ID string `json:"id"`
				} `json:"servers"`
			} `json:"hubs"`
		} `json:"instances"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("snapshot: %d %v", resp.StatusCode, err)
	}
	for _, in := range snap.Instances {
		for _, h := range in.Hubs {
			if h.Name == "chat" && len(h.Servers) > 0 {
				return h.Servers[0].ID
			}
		}
	}
	t.Fatalf("snapshot shows no app server of hub chat: %+v", snap)
	return ""
}

// runTraceScript runs trace.mjs with spec and returns its result line and its stderr.
func runTraceScript(t *testing.T, node, jsDir, chromium string, spec []byte) (traceResult, string) {
	t.Helper()
	stdout, stderr, runErr := runNodeScript(node, jsDir, chromium, "trace.mjs", spec)
	var res traceResult
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Logf("trace.mjs stderr:\n%s", stderr)
		t.Fatalf("trace.mjs (%v) printed no result line: %v\nstdout: %s", runErr, err, stdout)
	}
	if res.OK != (runErr == nil) {
		t.Fatalf("trace.mjs ok=%v but exit %v: %s", res.OK, runErr, stdout)
	}
	return res, stderr
}
