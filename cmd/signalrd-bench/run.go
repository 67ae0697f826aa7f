package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// result is one scenario run against one target.
type result struct {
	Target      string  `json:"target"`
	Nodes       int     `json:"nodes"` // signalrd nodes (2: with redis-server; CPU and RSS add up all three)
	Scenario    string  `json:"scenario"`
	Protocol    string  `json:"protocol"`
	Transport   string  `json:"transport"`
	Connections int     `json:"connections"`
	Connected   int     `json:"connected"`
	Size        int     `json:"size_bytes"`
	Rate        float64 `json:"rate"`
	RateUnit    string  `json:"rate_unit"`
	GroupSize   int     `json:"group_size,omitempty"`
	Seconds     float64 `json:"seconds"`

	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectRate    float64 `json:"connects_per_second"`

	Sent      uint64       `json:"sent"`
	Received  uint64       `json:"received"`
	Expected  uint64       `json:"expected"`
	InPerSec  float64      `json:"in_per_second"`
	OutPerSec float64      `json:"out_per_second"`
	Latency   latencyStats `json:"latency"`
	Errors    uint64       `json:"errors"`
	ErrorText []string     `json:"error_samples,omitempty"`

	PID          int     `json:"pid,omitempty"`
	CPUPercent   float64 `json:"cpu_percent"`
	RSSBytes     int64   `json:"rss_bytes"`
	RSSIdleBytes int64   `json:"rss_before_clients_bytes"`
	RSSPerClient float64 `json:"rss_per_client_bytes"`
}

// runScenario ramps up cfg.Connections clients on t, loads them for warmup+duration and measures
// the duration. progress (may be nil) gets a line every second.
func runScenario(ctx context.Context, cfg config, t target, progress io.Writer) (result, error) {
	res := result{
		Target: t.name(), Scenario: cfg.Scenario, Protocol: cfg.Protocol, Transport: "websockets",
		Connections: cfg.Connections, Size: cfg.Size, Rate: cfg.Rate, RateUnit: "msg/s per client", Nodes: max(cfg.Nodes, 1),
	}
	if pids := t.pids(); len(pids) > 0 {
		res.PID = pids[0]
	}
	if cfg.isREST() {
		res.RateUnit = "req/s total"
	}
	if cfg.Scenario == scGroup || cfg.Scenario == scBigGroup {
		res.GroupSize = cfg.GroupSize
	}
	rec := &recorder{}
	sample := func() procSample {
		var sum procSample
		for _, pid := range t.pids() {
			s, err := readProc(pid)
			if err != nil {
				rec.fail(ctx, "sample", err)
			}
			sum.CPUTicks += s.CPUTicks
			sum.RSSBytes += s.RSSBytes
		}
		return sum
	}
	idle := sample()
	res.RSSIdleBytes = idle.RSSBytes

	// Ramp-up: dial in parallel.
	conns := make([]clientConn, cfg.Connections)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(cfg.DialWorkers, cfg.Connections) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Connections || ctx.Err() != nil {
					return
				}
				c, err := t.dial(ctx, i, rec)
				if err != nil {
					rec.fail(ctx, "connect", err)
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	res.ConnectSeconds = time.Since(start).Seconds()
	live := conns[:0:0]
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	res.Connected = len(live)
	if res.ConnectSeconds > 0 {
		res.ConnectRate = float64(len(live)) / res.ConnectSeconds
	}
	defer closeAll(live)
	if len(live) == 0 {
		return res, fmt.Errorf("bench: no client connected: %v", rec.errorSamples())
	}
	if len(live) < len(conns) && cfg.Scenario == scConnection {
		return res, fmt.Errorf("bench: %d of %d clients failed to connect: %v", len(conns)-len(live), len(conns), rec.errorSamples())
	}
	if err := t.prepare(ctx, live); err != nil {
		return res, err
	}

	// Load.
	lctx, stopLoad := context.WithCancel(ctx)
	var senders sync.WaitGroup
	startSenders(lctx, cfg, t, conns, rec, &senders)
	for i, c := range live {
		senders.Go(func() {
			select {
			case <-c.done():
				if err := c.err(); err != nil {
					rec.fail(lctx, fmt.Sprintf("client %d closed", i), err)
				}
			case <-lctx.Done():
			}
		})
	}

	// The loop polls every 20 ms: it switches from warmup to measuring, ends the run and prints
	// progress once a second.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	phaseStart := time.Now()
	last, lastAt, lastProc := rec.snapshot(), phaseStart, sample()
	measuring := false
	var m0 counts
	var p0 procSample
loop:
	for {
		select {
		case <-ctx.Done():
			stopLoad()
			senders.Wait()
			return res, ctx.Err()
		case <-poll.C:
		}
		now := time.Now()
		if !measuring && now.Sub(phaseStart) >= cfg.Warmup {
			measuring, phaseStart = true, now
			m0, p0 = rec.snapshot(), sample()
			rec.measuring.Store(true)
		} else if measuring && now.Sub(phaseStart) >= cfg.Duration {
			rec.measuring.Store(false)
			m1, p1 := rec.snapshot(), sample()
			secs := now.Sub(phaseStart).Seconds()
			res.Seconds = secs
			res.Sent, res.Received, res.Expected = m1.sent-m0.sent, m1.received-m0.received, m1.expected-m0.expected
			res.InPerSec, res.OutPerSec = float64(res.Sent)/secs, float64(res.Received)/secs
			res.CPUPercent, res.RSSBytes = cpuPercent(p0, p1, secs), p1.RSSBytes
			if idle.RSSBytes > 0 {
				res.RSSPerClient = float64(p1.RSSBytes-idle.RSSBytes) / float64(len(live))
			}
			break loop
		}
		if dt := now.Sub(lastAt).Seconds(); dt >= 1 {
			cur, proc := rec.snapshot(), sample()
			if progress != nil {
				phase := "warmup"
				if measuring {
					phase = "measure"
				}
				fmt.Fprintf(progress, "[%s %s] %s %2.0fs conns=%d in=%.0f/s out=%.0f/s p99=%.1fms errors=%d cpu=%.0f%% rss=%.1fMB\n",
					t.name(), cfg.Scenario, phase, now.Sub(phaseStart).Seconds(), len(live),
					float64(cur.sent-last.sent)/dt, float64(cur.received-last.received)/dt, rec.hist.Snapshot().P99,
					cur.errors, cpuPercent(lastProc, proc, dt), float64(proc.RSSBytes)/(1<<20))
			}
			last, lastAt, lastProc = cur, now, proc
		}
	}
	stopLoad()
	senders.Wait()
	res.Latency = rec.hist.Snapshot()
	res.Errors = rec.errors.Load()
	res.ErrorText = rec.errorSamples()
	return res, nil
}

// startSenders starts the message sources: one goroutine per client, or cfg.RESTWorkers posting
// goroutines sharing the total rate. Each source starts at a random phase of its interval so the
// clients do not send in lock step.
func startSenders(ctx context.Context, cfg config, t target, conns []clientConn, rec *recorder, wg *sync.WaitGroup) {
	if cfg.Scenario == scIdle {
		return
	}
	if cfg.isREST() {
		var next atomic.Uint64
		workers := cfg.RESTWorkers
		interval := time.Duration(float64(time.Second) * float64(workers) / cfg.Rate)
		for range workers {
			wg.Go(func() {
				pace(ctx, interval, func() {
					i := int(next.Add(1)-1) % cfg.Connections
					if conns[i] == nil {
						return
					}
					if err := t.restSend(ctx, i, time.Now().UnixNano()); err != nil {
						rec.fail(ctx, "rest send", err)
						return
					}
					rec.sentOne(cfg.fanout(i))
				})
			})
		}
		return
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			pace(ctx, interval, func() {
				if err := c.send(ctx, time.Now().UnixNano()); err != nil {
					rec.fail(ctx, "send", err)
					return
				}
				rec.sentOne(cfg.fanout(i))
			})
		})
	}
}

// pace calls fn every interval until ctx ends. A source that falls behind skips the missed slots
// (open loop at the offered rate, never a burst to catch up), so a saturated target shows up as an
// achieved rate below the offered one.
func pace(ctx context.Context, interval time.Duration, fn func()) {
	if interval <= 0 {
		interval = time.Nanosecond
	}
	// The schedule starts at the random phase: slot k is at phase + k*interval. (Starting it at
	// now would put every source's second slot at the same instant, a burst of all the clients
	// once per interval whose queueing grew the latency with the number of clients.)
	phase := time.Duration(rand.Int64N(int64(interval)) + 1)
	timer := time.NewTimer(phase)
	defer timer.Stop()
	next := time.Now().Add(phase)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		fn()
		next = next.Add(interval)
		now := time.Now()
		if next.Before(now) {
			next = now
		}
		timer.Reset(next.Sub(now))
	}
}

// closeAll closes the clients in parallel (a sequential close of 10k WebSockets takes long).
func closeAll(conns []clientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.close(ctx)
		})
	}
	wg.Wait()
}
