package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/e2e/jsclient"
	"github.com/signalrd/signalrd/sdk/appserver"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// lcCluster is signalrd (Default mode) with several Go app servers hosting the "chat" hub and
// one negotiate front, the way a load balancer fronts app servers: clients connect to
// Front+"/chat?via=<server id>" and negotiate with that server while it is connected, else with
// any connected one.
type lcCluster struct {
	t     *testing.T
	svc   *servertest.Instance
	Front string
	led   lcLedger

	mu    sync.Mutex
	apps  map[string]*lcApp // current instance per server id
	gen   map[string]int
	hooks map[string]func() // run once after the named server answered a negotiate
}

// lcApp is one app-server process. Its tag names the process (server id plus restart count), so
// a hub method can tell which process served it.
type lcApp struct {
	id, tag string
	srv     *appserver.Server
	hub     *appserver.HubContext
	neg     http.Handler

	slowCount time.Duration
}

type lcAppOptions struct {
	shutdown   appserver.GracefulShutdownMode
	sticky     auth.StickyMode
	connString string        // default: the service's
	slowCount  time.Duration // how long the hub's "count" takes (a busy server has a backlog)
}

func startCluster(t *testing.T) *lcCluster {
	t.Helper()
	c := &lcCluster{
		t:     t,
		svc:   servertest.Start(t, server.Config{Defaults: server.Settings{Mode: server.ModeDefault}}),
		apps:  map[string]*lcApp{},
		gen:   map[string]int{},
		hooks: map[string]func(){},
	}
	c.led.init()
	mux := http.NewServeMux()
	mux.HandleFunc("/chat/negotiate", c.negotiate)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c.Front = hs.URL
	return c
}

func (c *lcCluster) negotiate(w http.ResponseWriter, r *http.Request) {
	via := r.URL.Query().Get("via")
	c.mu.Lock()
	app := c.apps[via]
	if app == nil || !app.hub.Connected() {
		app = nil
		ids := make([]string, 0, len(c.apps))
		for id := range c.apps {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if c.apps[id].hub.Connected() {
				app = c.apps[id]
				break
			}
		}
	}
	var hook func()
	if app != nil {
		hook = c.hooks[app.id]
		delete(c.hooks, app.id)
	}
	c.mu.Unlock()
	if app == nil {
		http.Error(w, "no app server", http.StatusServiceUnavailable)
		return
	}
	if hook == nil {
		app.neg.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	app.neg.ServeHTTP(rec, r)
	hook()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// stopApp closes an app server and waits until the service has let go of its sockets.
func (c *lcCluster) stopApp(app *lcApp) {
	c.t.Helper()
	_ = app.srv.Close()
	c.mu.Lock()
	delete(c.apps, app.id)
	n := 0
	for _, x := range c.apps {
		if x.hub.Connected() {
			n += 2
		}
	}
	c.mu.Unlock()
	// Runs inside a negotiate hook too, so it must not call t.Fatal.
	for deadline := time.Now().Add(10 * time.Second); c.serverSockets() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Errorf("the service still has %d sockets after %s stopped, want %d", c.serverSockets(), app.tag, n)
			return
		}
	}
}

// serverSockets is the service's count of connected app-server sockets.
func (c *lcCluster) serverSockets() int {
	mfs, err := c.svc.Server.Registry().Gather()
	if err != nil {
		c.t.Error(err)
		return -1
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "signalrd_server_sockets" {
			for _, m := range mf.GetMetric() {
				total += m.GetGauge().GetValue()
			}
		}
	}
	return int(total)
}

// afterNegotiate runs f once, after server id answered its next negotiate and before the client
// reads the answer (so the client connects to the service with that server's token after f).
func (c *lcCluster) afterNegotiate(id string, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hooks[id] = f
}

func lcLogger() *slog.Logger {
	if os.Getenv("SIGNALRD_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startApp starts an app server with two sockets and waits until it is connected.
func (c *lcCluster) startApp(id string, o lcAppOptions) *lcApp {
	t := c.t
	t.Helper()
	cs := o.connString
	if cs == "" {
		cs = c.svc.ConnectionString()
	}
	srv, err := appserver.New(appserver.Options{
		ConnectionString: cs,
		ServerID:         id,
		ConnectionCount:  2,
		GracefulShutdown: o.shutdown,
		StickyMode:       o.sticky,
		Logger:           lcLogger(),
		Timing:           appserver.Timing{ReconnectBase: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.gen[id]++
	app := &lcApp{id: id, tag: fmt.Sprintf("%s#%d", id, c.gen[id]), srv: srv, slowCount: o.slowCount}
	c.mu.Unlock()
	app.hub = srv.MapHub("chat", c.hub(app))
	app.neg = srv.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Ready(ctx); err != nil {
		t.Fatalf("%s not ready: %v", id, err)
	}
	c.mu.Lock()
	c.apps[id] = app
	c.mu.Unlock()
	return app
}

func (c *lcCluster) hub(app *lcApp) *appserver.Hub {
	h := &appserver.Hub{
		OnConnected: func(x *appserver.Context) error {
			c.led.event(lcEvent{kind: "connected", conn: x.ConnectionID, host: app.tag, migrated: x.MigratedFrom})
			return nil
		},
		OnDisconnected: func(x *appserver.Context, err error) {
			c.led.event(lcEvent{kind: "disconnected", conn: x.ConnectionID, host: app.tag, migrated: x.MigratedTo(), err: err})
		},
	}
	h.On("where", func(x *appserver.Context) string { return app.tag })
	h.On("count", func(x *appserver.Context, n int) {
		if app.slowCount > 0 {
			time.Sleep(app.slowCount) // simulated work
		}
		c.led.count(x.ConnectionID, n, app.tag)
	})
	h.On("join", func(x *appserver.Context, g string) error { return x.Groups.Add(x, x.ConnectionID, g) })
	// ask waits, inside a hub method, for another connection's client result.
	h.On("ask", func(x *appserver.Context, target string, a, b int) (int, error) {
		return appserver.InvokeClient[int](x, x.Hub, target, "add", a, b)
	})
	return h
}

// lcLedger records what the hubs of every app server saw.
type lcLedger struct {
	mu     sync.Mutex
	counts map[string][]lcCount // by connection id, in the order the hubs ran
	events []lcEvent
}

type lcCount struct {
	n    int
	host string
}

type lcEvent struct {
	kind, conn, host string
	migrated         string // MigratedFrom on connected, MigratedTo on disconnected
	err              error
}

func (l *lcLedger) init() { l.counts = map[string][]lcCount{} }

func (l *lcLedger) count(conn string, n int, host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[conn] = append(l.counts[conn], lcCount{n, host})
}

func (l *lcLedger) countsOf(conn string) []lcCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.counts[conn])
}

func (l *lcLedger) event(e lcEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *lcLedger) eventsOf(conn string) []lcEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []lcEvent
	for _, e := range l.events {
		if e.conn == conn {
			out = append(out, e)
		}
	}
	return out
}

// lcConnect connects an official client through the front, negotiating with server via.
func lcConnect(t *testing.T, d *jsclient.Driver, c *lcCluster, name, via string, o jsclient.ConnectOptions) string {
	t.Helper()
	id, err := lcTryConnect(t, d, c, name, via, o)
	if err != nil {
		t.Fatalf("connect %s via %s: %v", name, via, err)
	}
	return id
}

func lcTryConnect(t *testing.T, d *jsclient.Driver, c *lcCluster, name, via string, o jsclient.ConnectOptions) (string, error) {
	t.Helper()
	o.URL = c.Front + "/chat?via=" + via + "&user=" + name
	if o.Transport == "" {
		o.Transport = "WebSockets"
	}
	return d.Connect(ctxT(t), name, o)
}

// where asks the hub which app-server process serves the connection.
func where(t *testing.T, d *jsclient.Driver, name string) string {
	t.Helper()
	raw, err := d.Invoke(ctxT(t), name, "where")
	if err != nil {
		t.Fatalf("%s where: %v", name, err)
	}
	var tag string
	if err := json.Unmarshal(raw, &tag); err != nil {
		t.Fatal(err)
	}
	return tag
}

// noCloseEvents fails when any connection saw a close or a reconnect.
func noCloseEvents(t *testing.T, d *jsclient.Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ev, err := d.WaitEvent(ctx, func(e jsclient.Event) bool {
		return e.Event == jsclient.EventClose || e.Event == jsclient.EventReconnecting
	}); err == nil {
		t.Fatalf("unexpected %s event on %s: %q", ev.Event, ev.Conn, ev.Error)
	}
}

// TestLifecycleServerSelection: without stickiness new clients are balanced by client count
// over the app servers, whichever server negotiated them.
func TestLifecycleServerSelection(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	for _, id := range []string{"app-a", "app-b", "app-c"} {
		c.startApp(id, lcAppOptions{})
	}
	d := jsclient.Start(t)
	per := map[string]int{}
	for i := range 6 {
		name := fmt.Sprintf("c%d", i)
		lcConnect(t, d, c, name, "app-a", jsclient.ConnectOptions{})
		per[where(t, d, name)]++
	}
	want := map[string]int{"app-a#1": 2, "app-b#1": 2, "app-c#1": 2}
	if fmt.Sprint(per) != fmt.Sprint(want) {
		t.Fatalf("clients per server %v, want %v", per, want)
	}
}

// TestLifecycleStickyPreferred: Preferred clients land on the server that negotiated them while
// it is connected, on another one when it is gone, and on it again once it restarted.
func TestLifecycleStickyPreferred(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	o := lcAppOptions{sticky: auth.StickyPreferred}
	a := c.startApp("app-a", o)
	c.startApp("app-b", o)
	d := jsclient.Start(t)
	for i := range 3 {
		name := fmt.Sprintf("a%d", i)
		lcConnect(t, d, c, name, "app-a", jsclient.ConnectOptions{})
		if got := where(t, d, name); got != "app-a#1" {
			t.Fatalf("%s negotiated by app-a is on %s", name, got)
		}
	}
	lcConnect(t, d, c, "b0", "app-b", jsclient.ConnectOptions{})
	if got := where(t, d, "b0"); got != "app-b#1" {
		t.Fatalf("b0 negotiated by app-b is on %s", got)
	}

	// app-a stops between issuing the token and the client's connect: any server will do.
	c.afterNegotiate("app-a", func() { c.stopApp(a) })
	lcConnect(t, d, c, "fallback", "app-a", jsclient.ConnectOptions{})
	if got := where(t, d, "fallback"); got != "app-b#1" {
		t.Fatalf("fallback is on %s, want app-b#1", got)
	}

	// app-a restarts under the same server id: it is preferred again.
	c.startApp("app-a", o)
	lcConnect(t, d, c, "again", "app-a", jsclient.ConnectOptions{})
	if got := where(t, d, "again"); got != "app-a#2" {
		t.Fatalf("again is on %s, want app-a#2", got)
	}
}

// TestLifecycleStickyRequired: Required clients only ever use the server that negotiated them:
// its absence fails the connect with a clear error, a restart under the same id serves them
// again, and a MigrateClients shutdown does not move them.
func TestLifecycleStickyRequired(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	a := c.startApp("app-a", lcAppOptions{sticky: auth.StickyRequired})
	c.startApp("app-b", lcAppOptions{sticky: auth.StickyRequired})
	d := jsclient.Start(t)
	for i, via := range []string{"app-a", "app-b", "app-a"} {
		name := fmt.Sprint("pin", i)
		lcConnect(t, d, c, name, via, jsclient.ConnectOptions{})
		if got := where(t, d, name); got != via+"#1" {
			t.Fatalf("%s is on %s, want %s#1", name, got, via)
		}
	}

	c.afterNegotiate("app-a", func() { c.stopApp(a) })
	_, err := lcTryConnect(t, d, c, "orphan", "app-a", jsclient.ConnectOptions{})
	if err == nil || !strings.Contains(err.Error(), "sticky mode Required") {
		t.Fatalf("connect with app-a gone: %v, want the service's sticky Required error", err)
	}

	a2 := c.startApp("app-a", lcAppOptions{sticky: auth.StickyRequired, shutdown: appserver.ShutdownMigrateClients})
	id := lcConnect(t, d, c, "pinned", "app-a", jsclient.ConnectOptions{Handlers: []string{"message"}})
	if got := where(t, d, "pinned"); got != "app-a#2" {
		t.Fatalf("pinned is on %s, want app-a#2", got)
	}
	// MigrateClients cannot move a Required client: Shutdown waits for it until its context
	// ends, then closes, and the client is dropped rather than moved.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a2.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's deadline (the pinned client stays)", err)
	}
	if _, err := d.WaitEvent(ctxT(t), jsclient.IsClose("pinned")); err != nil {
		t.Fatal(err)
	}
	for _, e := range c.led.eventsOf(id) {
		if e.migrated != "" {
			t.Fatalf("the Required client was migrated: %+v", e)
		}
	}
}

// TestLifecycleMigrateClients shuts down one of three app servers with MigrateClients while every
// client sends a steady stream and receives a steady group stream: the migrated clients see no
// close, nothing they send is lost or duplicated (the old server still dispatches what reached it
// before the migration, the new one the rest), nothing sent to them is lost, their groups are
// kept, and the hubs see the migration (MigratedTo on the old server, MigratedFrom on the new).
func TestLifecycleMigrateClients(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	// app-a works slowly, so it still has a backlog of received messages when it is told its
	// clients migrate away: those must be dispatched there, not dropped.
	a := c.startApp("app-a", lcAppOptions{shutdown: appserver.ShutdownMigrateClients, slowCount: time.Millisecond})
	d := jsclient.Start(t)
	ctx := ctxT(t)
	names := []string{"j0", "j1", "j2", "k0", "k1", "k2"}
	ids := map[string]string{}
	for i, name := range names {
		if i == 3 {
			c.startApp("app-b", lcAppOptions{})
			c.startApp("app-c", lcAppOptions{})
		}
		ids[name] = lcConnect(t, d, c, name, "app-a", jsclient.ConnectOptions{Handlers: []string{"tick"}})
		if _, err := d.Invoke(ctx, name, "join", "g"); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names[:3] {
		if got := where(t, d, name); got != "app-a#1" {
			t.Fatalf("%s is on %s before the shutdown", name, got)
		}
	}
	b := c.apps["app-b"]

	// Streams: every client sends count 0, 1, 2, ...; app-b sends tick 0, 1, 2, ... to the group.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := make([]int, len(names))
	sendErr := make([]error, len(names))
	for i, name := range names {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					sent[i] = n
					return
				default:
				}
				if err := d.Send(ctx, name, "count", n); err != nil {
					sent[i], sendErr[i] = n, err
					return
				}
			}
		})
	}
	ticks := 0
	tickErr := make(chan error, 1)
	wg.Go(func() {
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				tickErr <- nil
				return
			case <-tk.C:
			}
			if err := b.hub.Clients.Group("g").Send(ctx, "tick", ticks); err != nil {
				tickErr <- err
				return
			}
			ticks++
		}
	})
	progress := func(atLeast int) {
		eventually(t, fmt.Sprintf("every client sent %d messages", atLeast), func() bool {
			for _, name := range names {
				if len(c.led.countsOf(ids[name])) < atLeast {
					return false
				}
			}
			return true
		})
	}
	progress(20)
	sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	before := map[string]int{}
	for _, name := range names {
		before[name] = len(c.led.countsOf(ids[name]))
	}
	eventually(t, "the streams go on after the migration", func() bool {
		for _, name := range names {
			if len(c.led.countsOf(ids[name])) < before[name]+20 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	if err := <-tickErr; err != nil {
		t.Fatalf("tick stream: %v", err)
	}
	if err := b.hub.Clients.Group("g").Send(ctx, "tick", -1); err != nil {
		t.Fatal(err)
	}

	for i, name := range names {
		if sendErr[i] != nil {
			t.Fatalf("%s send %d: %v", name, sent[i], sendErr[i])
		}
		host := where(t, d, name) // also a fence: every count before it was dispatched
		if host == "app-a#1" {
			t.Fatalf("%s is still on the stopped server", name)
		}
		checkCounts(t, name, c.led.countsOf(ids[name]), sent[i], i < 3)
		if _, err := d.WaitEvent(ctx, func(e jsclient.Event) bool {
			return e.Event == jsclient.EventMessage && e.Conn == name && e.Method == "tick" && len(e.Args) == 1 && string(e.Args[0]) == "-1"
		}); err != nil {
			t.Fatalf("%s: no final tick: %v", name, err)
		}
		got := d.Messages(name, "tick")
		for n, ev := range got[:len(got)-1] {
			if string(ev.Args[0]) != fmt.Sprint(n) {
				t.Fatalf("%s tick %d was %s (of %d sent)", name, n, ev.Args[0], ticks)
			}
		}
		if len(got)-1 != ticks {
			t.Fatalf("%s got %d ticks, %d were sent", name, len(got)-1, ticks)
		}
	}
	noCloseEvents(t, d)

	// The hubs saw the migration of j0..j2: MigratedTo on app-a, MigratedFrom on the new server.
	for _, name := range names[:3] {
		var out, in *lcEvent
		for _, e := range c.led.eventsOf(ids[name]) {
			switch {
			case e.kind == "disconnected" && e.host == "app-a#1":
				out = &e
			case e.kind == "connected" && e.host != "app-a#1":
				in = &e
			}
		}
		if out == nil || in == nil || out.err != nil || in.migrated != "app-a" || out.migrated+"#1" != in.host {
			t.Fatalf("%s migration events: out %+v, in %+v", name, out, in)
		}
	}
	// Groups are kept: a group message from the other new server reaches every client.
	if err := c.apps["app-c"].hub.Clients.Group("g").Send(ctx, "tick", -2); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, err := d.WaitEvent(ctx, func(e jsclient.Event) bool {
			return e.Event == jsclient.EventMessage && e.Conn == name && e.Method == "tick" && string(e.Args[0]) == "-2"
		}); err != nil {
			t.Fatalf("%s left group g: %v", name, err)
		}
	}
}

// checkCounts: the hubs dispatched exactly 0..sent-1 once each; for a migrated client the old
// server dispatched a prefix and the new one the rest, each in order.
func checkCounts(t *testing.T, name string, got []lcCount, sent int, migrated bool) {
	t.Helper()
	if len(got) != sent {
		t.Fatalf("%s: the hubs dispatched %d counts, the client sent %d", name, len(got), sent)
	}
	byHost := map[string][]int{}
	var hosts []string
	seen := make([]bool, sent)
	for _, x := range got {
		if x.n < 0 || x.n >= sent || seen[x.n] {
			t.Fatalf("%s: count %d lost or duplicated", name, x.n)
		}
		seen[x.n] = true
		if _, ok := byHost[x.host]; !ok {
			hosts = append(hosts, x.host)
		}
		byHost[x.host] = append(byHost[x.host], x.n)
	}
	for h, ns := range byHost {
		if !slices.IsSorted(ns) {
			t.Fatalf("%s: %s dispatched counts out of order", name, h)
		}
	}
	if !migrated {
		if len(hosts) != 1 {
			t.Fatalf("%s was served by %v", name, hosts)
		}
		return
	}
	old, ok := byHost["app-a#1"]
	if !ok || len(byHost) != 2 {
		t.Fatalf("%s: counts by host %v, want app-a#1 then one new server", name, hosts)
	}
	for h, ns := range byHost {
		if h != "app-a#1" && ns[0] != old[len(old)-1]+1 {
			t.Fatalf("%s: app-a#1 dispatched up to %d, %s from %d", name, old[len(old)-1], h, ns[0])
		}
	}
}

// TestLifecycleWaitForClientsClose: the draining server gets no new clients but keeps serving its
// own until they leave; Shutdown returns once they did.
func TestLifecycleWaitForClientsClose(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	// Ties go to the first server id, so srv-2 drains while srv-1 takes the ties.
	drain := c.startApp("srv-2", lcAppOptions{shutdown: appserver.ShutdownWaitForClientsClose})
	d := jsclient.Start(t)
	ctx := ctxT(t)
	xs := map[string]string{}
	for _, name := range []string{"x0", "x1"} {
		xs[name] = lcConnect(t, d, c, name, "", jsclient.ConnectOptions{})
	}
	c.startApp("srv-1", lcAppOptions{})
	for _, name := range []string{"z0", "z1", "z2"} {
		lcConnect(t, d, c, name, "", jsclient.ConnectOptions{})
		if got := where(t, d, name); got != "srv-1#1" {
			t.Fatalf("%s is on %s", name, got)
		}
	}
	// srv-2 has fewer clients: without the drain it would get the next one.
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		done <- drain.srv.Shutdown(sctx)
	}()
	probe := 0
	eventually(t, "new clients avoid the draining server", func() bool {
		probe++
		name := fmt.Sprint("probe", probe)
		lcConnect(t, d, c, name, "", jsclient.ConnectOptions{})
		if where(t, d, name) == "srv-1#1" {
			return true
		}
		_ = d.Stop(ctx, name) // the fin was not processed yet
		return false
	})
	for i := range 3 {
		name := fmt.Sprint("late", i)
		lcConnect(t, d, c, name, "", jsclient.ConnectOptions{})
		if got := where(t, d, name); got != "srv-1#1" {
			t.Fatalf("%s went to %s, a draining server", name, got)
		}
	}
	// Its own clients are still served.
	for name := range xs {
		if got := where(t, d, name); got != "srv-2#1" {
			t.Fatalf("%s is on %s", name, got)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned while clients remain: %v", err)
	default:
	}
	if err := d.Stop(ctx, "x0"); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(ctx, "x1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Shutdown did not return after the last client left")
	}
	for name, id := range xs {
		var left bool
		for _, e := range c.led.eventsOf(id) {
			if e.kind == "disconnected" && e.host == "srv-2#1" && e.migrated == "" && e.err == nil {
				left = true
			}
		}
		if !left {
			t.Fatalf("%s: no plain OnDisconnected on srv-2: %+v", name, c.led.eventsOf(id))
		}
	}
}

// TestLifecycleServerKilled: an app server whose sockets die without a shutdown (TCP reset) loses
// its clients; the service closes them with a reconnectable Close, so automatic reconnect brings
// them back through the surviving server, and clients without it see the close.
func TestLifecycleServerKilled(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	proxy := startProxy(t, c.svc.Addr)
	cs := strings.TrimSuffix(c.svc.ConnectionString(), ";") + ";ServerEndpoint=http://" + proxy.Addr() + ";"
	victim := c.startApp("app-a", lcAppOptions{connString: cs})
	d := jsclient.Start(t)
	ctx := ctxT(t)
	auto := jsclient.ConnectOptions{ReconnectDelays: []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, time.Second, time.Second}}
	old := map[string]string{}
	for _, name := range []string{"r0", "r1", "r2"} {
		old[name] = lcConnect(t, d, c, name, "", auto)
	}
	lcConnect(t, d, c, "plain", "", jsclient.ConnectOptions{})
	c.startApp("app-b", lcAppOptions{})
	if got := where(t, d, "r0"); got != "app-a#1" {
		t.Fatalf("r0 is on %s", got)
	}

	proxy.Kill()
	for name, oldID := range old {
		ev, err := d.WaitEvent(ctx, jsclient.IsReconnected(name))
		if err != nil {
			t.Fatalf("%s did not reconnect: %v", name, err)
		}
		if ev.ConnectionID == "" || ev.ConnectionID == oldID {
			t.Fatalf("%s reconnected as %q (was %q)", name, ev.ConnectionID, oldID)
		}
		if got := where(t, d, name); got != "app-b#1" {
			t.Fatalf("%s came back on %s", name, got)
		}
	}
	ev, err := d.WaitEvent(ctx, jsclient.IsClose("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Error, "app server") {
		t.Fatalf("close error %q", ev.Error)
	}
	// The dead server's hub saw its clients go.
	eventually(t, "OnDisconnected on the killed server", func() bool {
		for _, id := range old {
			found := false
			for _, e := range c.led.eventsOf(id) {
				found = found || (e.kind == "disconnected" && e.host == "app-a#1")
			}
			if !found {
				return false
			}
		}
		return true
	})
	_ = victim.srv.Close()
}
