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

	Senders int `json:"senders,omitempty"` // clients that sent (0: all)
}

// runScenario ramps up cfg.Connections clients on t, loads them for warmup+duration and measures
// the duration. progress (may be nil) gets a line every second.
func runScenario(ctx context.Context, cfg config, t target, progress io.Writer) (result, error) {
	s := openSession(ctx, cfg, t)
	defer s.close()
	if err := s.grow(ctx, cfg.Connections); err != nil {
		return s.base(cfg), err
	}
	if len(s.live()) < cfg.Connections && cfg.Scenario == scConnection {
		return s.base(cfg), fmt.Errorf("bench: %d of %d clients failed to connect: %v", cfg.Connections-len(s.live()), cfg.Connections, s.rec.errorSamples())
	}
	if err := t.prepare(ctx, s.live()); err != nil {
		return s.base(cfg), err
	}
	return s.measure(ctx, cfg, progress)
}

// session is a target with clients connected to it, loaded in one or more phases (measure): a
// single run (runScenario) or the steps of a search (runUnitSearch), which add or drop clients
// between phases (grow, shrink) instead of reconnecting all of them for every step.
type session struct {
	cfg  config // the run's options (Scenario, GroupSize, DialWorkers …); a phase sets its own load
	t    target
	rec  *recorder
	idle procSample // before any client
	// conns[i] is client i (nil when it failed to connect).
	conns []clientConn
	// Ramp-up of the last grow.
	connectSeconds float64
	connected      int
	// Watchers report clients that end during the session.
	wctx     context.Context
	wstop    context.CancelFunc
	watchers sync.WaitGroup
	errBase  uint64 // errors counted before the current phase
	// bySend measures each phase by send time (see recorder): the unit searches.
	bySend bool
}

func openSession(ctx context.Context, cfg config, t target) *session {
	s := &session{cfg: cfg, t: t, rec: &recorder{}}
	s.wctx, s.wstop = context.WithCancel(ctx)
	s.idle = s.sample(ctx)
	return s
}

// sample adds up the CPU time and RSS of the target's processes.
func (s *session) sample(ctx context.Context) procSample {
	var sum procSample
	for _, pid := range s.t.pids() {
		p, err := readProc(pid)
		if err != nil {
			s.rec.fail(ctx, "sample", err)
		}
		sum.CPUTicks += p.CPUTicks
		sum.RSSBytes += p.RSSBytes
	}
	return sum
}

// live returns the connected clients.
func (s *session) live() []clientConn {
	live := make([]clientConn, 0, len(s.conns))
	for _, c := range s.conns {
		if c != nil {
			live = append(live, c)
		}
	}
	return live
}

// grow dials clients len(conns)..n-1 in parallel (--dial-concurrency at a time). It fails only when
// no client at all is connected; failed dials count as errors.
func (s *session) grow(ctx context.Context, n int) error {
	from := len(s.conns)
	if n <= from {
		return nil
	}
	s.conns = append(s.conns, make([]clientConn, n-from)...)
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	start := time.Now()
	for range min(s.cfg.DialWorkers, n-from) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := s.t.dial(ctx, i, s.rec)
				if err != nil {
					s.rec.fail(ctx, "connect", err)
					continue
				}
				s.conns[i] = c
			}
		})
	}
	wg.Wait()
	s.connectSeconds = time.Since(start).Seconds()
	s.connected = 0
	for i, c := range s.conns[from:] {
		if c == nil {
			continue
		}
		s.connected++
		s.watchers.Go(func() {
			select {
			case <-c.done():
				if err := c.err(); err != nil {
					s.rec.fail(s.wctx, fmt.Sprintf("client %d closed", from+i), err)
				}
			case <-s.wctx.Done():
			}
		})
	}
	if len(s.live()) == 0 {
		return fmt.Errorf("bench: no client connected: %v", s.rec.errorSamples())
	}
	return ctx.Err()
}

// shrink closes clients n.. (their watchers see a close without error).
func (s *session) shrink(n int) {
	if n >= len(s.conns) {
		return
	}
	var drop []clientConn
	for _, c := range s.conns[n:] {
		if c != nil {
			drop = append(drop, c)
		}
	}
	closeAll(drop)
	s.conns = s.conns[:n]
}

func (s *session) close() {
	s.wstop()
	s.watchers.Wait()
	closeAll(s.live())
}

// base is a result's description of the phase cfg (before anything is measured).
func (s *session) base(cfg config) result {
	res := result{
		Target: s.t.name(), Scenario: cfg.Scenario, Protocol: cfg.Protocol, Transport: "websockets",
		Connections: cfg.Connections, Size: cfg.Size, Rate: cfg.Rate, RateUnit: "msg/s per client", Nodes: max(cfg.Nodes, 1),
		Senders: cfg.Senders, Connected: len(s.live()), ConnectSeconds: s.connectSeconds, RSSIdleBytes: s.idle.RSSBytes,
	}
	if pids := s.t.pids(); len(pids) > 0 {
		res.PID = pids[0]
	}
	if cfg.isREST() {
		res.RateUnit = "req/s total"
	}
	if cfg.Scenario == scGroup || cfg.Scenario == scBigGroup {
		res.GroupSize = cfg.GroupSize
	}
	if s.connectSeconds > 0 {
		res.ConnectRate = float64(s.connected) / s.connectSeconds
	}
	return res
}

// measure loads the first cfg.Connections clients at cfg.Rate (cfg.Senders of them when set) for
// cfg.Warmup + cfg.Duration and measures the duration; the latencies are those of this phase.
// progress (may be nil) gets a line every second.
func (s *session) measure(ctx context.Context, cfg config, progress io.Writer) (result, error) {
	res := s.base(cfg)
	rec := s.rec
	conns := s.conns[:min(cfg.Connections, len(s.conns))]
	live := 0
	for _, c := range conns {
		if c != nil {
			live++
		}
	}
	res.Connected = live
	rec.hist.reset()

	// Load.
	lctx, stopLoad := context.WithCancel(ctx)
	var senders sync.WaitGroup
	startSenders(lctx, ctx, cfg, s.t, conns, rec, &senders)

	// The loop polls every 20 ms: it switches from warmup to measuring, ends the run and prints
	// progress once a second.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	phaseStart := time.Now()
	last, lastAt, lastProc := rec.snapshot(), phaseStart, s.sample(ctx)
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
			if s.bySend {
				// The window opens a little ahead so that no sender holds a later stamp yet.
				phaseStart = now.Add(sendWindowLead)
				rec.openSendWindow(phaseStart.UnixNano())
				time.Sleep(sendWindowLead)
			}
			m0, p0 = rec.snapshot(), s.sample(ctx)
			rec.measuring.Store(true)
		} else if measuring && now.Sub(phaseStart) >= cfg.Duration {
			rec.measuring.Store(false)
			end := now
			if s.bySend {
				end = sendWindowEnd(phaseStart, now.Add(sendWindowLead), cfg)
				rec.closeSendWindow(end.UnixNano())
				time.Sleep(time.Until(end))
			}
			m1, p1 := rec.snapshot(), s.sample(ctx)
			secs := end.Sub(phaseStart).Seconds()
			res.Seconds = secs
			res.Sent, res.Received, res.Expected = m1.sent-m0.sent, m1.received-m0.received, m1.expected-m0.expected
			res.InPerSec, res.OutPerSec = float64(res.Sent)/secs, float64(res.Received)/secs
			res.CPUPercent, res.RSSBytes = cpuPercent(p0, p1, secs), p1.RSSBytes
			if s.idle.RSSBytes > 0 && live > 0 {
				res.RSSPerClient = float64(p1.RSSBytes-s.idle.RSSBytes) / float64(live)
			}
			break loop
		}
		if dt := now.Sub(lastAt).Seconds(); dt >= 1 {
			cur, proc := rec.snapshot(), s.sample(ctx)
			if progress != nil {
				phase := "warmup"
				if measuring {
					phase = "measure"
				}
				fmt.Fprintf(progress, "[%s %s] %s %2.0fs conns=%d in=%.0f/s out=%.0f/s p99=%.1fms errors=%d cpu=%.0f%% rss=%.1fMB\n",
					s.t.name(), cfg.Scenario, phase, now.Sub(phaseStart).Seconds(), live,
					float64(cur.sent-last.sent)/dt, float64(cur.received-last.received)/dt, rec.hist.Snapshot().P99,
					cur.errors, cpuPercent(lastProc, proc, dt), float64(proc.RSSBytes)/(1<<20))
			}
			last, lastAt, lastProc = cur, now, proc
		}
	}
	stopLoad()
	senders.Wait()
	if s.bySend {
		// What was sent in the window and is still on its way counts when it arrives.
		s.settleWindow(ctx)
		rec.stopSendWindow()
		res.Sent, res.Expected, res.Received = rec.sentWin.Load(), rec.expectedWin.Load(), rec.receivedWin.Load()
		res.InPerSec, res.OutPerSec = float64(res.Sent)/res.Seconds, float64(res.Received)/res.Seconds
	}
	res.Latency = rec.hist.Snapshot()
	errs := rec.errors.Load()
	res.Errors = errs - s.errBase
	s.errBase = errs
	res.ErrorText = rec.takeErrorSamples()
	return res, nil
}

// sendWindowLead is how far ahead of the clock a send window opens and closes (bySend).
const sendWindowLead = 20 * time.Millisecond

// sendWindowEnd is the end of a send window opened at start that closes at the earliest at
// earliest: a whole number of the senders' interval after start, so that each sender, paced at a
// fixed interval, sends the same number of messages in any such window whatever its phase (with a
// few senders, as in broadcast, one message more or less would move the rates by percents).
func sendWindowEnd(start, earliest time.Time, cfg config) time.Time {
	if cfg.isREST() || cfg.Rate <= 0 {
		return earliest
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate) // as pace gets it
	if interval <= 0 {
		return earliest
	}
	k := (earliest.Sub(start) + interval - 1) / interval
	return start.Add(k * interval)
}

// settleWindow waits for the deliveries of the messages sent in the window: until all arrived, or
// none arrived for 500 ms, or for 3 s (a message later than that is far past Azure's 1 s).
func (s *session) settleWindow(ctx context.Context) {
	deadline := time.Now().Add(3 * time.Second)
	last, lastChange := s.rec.receivedWin.Load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil && s.rec.receivedWin.Load() < s.rec.expectedWin.Load() {
		time.Sleep(20 * time.Millisecond)
		if cur := s.rec.receivedWin.Load(); cur != last {
			last, lastChange = cur, time.Now()
		} else if time.Since(lastChange) >= 500*time.Millisecond {
			return
		}
	}
}

// settle waits until no message has arrived for quiet (at most max): what a phase left in flight
// is delivered before the next one starts.
func (s *session) settle(ctx context.Context, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	last, lastChange := s.rec.received.Load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(quiet / 4)
		if cur := s.rec.received.Load(); cur != last {
			last, lastChange = cur, time.Now()
		} else if time.Since(lastChange) >= quiet {
			return
		}
	}
}

// startSenders starts the message sources: one goroutine per client (per sender with cfg.Senders),
// or cfg.RESTWorkers posting goroutines sharing the total rate. Each source starts at a random phase
// of its interval so the clients do not send in lock step. They stop when stop ends; a send under
// way then completes (it takes ctx: cancelling a WebSocket write mid-frame closes the connection,
// which a session's next phase still needs).
func startSenders(stop, ctx context.Context, cfg config, t target, conns []clientConn, rec *recorder, wg *sync.WaitGroup) {
	if cfg.Scenario == scIdle {
		return
	}
	if cfg.isREST() {
		var next atomic.Uint64
		workers := cfg.RESTWorkers
		interval := time.Duration(float64(time.Second) * float64(workers) / cfg.Rate)
		for range workers {
			wg.Go(func() {
				pace(stop, interval, func() {
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
		if cfg.Senders > 0 && i >= cfg.Senders {
			break
		}
		if c == nil {
			continue
		}
		wg.Go(func() {
			pace(stop, interval, func() {
				ts := time.Now().UnixNano()
				if err := c.send(ctx, ts); err != nil {
					rec.fail(ctx, "send", err)
					return
				}
				rec.sentAt(ts, cfg.fanout(i))
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
