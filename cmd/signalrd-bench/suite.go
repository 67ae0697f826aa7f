package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// suiteRun is one scenario of the standard suite.
type suiteRun struct {
	label    string
	scenario string
	conns    int
	rate     float64
	baseline bool
	nodes    int // 0: one node; 2: two nodes sharing a redis-server
}

// Labels the targets table looks up.
const (
	labelBroadcastSaturated  = "broadcast 100 × 20/s"
	labelBroadcastTwoNodes   = "broadcast 100 × 20/s, 2 nodes + Redis"
	labelIdle                = "idle 10000"
	labelEcho1000            = "echo 1000"
	labelBroadcast           = "broadcast 100"
	labelGroup               = "group 1000 (groups of 10)"
	optimizationLogHeading   = "## Optimization log"
	optimizationLogGenerated = "<!-- Hand-written: make bench keeps this section (from its heading to the end of the file) as it is. -->"
)

// standardSuite is what `make bench` runs (~2-3 minutes on 2 cores), before the Azure unit
// searches of units.go (~2-3 minutes). The baseline runs offer what the machine delivers; the
// broadcast pair at 20 msg/s per client offers 200,000 deliveries/s, about what one node and the
// load generator manage together on 2 cores, to compare the throughput of one node with that of
// two nodes sharing Redis.
var standardSuite = []suiteRun{
	{"echo 100", scEcho, 100, 1, true, 0},
	{labelEcho1000, scEcho, 1000, 1, true, 0},
	{labelBroadcast, scBroadcast, 100, 5, true, 0},
	{labelGroup, scGroup, 1000, 5, true, 0},
	{"rest-broadcast 100", scRESTBroadcast, 100, 500, true, 0},
	{labelIdle, scIdle, 10000, 0, false, 0},
	{labelBroadcastSaturated, scBroadcast, 100, 20, false, 0},
	{labelBroadcastTwoNodes, scBroadcast, 100, 20, false, 2},
}

func runSuite(ctx context.Context, cfg config, logger *slog.Logger, stdout, stderr io.Writer) error {
	var cs []comparison
	var labels []string
	skipped := map[string]string{}
	started := time.Now()
	for _, sr := range standardSuite {
		c := cfg
		c.Suite, c.Scenario, c.Connections, c.Rate, c.Baseline = false, sr.scenario, sr.conns, sr.rate, sr.baseline
		c.GroupSize = 10
		c.Nodes = max(sr.nodes, 1)
		if c.Nodes > 1 {
			if c.ServiceBin == "" {
				skipped[sr.label] = "needs --service-bin (the nodes are child processes)"
				continue
			}
			if _, err := exec.LookPath(c.RedisServer); err != nil {
				skipped[sr.label] = fmt.Sprintf("%s not found (make deps-redis installs it)", c.RedisServer)
				continue
			}
		}
		c.Duration = suiteDuration(cfg)
		if err := c.validate(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "== %s\n", sr.label)
		var progress io.Writer
		if cfg.Progress {
			progress = stderr
		}
		res, err := runComparison(ctx, c, logger, progress)
		if err != nil {
			return fmt.Errorf("suite %s: %w", sr.label, err)
		}
		cs = append(cs, res)
		labels = append(labels, sr.label)
	}
	units, err := runUnitSearches(ctx, cfg, logger, stderr)
	if err != nil {
		return err
	}
	if err := writeTable(stdout, cs); err != nil {
		return err
	}
	for _, u := range units.Searches {
		row := unitTargetRow(u, units.MaxConns, units.Limit)
		fmt.Fprintf(stdout, "%s\n  %s\n", row[0], row[1])
	}
	if cfg.Out == "" {
		return nil
	}
	var gobench string
	if cfg.GoBench != "" {
		b, err := os.ReadFile(cfg.GoBench)
		if err != nil {
			return fmt.Errorf("suite: read --gobench: %w", err)
		}
		gobench = string(b)
	}
	old, err := os.ReadFile(cfg.Out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("suite: read the previous report: %w", err)
	}
	var md strings.Builder
	writeMarkdown(&md, readMachine(), cfg, labels, cs, skipped, units, gobench, time.Since(started))
	md.WriteString(optimizationLog(string(old)))
	if err := os.WriteFile(cfg.Out, []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("suite: write report: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s\n", cfg.Out)
	return nil
}

// runUnitSearches searches the highest echo and broadcast loads that meet Azure's criterion.
func runUnitSearches(ctx context.Context, cfg config, logger *slog.Logger, stderr io.Writer) (unitReport, error) {
	units := unitReport{}
	units.MaxConns, units.Limit = searchMaxConns()
	for _, sc := range []string{scEcho, scBroadcast} {
		fmt.Fprintf(stderr, "== Azure units: %s (up to %d connections)\n", sc, units.MaxConns)
		var progress io.Writer
		if cfg.Progress {
			progress = stderr
		}
		u := runUnitSearch(ctx, cfg, sc, units.MaxConns, searchDuration(cfg), logger, progress)
		if err := ctx.Err(); err != nil {
			return units, err
		}
		units.Searches = append(units.Searches, u)
	}
	return units, nil
}

// runUnits is --units: the searches alone, printed as the report's section and target rows.
func runUnits(ctx context.Context, cfg config, logger *slog.Logger, stdout, stderr io.Writer) error {
	units, err := runUnitSearches(ctx, cfg, logger, stderr)
	if err != nil {
		return err
	}
	writeUnitsMarkdown(stdout, readMachine(), units, cfg.Warmup, searchDuration(cfg))
	for _, u := range units.Searches {
		row := unitTargetRow(u, units.MaxConns, units.Limit)
		fmt.Fprintf(stdout, "| %s | %s | %s |\n", row[0], row[1], row[2])
	}
	return nil
}

// suiteDuration is the measured time of each suite run: --duration, except that the flag's
// default (10 s) becomes 8 s to keep the suite short.
func suiteDuration(cfg config) time.Duration {
	if cfg.Duration == 10*time.Second {
		return 8 * time.Second
	}
	return cfg.Duration
}

// searchDuration is the measured time of each step of the Azure unit searches: 3/4 of the suite's
// (6 s by default), to keep the suite short.
func searchDuration(cfg config) time.Duration { return suiteDuration(cfg) * 3 / 4 }

// optimizationLog returns the hand-written optimization log of a previous report: everything from
// its heading to the end of the file. Without one it starts an empty log.
func optimizationLog(prev string) string {
	i := strings.Index(prev, "\n"+optimizationLogHeading+"\n")
	if i < 0 {
		return "\n" + optimizationLogHeading + "\n\n" + optimizationLogGenerated + "\n\nNothing recorded yet.\n"
	}
	return prev[i:]
}

func writeMarkdown(w io.Writer, m machineInfo, cfg config, labels []string, cs []comparison, skipped map[string]string, units unitReport, gobench string, took time.Duration) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Performance\n\n")
	p("Generated by `make bench` (`cmd/signalrd-bench --suite`) on %s in %s. Do not edit by hand, except the\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	p("[optimization log](#optimization-log) at the end, which `make bench` keeps: rerun `make bench`.\n\n")
	p("## Machine\n\n| | |\n| --- | --- |\n| CPU | %s |\n| cores | %d (GOMAXPROCS %d) |\n| RAM | %.1f GiB |\n| kernel | %s |\n| Go | %s %s/%s |\n\n",
		m.CPUModel, m.Cores, runtime.GOMAXPROCS(0), float64(m.MemBytes)/(1<<30), m.Kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	p("Everything runs on this one machine over loopback: signalrd (a child process, `--service-bin`), the raw\n")
	p("WebSocket baseline (a child process), and the load generator with its Go app server and clients share\n")
	p("the cores, so the load generator's own CPU caps every figure, the baseline's included. The machine may\n")
	p("also be shared with other work while the suite runs: latencies are the most sensitive to that.\n\n")
	p("## Commands\n\n```sh\nmake bench\n# which runs\ngo test -run=NONE -bench=. -benchmem ./protocol/... ./router/ ./transport/ ./storage/ ./server/\n")
	p("go build -o bin/signalrd ./cmd/signalrd\ngo run ./cmd/signalrd-bench --suite --service-bin bin/signalrd --gobench bin/gobench.txt --out docs/PERFORMANCE.md\n")
	p("# one scenario, e.g.\ngo run ./cmd/signalrd-bench --scenario broadcast --connections 100 --rate 5 --baseline --service-bin bin/signalrd\n")
	p("# the same on two nodes sharing a redis-server the tool starts\ngo run ./cmd/signalrd-bench --scenario broadcast --connections 100 --rate 5 --nodes 2 --service-bin bin/signalrd\n")
	p("# the Azure unit searches alone (echo, broadcast), printed as Markdown\ngo run ./cmd/signalrd-bench --units --service-bin bin/signalrd\n")
	p("# one broadcast step of that search: 10,000 clients, 2 of them sending 1 msg/s each\ngo run ./cmd/signalrd-bench --scenario broadcast --connections 10000 --senders 2 --rate 1 --service-bin bin/signalrd\n```\n\n")
	p("Each scenario: ramp-up (connect rate), %s warm-up, %s measured, payload %d bytes, protocol %s, WebSockets.\n",
		cfg.Warmup, suiteDuration(cfg), cfg.Size, cfg.Protocol)
	p("`rate` is messages per second per client, except REST (requests per second in total). `delivered` is\n")
	p("received / expected recipients of the messages sent in the window (≈100%% when the target keeps up).\n")
	p("CPU%% and RSS are of the target process (100%% = one core); with 2 nodes, of both nodes and redis-server\n")
	p("together (clients alternate between the nodes, the app server is connected to the first one).\n")
	p("`vs baseline` = signalrd out msg/s / baseline out msg/s.\n\n")
	p("## Load scenarios\n\n| scenario | target | conns | rate | conn/s | in msg/s | out msg/s | delivered | p50 ms | p90 ms | p99 ms | max ms | errors | CPU %% | RSS MB | vs baseline |\n")
	p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i, c := range cs {
		for _, r := range []*result{c.SignalRD, c.Baseline} {
			if r == nil {
				continue
			}
			ratio := ""
			if r == c.SignalRD && c.OutRatio > 0 {
				ratio = fmt.Sprintf("%.0f%%", c.OutRatio*100)
			}
			p("| %s | %s | %d | %s | %.0f | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.2f | %d | %.0f | %.1f | %s |\n",
				labels[i], r.Target, r.Connected, rateText(r), r.ConnectRate, r.InPerSec, r.OutPerSec, delivered(r),
				r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Errors, r.CPUPercent, float64(r.RSSBytes)/(1<<20), ratio)
		}
	}
	for i, c := range cs {
		for _, r := range []*result{c.SignalRD, c.Baseline} {
			if r != nil && len(r.ErrorText) > 0 {
				p("\n%s / %s errors: %s\n", labels[i], r.Target, strings.Join(r.ErrorText, "; "))
			}
		}
	}
	for _, l := range sortedKeys(skipped) {
		p("\n%s: not run: %s\n", l, skipped[l])
	}
	p("\n")
	writeUnitsMarkdown(w, m, units, cfg.Warmup, searchDuration(cfg))
	p("## Targets (issue \"Load generator, performance figures\")\n\n| target | measured | status |\n| --- | --- | --- |\n")
	rows := evaluateTargets(labels, cs, skipped, gobench)
	for _, u := range units.Searches {
		rows = append(rows, unitTargetRow(u, units.MaxConns, units.Limit))
	}
	for _, t := range rows {
		p("| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	p("\nThe Azure-unit rows come from the search above: everything (load generator, app server, signalrd) shares\n")
	p("one %d-core machine, whereas Azure's units are measured with the clients and app servers on other VMs.\n", m.Cores)
	if gobench != "" {
		p("\n## Go micro-benchmarks\n\n```\n%s```\n", filterGoBench(gobench))
	}
}

// evaluateTargets returns rows (target, measured, status) for the goals.
func evaluateTargets(labels []string, cs []comparison, skipped map[string]string, gobench string) [][3]string {
	find := func(label string) *comparison {
		for i := range cs {
			if labels[i] == label {
				return &cs[i]
			}
		}
		return nil
	}
	status := func(ok bool, gap string) string {
		if ok {
			return "met"
		}
		return "**not met**: " + gap
	}
	var rows [][3]string
	if c := find(labelIdle); c != nil && c.SignalRD != nil {
		kb := c.SignalRD.RSSPerClient / 1024
		rows = append(rows, [3]string{"10k clients, ≤ 20 KB RSS per idle client",
			fmt.Sprintf("%d clients, %.1f KB/client (RSS %.0f MB)", c.SignalRD.Connected, kb, float64(c.SignalRD.RSSBytes)/(1<<20)),
			status(c.SignalRD.Connected >= 10000 && kb <= 20, fmt.Sprintf("%.1f KB over", kb-20))})
	}
	for _, l := range []string{labelBroadcast, labelGroup} {
		if c := find(l); c != nil && c.OutRatio > 0 {
			rows = append(rows, [3]string{l + ": ≥ 80% of baseline msg/s",
				fmt.Sprintf("%.0f%% (%.0f vs %.0f out msg/s)", c.OutRatio*100, c.SignalRD.OutPerSec, c.Baseline.OutPerSec),
				status(c.OutRatio >= 0.8, fmt.Sprintf("%.0f points short", (0.8-c.OutRatio)*100))})
		}
	}
	if c := find(labelEcho1000); c != nil && c.SignalRD != nil {
		r := c.SignalRD
		measured := fmt.Sprintf("p99 %.2f ms (%d errors, %s delivered)", r.Latency.P99, r.Errors, delivered(r))
		if b := c.Baseline; b != nil {
			measured += fmt.Sprintf("; baseline p99 %.2f ms", b.Latency.P99)
		}
		rows = append(rows, [3]string{"echo 1000 clients × 1 msg/s of 2 KB, p99 < 50 ms", measured,
			status(r.Latency.P99 < 50 && r.Errors == 0, fmt.Sprintf("p99 %.1f ms over", r.Latency.P99-50))})
	}
	allocs, ok := fanoutAllocs(gobench)
	switch {
	case gobench == "":
		rows = append(rows, [3]string{"zero allocations per recipient in local fan-out", "micro-benchmarks not run", "unknown"})
	case !ok:
		rows = append(rows, [3]string{"zero allocations per recipient in local fan-out", "router benchmarks not found", "unknown"})
	default:
		rows = append(rows, [3]string{"zero allocations per recipient in local fan-out", "router " + strings.Join(allocs.lines, ", "),
			// A send to a long id list makes one sorted copy of the list: one allocation per
			// message whatever the number of recipients (router.TestFanOutAllocs checks the
			// count does not grow with recipients), so up to one per send meets the target.
			status(allocs.max <= 1, "allocations growing with recipients in a router fan-out benchmark")})
	}
	const twoNodes = "two nodes with Redis: broadcast ≥ 70% of one node's msg/s"
	one, two := find(labelBroadcastSaturated), find(labelBroadcastTwoNodes)
	switch {
	case skipped[labelBroadcastTwoNodes] != "":
		rows = append(rows, [3]string{twoNodes, "not measured: " + skipped[labelBroadcastTwoNodes], "unknown"})
	case one == nil || two == nil || one.SignalRD == nil || two.SignalRD == nil || one.SignalRD.OutPerSec <= 0:
		rows = append(rows, [3]string{twoNodes, "not measured", "unknown"})
	default:
		r1, r2 := one.SignalRD, two.SignalRD
		ratio := r2.OutPerSec / r1.OutPerSec
		rows = append(rows, [3]string{twoNodes,
			fmt.Sprintf("%.0f%% (%.0f vs %.0f out msg/s, 100 clients × 20 msg/s broadcast; errors %d and %d)", ratio*100, r2.OutPerSec, r1.OutPerSec, r2.Errors, r1.Errors),
			status(ratio >= 0.7 && r2.Errors == 0, fmt.Sprintf("%.0f points short", (0.7-ratio)*100))})
	}
	return rows
}

type allocSummary struct {
	lines []string
	max   int
}

// fanoutAllocs reads allocs/op of the router fan-out benchmarks (Broadcast, SendGroup*, SendUser,
// SendConnections) from `go test -bench -benchmem` output.
func fanoutAllocs(gobench string) (allocSummary, bool) {
	var s allocSummary
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(gobench))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p
			continue
		}
		if !strings.HasSuffix(pkg, "/router") || !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		name := strings.TrimPrefix(f[0], "Benchmark")
		if strings.HasPrefix(name, "AddRemove") || strings.HasPrefix(name, "SendConnection-") {
			continue
		}
		for i := 1; i < len(f); i++ {
			if f[i] == "allocs/op" {
				var n int
				fmt.Sscanf(f[i-1], "%d", &n)
				s.lines = append(s.lines, fmt.Sprintf("%s %d allocs/op", name, n))
				s.max = max(s.max, n)
			}
		}
	}
	return s, len(s.lines) > 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// filterGoBench keeps the result lines and package headers of `go test -bench` output.
func filterGoBench(out string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg: ") || strings.HasPrefix(l, "FAIL") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
