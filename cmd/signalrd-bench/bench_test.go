package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestHistogramIndexRoundTrip(t *testing.T) {
	t.Parallel()
	prev := -1
	for _, v := range []uint64{0, 1, 63, 127, 128, 129, 255, 256, 1000, 12345, 1 << 20, 1<<20 + 12345, 1 << 39} {
		idx := histIndex(v)
		if idx < prev {
			t.Fatalf("index not monotonic at %d", v)
		}
		prev = idx
		up := histUpper(idx)
		if up < v {
			t.Fatalf("upper(%d)=%d < value %d", idx, up, v)
		}
		if v >= 128 && float64(up-v) > float64(v)/histSub {
			t.Fatalf("bucket of %d too wide: upper %d", v, up)
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		values        []time.Duration
		p50, p99, max float64 // ms, with 2 % tolerance
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []time.Duration{5 * time.Millisecond}, 5, 5, 5},
		{"uniform 1..1000ms", func() []time.Duration {
			var v []time.Duration
			for i := 1; i <= 1000; i++ {
				v = append(v, time.Duration(i)*time.Millisecond)
			}
			rand.Shuffle(len(v), func(i, j int) { v[i], v[j] = v[j], v[i] })
			return v
		}(), 500, 990, 1000},
		{"negative is zero", []time.Duration{-time.Second}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			s := h.Snapshot()
			if s.Count != uint64(len(tt.values)) {
				t.Fatalf("count %d", s.Count)
			}
			near := func(name string, got, want float64) {
				if got < want || got > want*1.02+0.001 {
					t.Errorf("%s = %v, want %v (+2%%)", name, got, want)
				}
			}
			near("p50", s.P50, tt.p50)
			near("p99", s.P99, tt.p99)
			near("max", s.Max, tt.max)
		})
	}
}

func TestHistogramRecordAllocs(t *testing.T) {
	var h histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234 * time.Microsecond) }); n != 0 {
		t.Fatalf("Record allocates %v per call", n)
	}
}

const statFixture = "4242 (sig nal)rd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

const statusFixture = `Name:	signalrd
State:	S (sleeping)
VmPeak:	 1300000 kB
VmRSS:	   51200 kB
RssAnon:	   40000 kB
`

func TestParseProc(t *testing.T) {
	t.Parallel()
	ticks, err := parseStatCPU(statFixture)
	if err != nil || ticks != 325 {
		t.Fatalf("parseStatCPU = %d, %v; want 325", ticks, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 3"} {
		if _, err := parseStatCPU(bad); !errors.Is(err, errProcFormat) {
			t.Errorf("parseStatCPU(%q) err = %v", bad, err)
		}
	}
	rss, err := parseStatusRSS(strings.NewReader(statusFixture))
	if err != nil || rss != 51200*1024 {
		t.Fatalf("parseStatusRSS = %d, %v", rss, err)
	}
	if _, err := parseStatusRSS(strings.NewReader("Name: x\n")); !errors.Is(err, errProcFormat) {
		t.Fatalf("no VmRSS: err = %v", err)
	}
	model, cores := parseCPUInfo(strings.NewReader("processor\t: 0\nmodel name\t: Test CPU @ 3GHz\n\nprocessor\t: 1\nmodel name\t: Test CPU @ 3GHz\n"))
	if model != "Test CPU @ 3GHz" || cores != 2 {
		t.Fatalf("parseCPUInfo = %q, %d", model, cores)
	}
	mem, err := parseMemTotal(strings.NewReader("MemTotal:       24683520 kB\nMemFree: 1 kB\n"))
	if err != nil || mem != 24683520*1024 {
		t.Fatalf("parseMemTotal = %d, %v", mem, err)
	}
	if got := cpuPercent(procSample{CPUTicks: 100}, procSample{CPUTicks: 250}, 2); got != 75 {
		t.Fatalf("cpuPercent = %v, want 75", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	t.Parallel()
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("readProc of a missing pid: no error")
	}
	s, err := readProcSelf()
	if err != nil || s.RSSBytes <= 0 {
		t.Fatalf("readProc(self) = %+v, %v", s, err)
	}
}

func TestFlagValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		wantErr []string // substrings; nil = valid
	}{
		{nil, nil},
		{[]string{"--scenario", "rest-user", "--rate", "200", "--protocol", "messagepack"}, nil},
		{[]string{"--scenario", "biggroup"}, nil},
		{[]string{"--scenario", "nope"}, []string{"--scenario"}},
		{[]string{"--connections", "0", "--size", "1", "--rate", "0"}, []string{"--connections", "--size", "--rate"}},
		{[]string{"--transport", "longpolling"}, []string{"--transport"}},
		{[]string{"--protocol", "xml"}, []string{"--protocol"}},
		{[]string{"--service-url", "ftp://x"}, []string{"--service-url"}},
		{[]string{"--service-url", "http://127.0.0.1:1", "--service-bin", "x"}, []string{"exclusive"}},
		{[]string{"--duration", "0s", "--warmup", "-1s"}, []string{"--duration", "--warmup"}},
		{[]string{"extra"}, []string{"unexpected arguments"}},
		{[]string{"--nodes", "2", "--service-bin", "x"}, nil},
		{[]string{"--nodes", "3"}, []string{"--nodes must be 1 or 2"}},
		{[]string{"--nodes", "2"}, []string{"--nodes 2 needs --service-bin"}},
		{[]string{"--nodes", "2", "--service-bin", "x", "--baseline"}, []string{"drop --baseline"}},
		{[]string{"--scenario", "broadcast", "--connections", "10", "--senders", "2"}, nil},
		{[]string{"--connections", "10", "--senders", "11"}, []string{"--senders must be 0..--connections"}},
		{[]string{"--scenario", "rest-broadcast", "--senders", "1"}, []string{"--senders applies"}},
		{[]string{"--units"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			cfg, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want errUsage", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			_ = cfg
		})
	}
	cfg, _ := parseFlags([]string{"--scenario", "biggroup"}, io.Discard)
	if cfg.GroupSize != 100 {
		t.Errorf("biggroup default group size %d", cfg.GroupSize)
	}
}

func TestFanout(t *testing.T) {
	t.Parallel()
	c := config{Scenario: scGroup, Connections: 25, GroupSize: 10}
	if got := []int{c.fanout(0), c.fanout(19), c.fanout(20), c.fanout(24)}; !slices.Equal(got, []int{10, 10, 5, 5}) {
		t.Fatalf("group fanout %v", got)
	}
	c.Scenario = scRESTBroadcast
	if c.fanout(3) != 25 {
		t.Fatal("broadcast fanout")
	}
}

func TestFanoutAllocs(t *testing.T) {
	t.Parallel()
	out := "pkg: github.com/signalrd/signalrd/router\nBenchmarkBroadcast/1000-2  100  12 ns/op  0 B/op  0 allocs/op\nBenchmarkAddRemove-2 1 1 ns/op 1 B/op 3 allocs/op\npkg: x/transport\nBenchmarkPump-2 1 1 ns/op 0 B/op 5 allocs/op\n"
	s, ok := fanoutAllocs(out)
	if !ok || s.max != 0 || len(s.lines) != 1 {
		t.Fatalf("fanoutAllocs = %+v, %v", s, ok)
	}
}

// TestScenariosEndToEnd runs every scenario briefly against an in-process signalrd and the
// baseline and checks that messages flowed without errors.
func TestScenariosEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end load runs")
	}
	t.Parallel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, sc := range scenarios {
		for _, proto := range []string{"json", "messagepack"} {
			if proto == "messagepack" && sc != scEcho && sc != scRESTBroadcast {
				continue
			}
			t.Run(sc+"/"+proto, func(t *testing.T) {
				t.Parallel()
				args := []string{"--scenario", sc, "--connections", "6", "--rate", "20", "--duration", "1s", "--warmup", "300ms",
					"--group-size", "3", "--protocol", proto, "--baseline", "--server-connections", "2"}
				if strings.HasPrefix(sc, "rest-") {
					args = append(args, "--rate", "60")
				}
				cfg, err := parseFlags(args, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				c, err := runComparison(ctx, cfg, logger, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range []*result{c.SignalRD, c.Baseline} {
					if r.Errors != 0 {
						t.Errorf("%s: %d errors: %v", r.Target, r.Errors, r.ErrorText)
					}
					if r.Connected != 6 || r.ConnectRate <= 0 {
						t.Errorf("%s: connected %d at %v/s", r.Target, r.Connected, r.ConnectRate)
					}
					if sc == scIdle {
						continue
					}
					if r.Sent == 0 || r.Received == 0 || r.Latency.Count == 0 || r.Latency.P50 <= 0 && r.Latency.Max <= 0 {
						t.Errorf("%s: nothing flowed: %+v", r.Target, r)
					}
					if float64(r.Received) < 0.5*float64(r.Expected) {
						t.Errorf("%s: received %d of %d expected", r.Target, r.Received, r.Expected)
					}
				}
			})
		}
	}
}

// TestPaceKeepsPhases checks that each source keeps its random phase: its k-th call is at
// phase + k*interval, so the sources never fall into lock step (which made all clients send at
// once every interval and grew the latency with the number of clients).
func TestPaceKeepsPhases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sources, interval = 50, 100 * time.Millisecond
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		calls := make([][]time.Duration, sources)
		var wg sync.WaitGroup
		for i := range sources {
			wg.Go(func() {
				pace(ctx, interval, func() { calls[i] = append(calls[i], time.Since(start)) })
			})
		}
		time.Sleep(5*interval + interval/2)
		cancel()
		wg.Wait()
		distinct := map[time.Duration]bool{}
		for i, c := range calls {
			if len(c) < 5 {
				t.Fatalf("source %d: %d calls in 5.5 intervals", i, len(c))
			}
			phase := c[0]
			for k, at := range c {
				if want := phase + time.Duration(k)*interval; at != want {
					t.Fatalf("source %d call %d at %v, want %v (phase %v)", i, k, at, want, phase)
				}
			}
			distinct[c[1]] = true
		}
		if len(distinct) < sources/2 {
			t.Fatalf("second calls at only %d distinct instants for %d sources: lock step", len(distinct), sources)
		}
	})
}

func TestOptimizationLogPreserved(t *testing.T) {
	t.Parallel()
	log := "\n## Optimization log\n\nhand-written\n\n### step 1\n\n| a | b |\n"
	prev := "# Performance\n\nold figures\n\n## Targets\n\nold\n" + log
	if got := optimizationLog(prev); got != log {
		t.Fatalf("optimizationLog = %q, want %q", got, log)
	}
	if got := optimizationLog(""); !strings.Contains(got, optimizationLogHeading+"\n") {
		t.Fatalf("no log: %q", got)
	}
	var md strings.Builder
	writeMarkdown(&md, machineInfo{}, config{Warmup: time.Second, Duration: 8 * time.Second, Size: 2048, Protocol: "json"}, nil, nil, nil, unitReport{}, "", time.Second)
	md.WriteString(optimizationLog(prev))
	if out := md.String(); !strings.HasSuffix(out, log) || strings.Count(out, optimizationLogHeading) != 1 || strings.Contains(out, "old figures") {
		t.Fatalf("report does not end with the kept log exactly once:\n%s", out)
	}
}

func TestTwoNodeTarget(t *testing.T) {
	t.Parallel()
	one := &result{Target: "signalrd", OutPerSec: 100000}
	two := &result{Target: "signalrd ×2", OutPerSec: 80000}
	labels := []string{labelBroadcastSaturated, labelBroadcastTwoNodes}
	find := func(rows [][3]string) [3]string {
		for _, r := range rows {
			if strings.HasPrefix(r[0], "two nodes") {
				return r
			}
		}
		t.Fatal("no two-node row")
		return [3]string{}
	}
	row := find(evaluateTargets(labels, []comparison{{SignalRD: one}, {SignalRD: two}}, nil, ""))
	if !strings.HasPrefix(row[1], "80%") || row[2] != "met" {
		t.Fatalf("row = %q", row)
	}
	two.OutPerSec = 50000
	row = find(evaluateTargets(labels, []comparison{{SignalRD: one}, {SignalRD: two}}, nil, ""))
	if !strings.HasPrefix(row[2], "**not met**: 20 points") {
		t.Fatalf("row = %q", row)
	}
	row = find(evaluateTargets(labels[:1], []comparison{{SignalRD: one}}, map[string]string{labelBroadcastTwoNodes: "redis-server not found"}, ""))
	if !strings.Contains(row[1], "redis-server not found") || row[2] != "unknown" {
		t.Fatalf("row = %q", row)
	}
}

func TestSpreadNegotiate(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"url":"http://127.0.0.1:1111/client/?hub=bench","accessToken":"x"}`))
	})
	h := &spreadNegotiate{next: next, from: "127.0.0.1:1111", to: "127.0.0.1:2222", userOfReqs: userIndex}
	for user, want := range map[string]string{"u0": "1111", "u1": "2222", "u2": "1111", "u7": "2222", "": "1111"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/bench/negotiate?user="+user, nil))
		body := rec.Body.String()
		if !strings.Contains(body, "127.0.0.1:"+want+"/client/") || rec.Code != http.StatusOK {
			t.Errorf("user %q: %d %q, want node %s", user, rec.Code, body, want)
		}
		if cl := rec.Header().Get("Content-Length"); want == "2222" && cl != strconv.Itoa(len(body)) {
			t.Errorf("user %q: Content-Length %q for a body of %d bytes", user, cl, len(body))
		}
	}
}

// TestTwoNodesEndToEnd runs a short broadcast on two signalrd nodes sharing a redis-server.
func TestTwoNodesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds signalrd and starts redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH (make deps-redis)")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "signalrd")
	build := exec.Command("go", "build", "-o", bin, "github.com/signalrd/signalrd/cmd/signalrd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build signalrd: %v\n%s", err, out)
	}
	cfg, err := parseFlags([]string{"--scenario", "broadcast", "--connections", "6", "--rate", "10", "--duration", "1s",
		"--warmup", "500ms", "--nodes", "2", "--service-bin", bin, "--server-connections", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := runComparison(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.SignalRD
	if r.Target != "signalrd ×2" || r.Nodes != 2 || r.Errors != 0 || r.Connected != 6 {
		t.Fatalf("result %+v", r)
	}
	if r.Received == 0 || float64(r.Received) < 0.5*float64(r.Expected) {
		t.Fatalf("received %d of %d expected", r.Received, r.Expected)
	}
	if r.RSSBytes <= 0 {
		t.Fatalf("no RSS sampled for the nodes")
	}
}
