package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// closeSeen is when a client received its SignalR Close, and what it said.
type closeSeen struct {
	at             time.Time
	allowReconnect bool
	err            string
}

// awaitClose reads c until a Close message (type 7) arrives or the socket ends.
func awaitClose(c *rawClient) <-chan closeSeen {
	ch := make(chan closeSeen, 1)
	go func() {
		defer close(ch)
		for {
			_, b, err := c.ws.Read(context.Background())
			if err != nil {
				return
			}
			for _, rec := range strings.Split(string(b), "\x1e") {
				var m struct {
					Type           int    `json:"type"`
					Error          string `json:"error"`
					AllowReconnect bool   `json:"allowReconnect"`
				}
				if json.Unmarshal([]byte(rec), &m) == nil && m.Type == 7 {
					ch <- closeSeen{at: time.Now(), allowReconnect: m.AllowReconnect, err: m.Error}
					// Keep reading so the WebSocket close handshake completes.
					for {
						if _, _, err := c.ws.Read(context.Background()); err != nil {
							return
						}
					}
				}
			}
		}
	}()
	return ch
}

func TestShutdownDrainSpreadsCloses(t *testing.T) {
	t.Parallel()
	const (
		n       = 12
		window  = time.Second
		timeout = 6 * time.Second
	)
	ts := servertest.Start(t, server.Config{AdminListen: "on", DrainWindow: window, ShutdownTimeout: timeout})
	app := dialApp(t, ts, "chat", "drainhost_1")
	closes := make([]<-chan closeSeen, n)
	ids := map[string]bool{}
	for i := range closes {
		c, _ := connect(t, ts, app, "chat", "", "json")
		ids[c.id] = true
		closes[i] = awaitClose(c)
	}

	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	eventually(t, waitLimit, "/readyz answers 503 during the drain", func() bool {
		st, _ := adminGet(t, ts, "/readyz")
		return st == http.StatusServiceUnavailable
	})
	eventually(t, waitLimit, "the listener refuses new connections", func() bool {
		conn, err := net.DialTimeout("tcp", ts.Addr, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})

	var seen []closeSeen
	for i, ch := range closes {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("client %d: socket ended without a SignalR Close", i)
			}
			if !c.allowReconnect || c.err == "" {
				t.Errorf("client %d: Close %+v, want allowReconnect true and a reason", i, c)
			}
			seen = append(seen, c)
		case <-time.After(waitLimit):
			t.Fatalf("client %d: no Close", i)
		}
	}
	// The app server hears of every client before its own socket goes.
	for len(ids) > 0 {
		cc := expect[svcproto.CloseConnection](t, app)
		delete(ids, cc.ConnectionID)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout + 2*time.Second):
		t.Fatalf("Serve did not return within the shutdown timeout %v", timeout)
	}
	if took := time.Since(began); took > timeout {
		t.Errorf("shutdown took %v, bound %v", took, timeout)
	}
	slices.SortFunc(seen, func(a, b closeSeen) int { return a.at.Compare(b.at) })
	if spread := seen[len(seen)-1].at.Sub(seen[0].at); spread < window/2 {
		t.Errorf("closes spread over %v, want at least %v (window %v)", spread, window/2, window)
	}
	for range app.msgs { // the link ends with the server
	}
}

func TestShutdownNoDrainWindow(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{DrainWindow: -1, ShutdownTimeout: 5 * time.Second})
	app := dialApp(t, ts, "chat", "drainhost_2")
	var closes []<-chan closeSeen
	for range 3 {
		c, _ := connect(t, ts, app, "chat", "", "json")
		closes = append(closes, awaitClose(c))
	}
	began := time.Now()
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range closes {
		if c, ok := <-ch; !ok || !c.allowReconnect {
			t.Errorf("client %d: Close %+v (received %v), want allowReconnect", i, c, ok)
		}
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown without a drain window took %v", took)
	}
}

const (
	keyA = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	keyB = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// tokenFor issues a client token for hub signed with key.
func tokenFor(t *testing.T, ts *servertest.Instance, key, hub string) string {
	t.Helper()
	cs, err := auth.ParseConnectionString(ts.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.IssueToken(key, auth.IssueOptions{Audience: cs.ClientAudience(hub)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func restSendAll(t *testing.T, ts *servertest.Instance, key, hub, target string) int {
	t.Helper()
	pq := "/api/hubs/" + hub + "/:send?api-version=2022-06-01"
	req, _ := http.NewRequest(http.MethodPost, ts.URL+pq, strings.NewReader(`{"target":"`+target+`","arguments":[]}`))
	req.Header.Set("Authorization", "Bearer "+sdkToken(t, key, pq))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReloadRotatesKeysAndSettings(t *testing.T) {
	t.Parallel()
	base := server.Config{Listen: "127.0.0.1:0", DrainWindow: -1, Instances: []server.InstanceConfig{{Name: "main", Default: true, PrimaryKey: keyA}}}
	ts := servertest.Start(t, base)
	with := func(mutate func(*server.Config)) server.Config {
		c := base
		c.Instances = slices.Clone(base.Instances)
		mutate(&c)
		return c
	}
	reload := func(c server.Config) server.ReloadResult {
		t.Helper()
		res, err := ts.Server.Reload(c)
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		return res
	}
	negotiateWith := func(key string) int {
		st, _ := negotiate(t, ts, "chat", tokenFor(t, ts, key, "chat"))
		return st
	}

	// A serverless client (Auto mode, no app server) connected with key A.
	c := dialClient(t, ts, "chat", "", "json")
	if got := string(c.read()); got != "{}\x1e" {
		t.Fatalf("handshake response %q", got)
	}

	// Rotation step 1: B primary, A secondary: both accepted.
	res := reload(with(func(c *server.Config) { c.Instances[0].PrimaryKey, c.Instances[0].SecondaryKey = keyB, keyA }))
	if !slices.Equal(res.Changed, []string{"main"}) || len(res.RestartRequired) != 0 {
		t.Fatalf("reload result %+v", res)
	}
	if a, b := negotiateWith(keyA), negotiateWith(keyB); a != http.StatusOK || b != http.StatusOK {
		t.Fatalf("negotiate with A = %d, with B = %d; want both 200", a, b)
	}
	// Step 2: A removed: refused from now on, while the connection made with it stays up.
	reload(with(func(c *server.Config) { c.Instances[0].PrimaryKey = keyB }))
	if a, b := negotiateWith(keyA), negotiateWith(keyB); a != http.StatusUnauthorized || b != http.StatusOK {
		t.Fatalf("negotiate with A = %d, with B = %d; want 401 and 200", a, b)
	}
	if st := restSendAll(t, ts, keyA, "chat", "old"); st != http.StatusUnauthorized {
		t.Fatalf("REST with the removed key = %d, want 401", st)
	}
	if st := restSendAll(t, ts, keyB, "chat", "rotated"); st != http.StatusAccepted {
		t.Fatalf("REST with the new key = %d, want 202", st)
	}
	if got := string(c.read()); !strings.Contains(got, `"target":"rotated"`) {
		t.Fatalf("existing connection got %q, want the invocation sent after the rotation", got)
	}
	if res := reload(with(func(c *server.Config) { c.Instances[0].PrimaryKey = keyB })); len(res.Changed) != 0 {
		t.Fatalf("reloading the same config changed %v", res.Changed)
	}

	// A setting applies to new connections: a smaller max-message-size.
	reload(with(func(c *server.Config) { c.Instances[0].PrimaryKey = keyB; c.Defaults.MaxMessageSize = 1024 }))
	ts.Key = keyB
	small := dialClient(t, ts, "chat", "", "json")
	if got := string(small.read()); got != "{}\x1e" {
		t.Fatalf("handshake response %q", got)
	}
	big := `{"type":1,"target":"echo","arguments":["` + strings.Repeat("x", 2000) + `"]}` + "\x1e"
	if err := small.ws.Write(context.Background(), websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	if got := string(small.read()); !strings.Contains(got, "maximum message size") {
		t.Fatalf("over-size message answered %q, want a Close for the size", got)
	}

	// Invalid: refused as a whole, the running keys stay.
	if _, err := ts.Server.Reload(with(func(c *server.Config) {
		c.Instances[0].PrimaryKey = keyA
		c.Defaults.Mode = "Sometimes"
	})); err == nil || !strings.Contains(err.Error(), "Sometimes") {
		t.Fatalf("invalid reload: err = %v", err)
	}
	if a, b := negotiateWith(keyA), negotiateWith(keyB); a != http.StatusUnauthorized || b != http.StatusOK {
		t.Fatalf("after an invalid reload: negotiate with A = %d, with B = %d; want 401 and 200", a, b)
	}

	// Topology and restart-only settings are reported and kept; live parts still apply.
	res = reload(with(func(c *server.Config) {
		c.Instances[0].PrimaryKey = keyA
		c.Instances[0].Settings.Mode = server.ModeServerless
		c.Instances = append(c.Instances, server.InstanceConfig{Name: "other", Hosts: []string{"other.example"}, PrimaryKey: keyB})
	}))
	if len(res.RestartRequired) != 2 || !slices.Equal(res.Changed, []string{"main"}) {
		t.Fatalf("reload result %+v, want mode and the added instance reported", res)
	}
	if a := negotiateWith(keyA); a != http.StatusOK {
		t.Fatalf("negotiate with A after it came back = %d", a)
	}
}
