package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"syscall"
	"time"
)

// Azure SignalR Service's published capacity per unit of the Standard tier, from its performance
// guide ("Performance guide for Azure SignalR Service",
// https://learn.microsoft.com/azure/azure-signalr/signalr-concept-performance; the tables with
// Unit1-Unit100 as read from MicrosoftDocs/azure-docs articles/azure-signalr/signalr-concept-performance.md
// at commit f6db10cdb2bbca470269faebeb42682c916ce7bc, ms.date 03/23/2023). Method: "the maximum
// allowed throughput" is "the maximum achieved throughput when 99 percent of messages have latency
// that's less than 1 second"; WebSocket transport, default mode (clients → service → app server),
// messages of 2,048 bytes, each sending connection sends one message every second.
//
// Echo (every client sends 1 msg/s to the hub, which sends it back to the caller):
//
//	                     Unit1  Unit2  Unit5   Unit10  Unit20  Unit50   Unit100
//	Connections          1,000  2,000  5,000   10,000  20,000  50,000   100,000
//	Inbound/outbound/s   1,000  2,000  5,000   10,000  20,000  50,000   100,000
//	In/out bandwidth     2 MBps 4 MBps 10 MBps 20 MBps 40 MBps 100 MBps 200 MBps
//
// Broadcast (a few clients send, 2 msg/s in total; the hub broadcasts each to every client):
//
//	                     Unit1  Unit2  Unit5   Unit10  Unit20  Unit50   Unit100
//	Connections          1,000  2,000  5,000   10,000  20,000  50,000   100,000
//	Inbound/s            2      2      2       2       2       2        2
//	Outbound/s           2,000  4,000  10,000  20,000  40,000  100,000  200,000
//	Inbound bandwidth    4 KBps 4 KBps 4 KBps  4 KBps  4 KBps  4 KBps   4 KBps
//	Outbound bandwidth   4 MBps 8 MBps 20 MBps 40 MBps 80 MBps 200 MBps 400 MBps
//
// The current page lists Unit1, 2, 10, 50, 100, 200, 500 and 1000 (Unit5 and Unit20 dropped, the
// larger ones on Premium_P2) with the same figures per unit: 1,000 connections and 1,000 echo
// msg/s, 2,000 broadcast msg/s out per unit.
type azureUnit struct {
	Unit         int // UnitN
	Connections  int
	EchoMsgs     int // echo inbound = outbound messages per second
	BroadcastIn  int // broadcast inbound messages per second
	BroadcastOut int // broadcast outbound messages per second
}

var azureUnits = []azureUnit{
	{1, 1000, 1000, 2, 2000},
	{2, 2000, 2000, 2, 4000},
	{5, 5000, 5000, 2, 10000},
	{10, 10000, 10000, 2, 20000},
	{20, 20000, 20000, 2, 40000},
	{50, 50000, 50000, 2, 100000},
	{100, 100000, 100000, 2, 200000},
}

const (
	azureURL = "https://learn.microsoft.com/azure/azure-signalr/signalr-concept-performance"
	// unitSlack: a measured rate meets a published one when it is at least 99 % of it, the same
	// share as the delivery criterion (a window of a few seconds counts a message more or less).
	unitSlack = 0.99
	// p99Limit is Azure's latency criterion.
	p99Limit = 1000.0 // ms
	// minDelivered is the share of the messages sent in the window that must arrive in it.
	minDelivered = 0.99
)

func (u azureUnit) name() string { return fmt.Sprintf("Unit%d", u.Unit) }

// out is the unit's published outbound messages per second in scenario sc (echo or broadcast).
func (u azureUnit) out(sc string) int {
	if sc == scBroadcast {
		return u.BroadcastOut
	}
	return u.EchoMsgs
}

// azureUnitFor returns the largest unit whose published connections and outbound messages per
// second a run with conns connections and out msg/s meets (out ≥ 99 % of the unit's), or false
// when it meets none. Echo's inbound equals its outbound.
func azureUnitFor(sc string, conns int, out float64) (azureUnit, bool) {
	var best azureUnit
	ok := false
	for _, u := range azureUnits {
		if conns >= u.Connections && out >= unitSlack*float64(u.out(sc)) {
			best, ok = u, true
		}
	}
	return best, ok
}

// azureUnitByOutbound is azureUnitFor without the connections: the unit whose outbound message
// rate (= bandwidth, at 2,048 bytes) out meets.
func azureUnitByOutbound(sc string, out float64) (azureUnit, bool) {
	return azureUnitFor(sc, math.MaxInt, out)
}

// loadPoint is one step of a unit search: conns clients, of which senders (0: all) send rate
// messages per second each.
type loadPoint struct {
	Conns   int
	Senders int
	Rate    float64
}

// in is the offered inbound messages per second.
func (p loadPoint) in() float64 {
	if p.Senders > 0 {
		return float64(p.Senders) * p.Rate
	}
	return float64(p.Conns) * p.Rate
}

// out is the offered outbound messages per second in scenario sc.
func (p loadPoint) out(sc string) float64 {
	if sc == scBroadcast {
		return p.in() * float64(p.Conns)
	}
	return p.in()
}

func (p loadPoint) String() string {
	if p.Senders > 0 {
		return fmt.Sprintf("%s conns, %d × %g msg/s", commas(int64(p.Conns)), p.Senders, p.Rate)
	}
	return fmt.Sprintf("%s conns × %g msg/s", commas(int64(p.Conns)), p.Rate)
}

// broadcastSenders is how many clients send in the broadcast search: two at 1 msg/s make Azure's
// 2 inbound msg/s ("the broadcasting clients that post messages are no more than four").
const broadcastSenders = 2

// unitLadder is the load of every unit in turn, as the guide's tables define it: echo, the unit's
// connections each sending 1 msg/s; broadcast, the unit's connections receiving what 2 clients
// send at 1 msg/s each. Units with more connections than maxConns are offered at the largest
// unit's connections that fits, at the rate that gives that unit's outbound messages per second
// (its bandwidth, not its connections).
func unitLadder(sc string, maxConns int) []loadPoint {
	top := 0
	for _, u := range azureUnits {
		if u.Connections <= maxConns {
			top = u.Connections
		}
	}
	var ladder []loadPoint
	for _, u := range azureUnits {
		p := loadPoint{Conns: u.Connections, Rate: 1}
		if sc == scBroadcast {
			p.Senders = broadcastSenders
		}
		if u.Connections > maxConns {
			if top == 0 {
				break
			}
			p.Conns = top
			p.Rate = float64(u.out(sc)) / loadPoint{Conns: top, Senders: p.Senders, Rate: 1}.out(sc)
		}
		ladder = append(ladder, p)
	}
	return ladder
}

// between returns a load halfway from lo (passed; Conns 0 when nothing passed) to hi (failed):
// halfway in connections (to a multiple of 100) when they differ, else halfway in rate (to 0.1
// msg/s); false when there is no such load left.
func between(lo, hi loadPoint) (loadPoint, bool) {
	m := hi
	if lo.Conns != hi.Conns {
		m.Conns = (lo.Conns + hi.Conns) / 2 / 100 * 100
		if m.Conns <= lo.Conns || m.Conns >= hi.Conns || m.Conns < max(hi.Senders, 1) {
			return m, false
		}
		return m, true
	}
	m.Rate = math.Floor((lo.Rate+hi.Rate)/2*10) / 10
	if m.Rate <= lo.Rate || m.Rate >= hi.Rate {
		return m, false
	}
	return m, true
}

// stepVerdict says whether a step's result meets Azure's criterion: every client connected and
// still connected (no errors), at least 99 % of the messages delivered, p99 latency under 1 s.
func stepVerdict(r *result, p loadPoint) (bool, string) {
	switch {
	case r == nil:
		return false, "not run"
	case r.Connected < p.Conns:
		return false, fmt.Sprintf("%d of %d connected", r.Connected, p.Conns)
	case r.Errors > 0:
		return false, fmt.Sprintf("%d errors", r.Errors)
	case r.Expected == 0 || r.Latency.Count == 0:
		return false, "nothing delivered"
	case float64(r.Received) < minDelivered*float64(r.Expected):
		return false, fmt.Sprintf("%s delivered", delivered(r))
	case r.Latency.P99 >= p99Limit:
		return false, fmt.Sprintf("p99 %.0f ms", r.Latency.P99)
	}
	return true, ""
}

// searchStep is one measured step of a search.
type searchStep struct {
	Point  loadPoint
	Result *result
	Pass   bool
	Why    string // why it failed
	Refine bool   // a bisection step, not a unit of the ladder
}

// searchLoad walks the ladder until a step fails, then bisects refine times between the last step
// that passed and the first that failed. run measures one load. It returns every step in order and
// the index of the highest load that passed (-1: none).
func searchLoad(ladder []loadPoint, refine int, run func(loadPoint) searchStep) ([]searchStep, int) {
	var steps []searchStep
	best := -1
	var hi *loadPoint
	for _, p := range ladder {
		s := run(p)
		steps = append(steps, s)
		if s.Result == nil {
			return steps, best // the load could not be measured: nothing to bisect
		}
		if !s.Pass {
			hi = &p
			break
		}
		best = len(steps) - 1
	}
	if hi == nil {
		return steps, best
	}
	lo := loadPoint{Conns: 0, Senders: hi.Senders, Rate: hi.Rate}
	if best >= 0 {
		lo = steps[best].Point
	}
	for range refine {
		m, ok := between(lo, *hi)
		if !ok {
			break
		}
		s := run(m)
		s.Refine = true
		steps = append(steps, s)
		if s.Result == nil {
			break
		}
		if s.Pass {
			lo, best = m, len(steps)-1
		} else {
			hi = &m
		}
	}
	return steps, best
}

// unitSearchResult is the search of one scenario.
type unitSearchResult struct {
	Scenario string
	MaxConns int
	Steps    []searchStep
	Best     int    // index in Steps, -1: none passed
	Err      string // the search could not run
}

// best returns the highest passing step.
func (u unitSearchResult) best() (searchStep, bool) {
	if u.Best < 0 || u.Best >= len(u.Steps) {
		return searchStep{}, false
	}
	return u.Steps[u.Best], true
}

// Connections the unit search may open: the load generator holds a socket per client, and so
// does signalrd, within the open-file limit; keep room for the app server, REST and files. Above
// searchConnsCap one source address runs short of ephemeral ports (32768-60999 by default) and the
// ramp-up would not fit the suite's time.
const (
	searchFDReserve = 1000
	searchConnsCap  = 20000
	searchRefine    = 2
)

// searchMaxConns is the number of clients the search may open on this machine.
func searchMaxConns() (int, string) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return searchConnsCap, ""
	}
	// Go raises the soft limit to the hard one at start-up; the child signalrd does the same.
	n := int(min(lim.Cur, lim.Max, uint64(math.MaxInt32))) - searchFDReserve
	if n < searchConnsCap {
		return max(n, 0), fmt.Sprintf("open-file limit %s per process, less %s for the rest", commas(int64(lim.Max)), commas(searchFDReserve))
	}
	return searchConnsCap, "ephemeral ports of one source address and the suite's time"
}

// runUnitSearch searches the highest load of scenario sc (echo or broadcast) that meets Azure's
// criterion, on one signalrd and one session: each step adds or drops clients, lets what the
// previous step left in flight arrive, and measures cfg.Warmup + duration.
func runUnitSearch(ctx context.Context, cfg config, sc string, maxConns int, duration time.Duration, logger *slog.Logger, progress io.Writer) unitSearchResult {
	out := unitSearchResult{Scenario: sc, MaxConns: maxConns, Best: -1}
	ladder := unitLadder(sc, maxConns)
	if len(ladder) == 0 {
		out.Err = fmt.Sprintf("at most %d connections: not enough for Unit1", maxConns)
		return out
	}
	c := cfg
	c.Suite, c.Baseline, c.Scenario, c.Nodes = false, false, sc, 1
	c.Connections = ladder[0].Conns
	c.Duration = duration
	if err := c.validate(); err != nil {
		out.Err = err.Error()
		return out
	}
	t, err := startSignalr(ctx, c, logger)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	defer func() { _ = t.close() }()
	s := openSession(ctx, c, t)
	s.bySend = true
	defer s.close()
	failed := false
	run := func(p loadPoint) searchStep {
		st := searchStep{Point: p}
		if failed || ctx.Err() != nil {
			st.Why = "not run"
			return st
		}
		s.shrink(p.Conns)
		if err := s.grow(ctx, p.Conns); err != nil {
			failed, st.Why = true, err.Error()
			return st
		}
		// A step that failed may have left seconds of messages queued: let them arrive first.
		s.settle(ctx, 500*time.Millisecond, 15*time.Second)
		pc := c
		pc.Connections, pc.Senders, pc.Rate = p.Conns, p.Senders, p.Rate
		if progress != nil {
			fmt.Fprintf(progress, "-- %s %s\n", sc, p)
		}
		r, err := s.measure(ctx, pc, progress)
		if err != nil {
			failed, st.Why = true, err.Error()
			return st
		}
		st.Result = &r
		st.Pass, st.Why = stepVerdict(&r, p)
		return st
	}
	out.Steps, out.Best = searchLoad(ladder, searchRefine, run)
	return out
}

// unitReport is what the suite found of Azure units.
type unitReport struct {
	Searches []unitSearchResult
	MaxConns int
	Limit    string // what caps MaxConns
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}

func commasf(v float64) string { return commas(int64(math.Round(v))) }

// bandwidth is msgs messages of 2,048 bytes per second in the guide's terms (2,000 msg/s = 4 MBps).
func bandwidth(msgs int) string {
	kb := msgs * 2
	if kb >= 1000 {
		return fmt.Sprintf("%s MBps", commas(int64(kb/1000)))
	}
	return fmt.Sprintf("%d KBps", kb)
}

// unitTargetRow is the targets table's row (target, measured, status) for one search.
func unitTargetRow(u unitSearchResult, maxConns int, limit string) [3]string {
	target := fmt.Sprintf("%s: highest rate with p99 < 1 s and ≥ 99%% delivered, as Azure units", u.Scenario)
	if u.Err != "" {
		return [3]string{target, "not measured: " + u.Err, "unknown"}
	}
	var failed *searchStep
	for i := range u.Steps {
		if !u.Steps[i].Pass && u.Steps[i].Result != nil && (failed == nil || u.Steps[i].Point.out(u.Scenario) < failed.Point.out(u.Scenario)) {
			failed = &u.Steps[i]
		}
	}
	next := ""
	if failed != nil {
		next = fmt.Sprintf("; %s failed (%s)", failed.Point, failed.Why)
	}
	b, ok := u.best()
	if !ok {
		return [3]string{target, "no step passed" + next, "**below Unit1**"}
	}
	r := b.Result
	m := fmt.Sprintf("%s: %s in / %s out msg/s, p99 %.1f ms, %s delivered", b.Point, commasf(r.InPerSec), commasf(r.OutPerSec), r.Latency.P99, delivered(r))
	unit, ok := azureUnitFor(u.Scenario, r.Connected, r.OutPerSec)
	if !ok {
		return [3]string{target, m + " → below Unit1" + next, "**below Unit1**"}
	}
	m += fmt.Sprintf(" → **equals %s** (%s connections, %s out msg/s)", unit.name(), commas(int64(unit.Connections)), commas(int64(unit.out(u.Scenario))))
	if byOut, ok := azureUnitByOutbound(u.Scenario, r.OutPerSec); ok && byOut.Unit > unit.Unit {
		m += fmt.Sprintf("; its outbound alone equals %s's %s msg/s, with %s of that unit's %s connections", byOut.name(),
			commas(int64(byOut.out(u.Scenario))), commas(int64(r.Connected)), commas(int64(byOut.Connections)))
	}
	if failed == nil {
		m += fmt.Sprintf("; every step passed: the search stops at %s connections (%s) and Unit100's rate", commas(int64(maxConns)), limit)
	}
	return [3]string{target, m + next, "reported"}
}

// writeUnitsMarkdown writes the section on Azure units: the published figures, the method and the
// steps of both searches.
func writeUnitsMarkdown(w io.Writer, m machineInfo, rep unitReport, warmup, duration time.Duration) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Azure SignalR units\n\n")
	p("Azure SignalR Service's [performance guide](%s) rates each unit of its Standard tier by the highest\n", azureURL)
	p("throughput at which 99 %% of the messages arrive in under 1 s, with messages of 2,048 bytes, WebSockets,\n")
	p("an app server in default mode, and one message per second from each sending connection. Its figures\n")
	p("(echo: every connection sends 1 msg/s and the hub returns it to the caller; broadcast: 2 msg/s in, each\n")
	p("sent to every connection), read from MicrosoftDocs/azure-docs `articles/azure-signalr/signalr-concept-performance.md`\n")
	p("at commit f6db10cd (ms.date 03/23/2023); the current page has dropped Unit5 and Unit20 and added Unit200 to\n")
	p("Unit1000 (Premium_P2), with the same figures per unit:\n\n")
	p("| unit | connections | echo msg/s in = out | echo bandwidth in = out | broadcast msg/s in | broadcast msg/s out | broadcast bandwidth in / out |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, u := range azureUnits {
		p("| %s | %s | %s | %s | %d | %s | %s / %s |\n", u.name(), commas(int64(u.Connections)), commas(int64(u.EchoMsgs)), bandwidth(u.EchoMsgs),
			u.BroadcastIn, commas(int64(u.BroadcastOut)), bandwidth(u.BroadcastIn), bandwidth(u.BroadcastOut))
	}
	p("\n`make bench` offers each unit's load in turn, as the tables define it, so that a step that passes\n")
	p("delivers that unit's connections and messages: echo, the unit's connections each sending 1 msg/s of\n")
	p("2,048 bytes (the hub's `Echo` answers the caller); broadcast, the unit's connections, %d of which send\n", broadcastSenders)
	p("1 msg/s each (2 msg/s in), every message broadcast to all of them. A step passes when every client\n")
	p("connected and stayed connected (no errors), at least 99 %% of the messages sent in the window arrived,\n")
	p("and their p99 latency (send to receipt, app server included) is under 1 s. The search stops at the\n")
	p("first step that fails, then bisects twice between the last step that passed and it (in connections,\n")
	p("or in rate) to find the highest passing load more closely. A unit is met when the connections and the\n")
	p("outbound msg/s measured are at least its own (the outbound to within 1 %%, the delivery criterion's\n")
	p("slack). This machine can hold %s clients (%s):\n", commas(int64(rep.MaxConns)), rep.Limit)
	p("a unit with more connections is offered at the largest unit's connections that fit, at the rate that\n")
	p("gives its outbound msg/s (its bandwidth, not its connections: such a step cannot equal that unit).\n")
	p("One signalrd serves a whole search; clients are added or dropped between steps, which start once what\n")
	p("the previous step left in flight has arrived. Each step has %s of warm-up and %s measured (Azure\n", warmup, duration)
	p("measures 5 minutes). `delivered`, the msg/s and the latencies are by send time: the messages sent in\n")
	p("the window (a whole number of the senders' interval), whenever they arrive (a step waits up to 3 s for\n")
	p("them), so that no broadcast is split by the window's edges.\n\n")
	p("**Everything shares this one %d-core machine**: the load generator (every client and the Go app server\n", m.Cores)
	p("whose hub echoes or broadcasts) and signalrd, over loopback. Azure's figures are the service's alone,\n")
	p("measured with up to 50 client VMs (2 vCPU each) and 20 app server VMs (4 vCPU each) around it; here the\n")
	p("clients' and the app server's work is the larger share of the CPU (signalrd's own share is its CPU %% below).\n\n")
	p("| search | step | conns | senders × rate | offered msg/s in / out | in msg/s | out msg/s | delivered | p50 ms | p99 ms | max ms | errors | signalrd CPU %% | verdict |\n")
	p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, s := range rep.Searches {
		if s.Err != "" {
			p("| %s | - | | | | | | | | | | | | not run: %s |\n", s.Scenario, s.Err)
		}
		for i, st := range s.Steps {
			step := stepLabel(s.Scenario, st)
			sr := "all × " + fmt.Sprintf("%g/s", st.Point.Rate)
			if st.Point.Senders > 0 {
				sr = fmt.Sprintf("%d × %g/s", st.Point.Senders, st.Point.Rate)
			}
			verdict := "pass"
			if !st.Pass {
				verdict = "fail: " + st.Why
			}
			if i == s.Best {
				verdict = "**pass (highest)**"
			}
			offered := fmt.Sprintf("%s / %s", commasf(st.Point.in()), commasf(st.Point.out(s.Scenario)))
			r := st.Result
			if r == nil {
				p("| %s | %s | %s | %s | %s | | | | | | | | | %s |\n", s.Scenario, step, commas(int64(st.Point.Conns)), sr, offered, verdict)
				continue
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %d | %.0f | %s |\n", s.Scenario, step, commas(int64(r.Connected)), sr, offered,
				commasf(r.InPerSec), commasf(r.OutPerSec), delivered(r), r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Errors, r.CPUPercent, verdict)
		}
	}
	for _, s := range rep.Searches {
		for _, st := range s.Steps {
			if st.Result != nil && len(st.Result.ErrorText) > 0 {
				p("\n%s %s errors: %s\n", s.Scenario, st.Point, strings.Join(st.Result.ErrorText, "; "))
			}
		}
	}
	p("\n")
}

// stepLabel names a step: the unit whose load it offers, or "bisect".
func stepLabel(sc string, st searchStep) string {
	if st.Refine {
		return "bisect"
	}
	for _, u := range azureUnits {
		if float64(u.out(sc)) == st.Point.out(sc) {
			if u.Connections != st.Point.Conns {
				return u.name() + "'s msg/s"
			}
			return u.name()
		}
	}
	return "-"
}
