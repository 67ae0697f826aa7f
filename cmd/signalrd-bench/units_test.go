package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAzureUnitFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sc      string
		conns   int
		out     float64
		want    int // UnitN, 0: none
		wantOut int // azureUnitByOutbound, 0: none
	}{
		{scEcho, 999, 999, 0, 1},       // Unit1's rate (within 1 %), not its connections
		{scEcho, 1000, 990, 1, 1},      // within the 1 % slack
		{scEcho, 1000, 989.9, 0, 0},    // below it
		{scEcho, 8700, 8695, 5, 5},     // between Unit5 and Unit10
		{scEcho, 10000, 20000, 10, 20}, // more messages than connections: Unit20's rate, not its connections
		{scEcho, 100000, 100000, 100, 100},
		{scEcho, 200000, 400000, 100, 100}, // nothing above Unit100
		{scBroadcast, 1000, 1993, 1, 1},
		{scBroadcast, 2000, 3000, 1, 1}, // Unit2's connections, Unit1's outbound
		{scBroadcast, 10000, 19931, 10, 10},
		{scBroadcast, 10000, 69537, 10, 20},
		{scBroadcast, 10000, 99667, 10, 50},
		{scBroadcast, 20000, 39000, 10, 10}, // 39,000 < 99 % of Unit20's 40,000
		{scBroadcast, 500, 200000, 0, 100},
	}
	for _, tt := range tests {
		u, ok := azureUnitFor(tt.sc, tt.conns, tt.out)
		if got := map[bool]int{true: u.Unit}[ok]; got != tt.want {
			t.Errorf("azureUnitFor(%s, %d, %v) = Unit%d (%v), want Unit%d", tt.sc, tt.conns, tt.out, u.Unit, ok, tt.want)
		}
		u, ok = azureUnitByOutbound(tt.sc, tt.out)
		if got := map[bool]int{true: u.Unit}[ok]; got != tt.wantOut {
			t.Errorf("azureUnitByOutbound(%s, %v) = Unit%d (%v), want Unit%d", tt.sc, tt.out, u.Unit, ok, tt.wantOut)
		}
	}
}

// TestAzureUnitsTable checks the published figures' internal relations (guarding a mistyped one):
// per unit, 1,000 connections, 1,000 echo msg/s and 2,000 broadcast msg/s out at 2 msg/s in.
func TestAzureUnitsTable(t *testing.T) {
	t.Parallel()
	if len(azureUnits) != 7 {
		t.Fatalf("%d units", len(azureUnits))
	}
	for _, u := range azureUnits {
		if u.Connections != 1000*u.Unit || u.EchoMsgs != u.Connections || u.BroadcastIn != 2 || u.BroadcastOut != 2*u.Connections {
			t.Errorf("%+v", u)
		}
	}
	if bandwidth(1000) != "2 MBps" || bandwidth(200000) != "400 MBps" || bandwidth(2) != "4 KBps" {
		t.Errorf("bandwidth: %s %s %s", bandwidth(1000), bandwidth(200000), bandwidth(2))
	}
}

func TestUnitLadder(t *testing.T) {
	t.Parallel()
	conns := func(l []loadPoint) []int {
		var c []int
		for _, p := range l {
			c = append(c, p.Conns)
		}
		return c
	}
	// 19,000 clients: Unit1-Unit10 as published, Unit20-Unit100's rates at 10,000 connections.
	echo := unitLadder(scEcho, 19000)
	if got := conns(echo); !slices.Equal(got, []int{1000, 2000, 5000, 10000, 10000, 10000, 10000}) {
		t.Fatalf("echo ladder connections %v", got)
	}
	bc := unitLadder(scBroadcast, 19000)
	for i, u := range azureUnits {
		if got := echo[i].out(scEcho); got != float64(u.EchoMsgs) || echo[i].Senders != 0 {
			t.Errorf("echo step %d offers %v msg/s (senders %d), want %s's %d", i, got, echo[i].Senders, u.name(), u.EchoMsgs)
		}
		if got := bc[i].out(scBroadcast); got != float64(u.BroadcastOut) || bc[i].in() != float64(u.BroadcastIn)*bc[i].Rate || bc[i].Senders != broadcastSenders {
			t.Errorf("broadcast step %d: %v offers %v out, want %s's %d", i, bc[i], got, u.name(), u.BroadcastOut)
		}
	}
	if bc[3] != (loadPoint{Conns: 10000, Senders: 2, Rate: 1}) || bc[6] != (loadPoint{Conns: 10000, Senders: 2, Rate: 10}) {
		t.Errorf("broadcast ladder %v", bc)
	}
	if got := conns(unitLadder(scEcho, 20000)); !slices.Equal(got, []int{1000, 2000, 5000, 10000, 20000, 20000, 20000}) {
		t.Errorf("ladder at 20,000 %v", got)
	}
	if got := unitLadder(scEcho, 999); len(got) != 0 {
		t.Errorf("ladder below Unit1 %v", got)
	}
	if got := stepLabel(scBroadcast, searchStep{Point: bc[5]}); got != "Unit50's msg/s" {
		t.Errorf("label %q", got)
	}
	if got := stepLabel(scEcho, searchStep{Point: echo[2]}); got != "Unit5" {
		t.Errorf("label %q", got)
	}
}

func TestBetween(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi loadPoint
		want   loadPoint
		ok     bool
	}{
		{loadPoint{2000, 0, 1}, loadPoint{5000, 0, 1}, loadPoint{3500, 0, 1}, true},
		{loadPoint{2000, 0, 1}, loadPoint{3500, 0, 1}, loadPoint{2700, 0, 1}, true}, // to a multiple of 100
		{loadPoint{0, 2, 1}, loadPoint{1000, 2, 1}, loadPoint{500, 2, 1}, true},     // nothing passed
		{loadPoint{1000, 0, 1}, loadPoint{1100, 0, 1}, loadPoint{}, false},
		{loadPoint{10000, 2, 2}, loadPoint{10000, 2, 5}, loadPoint{10000, 2, 3.5}, true}, // rate
		{loadPoint{10000, 2, 3.5}, loadPoint{10000, 2, 5}, loadPoint{10000, 2, 4.2}, true},
		{loadPoint{10000, 2, 1}, loadPoint{10000, 2, 1.1}, loadPoint{}, false},
	}
	for _, tt := range tests {
		got, ok := between(tt.lo, tt.hi)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("between(%v, %v) = %v, %v; want %v, %v", tt.lo, tt.hi, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStepVerdict(t *testing.T) {
	t.Parallel()
	p := loadPoint{Conns: 1000, Rate: 1}
	good := result{Connected: 1000, Expected: 6000, Received: 5950, Latency: latencyStats{Count: 5950, P99: 999}}
	tests := []struct {
		name string
		edit func(*result)
		pass bool
		why  string
	}{
		{"good", func(*result) {}, true, ""},
		{"missing clients", func(r *result) { r.Connected = 999 }, false, "999 of 1000 connected"},
		{"errors", func(r *result) { r.Errors = 1 }, false, "1 errors"},
		{"nothing", func(r *result) { r.Expected, r.Received, r.Latency.Count = 0, 0, 0 }, false, "nothing delivered"},
		{"lost", func(r *result) { r.Received = 5939 }, false, "99.0% delivered"}, // 98.98 %
		{"slow", func(r *result) { r.Latency.P99 = 1000 }, false, "p99 1000 ms"},
	}
	for _, tt := range tests {
		r := good
		tt.edit(&r)
		pass, why := stepVerdict(&r, p)
		if pass != tt.pass || why != tt.why {
			t.Errorf("%s: %v %q, want %v %q", tt.name, pass, why, tt.pass, tt.why)
		}
	}
	if pass, _ := stepVerdict(nil, p); pass {
		t.Error("nil result passed")
	}
}

// fakeStep passes while the offered outbound is at most limit.
func fakeStep(sc string, limit float64, visited *[]loadPoint) func(loadPoint) searchStep {
	return func(p loadPoint) searchStep {
		*visited = append(*visited, p)
		r := &result{Connected: p.Conns}
		return searchStep{Point: p, Result: r, Pass: p.out(sc) <= limit}
	}
}

func TestSearchLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sc       string
		limit    float64
		visited  []loadPoint
		bestConn int
		bestRate float64 // 0: none passed
	}{
		{"echo between Unit5 and Unit10", scEcho, 8000, []loadPoint{{1000, 0, 1}, {2000, 0, 1}, {5000, 0, 1}, {10000, 0, 1}, {7500, 0, 1}, {8700, 0, 1}}, 7500, 1},
		{"broadcast rate at the connections cap", scBroadcast, 70000, []loadPoint{{1000, 2, 1}, {2000, 2, 1}, {5000, 2, 1}, {10000, 2, 1}, {10000, 2, 2}, {10000, 2, 5}, {10000, 2, 3.5}, {10000, 2, 4.2}}, 10000, 3.5},
		{"below Unit1", scEcho, 600, []loadPoint{{1000, 0, 1}, {500, 0, 1}, {700, 0, 1}}, 500, 1},
		{"everything passes", scEcho, 1e9, unitLadder(scEcho, 19000), 10000, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var visited []loadPoint
			steps, best := searchLoad(unitLadder(tt.sc, 19000), searchRefine, fakeStep(tt.sc, tt.limit, &visited))
			if !slices.Equal(visited, tt.visited) {
				t.Fatalf("visited %v, want %v", visited, tt.visited)
			}
			if len(steps) != len(visited) {
				t.Fatalf("%d steps for %d runs", len(steps), len(visited))
			}
			if best < 0 || steps[best].Point.Conns != tt.bestConn || steps[best].Point.Rate != tt.bestRate || !steps[best].Pass {
				t.Fatalf("best %d: %+v", best, steps)
			}
			for i, s := range steps {
				if s.Refine != (i >= len(steps)-searchRefine && tt.limit < 1e9) {
					t.Errorf("step %d refine=%v", i, s.Refine)
				}
			}
		})
	}
	// Nothing passes at all: no best.
	var visited []loadPoint
	if _, best := searchLoad(unitLadder(scEcho, 19000), searchRefine, fakeStep(scEcho, 0, &visited)); best != -1 || len(visited) != 3 {
		t.Errorf("best %d after %v", best, visited)
	}
	// A step that could not be measured ends the search.
	steps, best := searchLoad(unitLadder(scEcho, 19000), searchRefine, func(p loadPoint) searchStep {
		if p.Conns > 2000 {
			return searchStep{Point: p, Why: "no client connected"}
		}
		return searchStep{Point: p, Result: &result{}, Pass: true}
	})
	if len(steps) != 3 || best != 1 {
		t.Errorf("aborted search: best %d of %+v", best, steps)
	}
}

func TestUnitTargetRow(t *testing.T) {
	t.Parallel()
	step := func(p loadPoint, sc string, pass bool, why string) searchStep {
		r := &result{Connected: p.Conns, InPerSec: p.in(), OutPerSec: p.out(sc), Expected: 100, Received: 100, Latency: latencyStats{Count: 100, P99: 400}}
		return searchStep{Point: p, Result: r, Pass: pass, Why: why}
	}
	echo := unitSearchResult{Scenario: scEcho, Steps: []searchStep{
		step(loadPoint{5000, 0, 1}, scEcho, true, ""),
		step(loadPoint{10000, 0, 1}, scEcho, false, "p99 2720 ms"),
		step(loadPoint{7500, 0, 1}, scEcho, true, ""),
		step(loadPoint{8700, 0, 1}, scEcho, false, "p99 1229 ms"),
	}, Best: 2}
	row := unitTargetRow(echo, 19000, "open-file limit")
	for _, want := range []string{"echo: highest rate", "7,500 conns × 1 msg/s", "7,500 in / 7,500 out msg/s", "**equals Unit5**", "8,700 conns × 1 msg/s failed (p99 1229 ms)"} {
		if !strings.Contains(row[1], want) && !strings.Contains(row[0], want) {
			t.Errorf("echo row %q lacks %q", row, want)
		}
	}
	if row[2] != "reported" || strings.Contains(row[1], "outbound alone") {
		t.Errorf("echo row %q", row)
	}
	bc := unitSearchResult{Scenario: scBroadcast, Steps: []searchStep{step(loadPoint{10000, 2, 3.5}, scBroadcast, true, "")}, Best: 0}
	row = unitTargetRow(bc, 19000, "open-file limit")
	for _, want := range []string{"**equals Unit10**", "outbound alone equals Unit20's 40,000 msg/s", "every step passed", "19,000 connections (open-file limit)"} {
		if !strings.Contains(row[1], want) {
			t.Errorf("broadcast row %q lacks %q", row[1], want)
		}
	}
	none := unitSearchResult{Scenario: scEcho, Steps: []searchStep{step(loadPoint{1000, 0, 1}, scEcho, false, "p99 1500 ms")}, Best: -1}
	if row := unitTargetRow(none, 19000, ""); row[2] != "**below Unit1**" || !strings.Contains(row[1], "p99 1500 ms") {
		t.Errorf("no pass: %q", row)
	}
	if row := unitTargetRow(unitSearchResult{Scenario: scEcho, Best: -1, Err: "boom"}, 0, ""); row[2] != "unknown" || !strings.Contains(row[1], "boom") {
		t.Errorf("error: %q", row)
	}
	var md strings.Builder
	writeUnitsMarkdown(&md, machineInfo{Cores: 2}, unitReport{Searches: []unitSearchResult{echo, bc}, MaxConns: 19000, Limit: "x"}, 2*time.Second, 6*time.Second)
	for _, want := range []string{azureURL, "| Unit20 | 20,000 | 20,000 | 40 MBps | 2 | 40,000 | 4 KBps / 80 MBps |", "one 2-core machine", "**pass (highest)**", "fail: p99 1229 ms"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("section lacks %q", want)
		}
	}
}

func TestCommas(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 123456789: "123,456,789", -1234: "-1,234"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q", n, got)
		}
	}
}

// TestSendWindow checks the by-send accounting: only messages stamped in the window count, with
// their recipients, whenever they arrive.
func TestSendWindow(t *testing.T) {
	t.Parallel()
	var r recorder
	r.openSendWindow(100)
	r.sentAt(99, 10) // before the window
	r.sentAt(100, 10)
	r.recv(99)
	r.recv(100)
	r.closeSendWindow(200)
	r.sentAt(199, 5)
	r.sentAt(200, 5) // after it
	r.recv(199)      // arrives after the window closed: counts
	r.recv(200)
	if r.sentWin.Load() != 2 || r.expectedWin.Load() != 15 || r.receivedWin.Load() != 2 || r.hist.Snapshot().Count != 2 {
		t.Fatalf("sent %d expected %d received %d latencies %d", r.sentWin.Load(), r.expectedWin.Load(), r.receivedWin.Load(), r.hist.Snapshot().Count)
	}
	if r.sent.Load() != 4 || r.received.Load() != 4 || r.expected.Load() != 30 {
		t.Fatalf("totals %d %d %d", r.sent.Load(), r.received.Load(), r.expected.Load())
	}
	r.stopSendWindow()
	r.recv(150)
	if r.receivedWin.Load() != 2 {
		t.Fatal("counted after the window stopped")
	}
	r.hist.reset()
	if s := r.hist.Snapshot(); s.Count != 0 || s.Max != 0 {
		t.Fatalf("after reset %+v", s)
	}
}

func TestSendWindowEnd(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	tests := []struct {
		rate     float64
		rest     bool
		earliest time.Duration
		want     time.Duration
	}{
		{1, false, 6*time.Second + 20*time.Millisecond, 7 * time.Second},
		{1, false, 6 * time.Second, 6 * time.Second},
		{2, false, 6*time.Second + 20*time.Millisecond, 6*time.Second + 500*time.Millisecond},
		{2.7, false, 6 * time.Second, 17 * 370370370}, // 6 s / (1 s / 2.7) = 16.2 intervals
		{500, true, 6*time.Second + 20*time.Millisecond, 6*time.Second + 20*time.Millisecond},
	}
	for _, tt := range tests {
		cfg := config{Scenario: scBroadcast, Rate: tt.rate}
		if tt.rest {
			cfg.Scenario = scRESTBroadcast
		}
		if got := sendWindowEnd(start, start.Add(tt.earliest), cfg).Sub(start); got != tt.want {
			t.Errorf("rate %v, earliest %v: end after %v, want %v", tt.rate, tt.earliest, got, tt.want)
		}
	}
}

// TestSessionSteps runs a small search-like session against an in-process signalrd: clients
// added and dropped between phases, a broadcast from 2 senders measured by send time.
func TestSessionSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end load runs")
	}
	t.Parallel()
	cfg, err := parseFlags([]string{"--scenario", "broadcast", "--connections", "8", "--senders", "2", "--rate", "10",
		"--duration", "1s", "--warmup", "200ms", "--server-connections", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tg, err := startSignalr(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tg.close() }()
	s := openSession(ctx, cfg, tg)
	s.bySend = true
	defer s.close()
	for _, n := range []int{4, 8, 5} {
		s.shrink(n)
		if err := s.grow(ctx, n); err != nil {
			t.Fatal(err)
		}
		s.settle(ctx, 100*time.Millisecond, 2*time.Second)
		pc := cfg
		pc.Connections = n
		r, err := s.measure(ctx, pc, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := loadPoint{Conns: n, Senders: 2, Rate: 10}
		if pass, why := stepVerdict(&r, p); !pass {
			t.Fatalf("%d clients: %s: %+v", n, why, r)
		}
		// 2 senders × 10 msg/s for ~1 s, each message to all n clients, all of them delivered.
		if r.Sent < 15 || r.Sent > 25 || r.Expected != r.Sent*uint64(n) || r.Received != r.Expected || r.Connected != n {
			t.Fatalf("%d clients: sent %d expected %d received %d connected %d", n, r.Sent, r.Expected, r.Received, r.Connected)
		}
	}
}
