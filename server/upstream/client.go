package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 16 << 20 // the emulator's limit
	DefaultQueueLimit       = 1024
	DefaultMaxConcurrency   = 64
	DefaultReloadInterval   = time.Second
)

// Completion error texts. The status-code and too-large texts are the emulator's (and Azure's).
const (
	errTextStatus   = "Invocation failed, status code %d"
	errTextTooLarge = "Invocation failed, response too large."
	errTextInvalid  = "Invocation failed, the upstream response is not a framed hub message."
	errTextQueue    = "Invocation failed, too many pending upstream calls for this connection."
	errTextStopped  = "Invocation failed, the service is shutting down."
	errTextNoMatch  = "No upstream is configured for hub '%s', event '%s'."
)

// Options configure a Client.
type Options struct {
	// Settings are static templates, used when SettingsFile is "".
	Settings Settings
	// SettingsFile is read by New and re-read by Run when its modification time or size changes
	// (checked every ReloadInterval). A file that cannot be read or parsed then keeps the previous
	// settings and logs the error once per change. A directory means its settings.json.
	SettingsFile string
	// Keys returns the access keys (primary, secondary) that sign X-ASRS-Signature; it is called
	// for every request, so rotated keys apply at once. nil or no keys: no signature header.
	Keys func() []string
	// Timeout bounds one call, response body included (default 30 s).
	Timeout time.Duration
	// MaxResponseBytes bounds the response of a blocking invocation (default 16 MiB).
	MaxResponseBytes int64
	// QueueLimit is the number of message events queued per connection (besides the one in
	// flight) before new ones are dropped, counted and logged (default 1024). Connection events
	// are never dropped.
	QueueLimit int
	// MaxConcurrency bounds the calls in flight across all connections (default 64).
	MaxConcurrency int
	// ReloadInterval is how often SettingsFile is checked (default 1 s).
	ReloadInterval time.Duration
	// HTTPClient sends the requests; nil means a private client whose idle connections Run closes
	// when it returns. Its own Timeout, if any, applies on top of Timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Stats are cumulative counters of a Client.
type Stats struct {
	Calls    uint64 // HTTP requests attempted
	Failures uint64 // requests that failed: network error, timeout, non-2xx, unusable invocation response
	Dropped  uint64 // events not sent: queue limit, or dispatched while stopping/stopped
	NoMatch  uint64 // events no template matched
}

// Client sends upstream events. Create it with New, start it with Run.
type Client struct {
	keys        func() []string
	timeout     time.Duration
	maxResp     int64
	queueLimit  int
	concurrency int
	reloadEvery time.Duration
	http        *http.Client
	ownHTTP     bool
	log         *slog.Logger
	file        string

	settings atomic.Pointer[liveSettings]
	fileStat fileStamp // the file as last read; owned by the watch goroutine after New
	lastErr  string    // the last reload problem logged, so a broken file is reported once

	calls, failures, dropped, noMatch atomic.Uint64

	started atomic.Bool

	mu       sync.Mutex
	cond     *sync.Cond // signalled when ready grows or stopping is set
	conns    map[string]*connQueue
	ready    []*connQueue // connections with queued jobs and no worker, in FIFO order
	stopping bool
}

// liveSettings is one generation of settings; the ManagedIdentity warning is given once per
// template per generation.
type liveSettings struct {
	*compiledSettings
	warned []atomic.Bool
}

func newLive(cs *compiledSettings) *liveSettings {
	return &liveSettings{compiledSettings: cs, warned: make([]atomic.Bool, len(cs.templates))}
}

type fileStamp struct {
	mod  time.Time
	size int64
}

type job struct {
	ev   Event
	url  string
	tmpl int // index in settings, for the ManagedIdentity warning
	live *liveSettings
	done func(Result)
}

// connQueue holds the jobs of one connection. A connection is either idle (absent from the map),
// ready (queued jobs, in c.ready), or busy (a worker is sending its head job).
type connQueue struct {
	id       string
	jobs     []job
	busy     bool
	dropping bool // a drop was logged since the queue last had room
}

// New validates the options and reads SettingsFile when set.
func New(o Options) (*Client, error) {
	c := &Client{
		keys:        o.Keys,
		timeout:     o.Timeout,
		maxResp:     o.MaxResponseBytes,
		queueLimit:  o.QueueLimit,
		concurrency: o.MaxConcurrency,
		reloadEvery: o.ReloadInterval,
		http:        o.HTTPClient,
		log:         o.Logger,
		file:        o.SettingsFile,
		conns:       map[string]*connQueue{},
	}
	c.cond = sync.NewCond(&c.mu)
	if c.timeout < 0 || c.maxResp < 0 || c.queueLimit < 0 || c.concurrency < 0 || c.reloadEvery < 0 {
		return nil, errors.New("upstream: new: Timeout, MaxResponseBytes, QueueLimit, MaxConcurrency and ReloadInterval must not be negative")
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxResp == 0 {
		c.maxResp = DefaultMaxResponseBytes
	}
	if c.queueLimit == 0 {
		c.queueLimit = DefaultQueueLimit
	}
	if c.concurrency == 0 {
		c.concurrency = DefaultMaxConcurrency
	}
	if c.reloadEvery == 0 {
		c.reloadEvery = DefaultReloadInterval
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.keys == nil {
		c.keys = func() []string { return nil }
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Every worker may talk to the same Functions host; the default of 2 idle connections per
		// host would re-dial constantly.
		tr.MaxIdleConnsPerHost = c.concurrency
		c.http = &http.Client{Transport: tr}
		c.ownHTTP = true
	}
	if c.file != "" {
		stamp, _ := c.stat() // a stat failure shows in LoadSettings
		s, err := LoadSettings(c.file)
		if err != nil {
			return nil, err
		}
		cs, err := compile(s, "Templates")
		if err != nil {
			return nil, err // unreachable: parsed settings are valid
		}
		c.fileStat = stamp
		c.settings.Store(newLive(cs))
		return c, nil
	}
	cs, err := compile(o.Settings, "Templates")
	if err != nil {
		return nil, fmt.Errorf("upstream: new: %w", err)
	}
	c.settings.Store(newLive(cs))
	return c, nil
}

// Settings returns the settings in use (normalized), e.g. to print them.
func (c *Client) Settings() Settings { return c.settings.Load().settings.Clone() }

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Calls: c.calls.Load(), Failures: c.failures.Load(), Dropped: c.dropped.Load(), NoMatch: c.noMatch.Load()}
}

// Match returns the URL of the first template matching the event. Names match
// case-insensitively; placeholders are replaced with escaped values.
func (c *Client) Match(hub, category, event string) (url string, ok bool) {
	_, url, ok = c.settings.Load().match(hub, category, event)
	return url, ok
}

// Dispatch queues ev for its upstream and returns at once. done is called exactly once: with the
// outcome once the call ends, or before Dispatch returns when no template matches, the
// connection's queue is full, or the Client is stopping. Events of one ConnectionID are sent one
// at a time in Dispatch order and the done calls of sent events follow that order; an immediate
// result (no match, dropped) may overtake earlier events still queued. done must not block for
// long (it holds a worker) and must not panic. The template is chosen when Dispatch is called,
// so a reload does not redirect events already queued.
//
// Dispatch before Run queues the event until Run starts.
//
// Without a matching template, an invocation with an id gets the error Completion
// "No upstream is configured for hub '<hub>', event '<event>'." so the caller's invoke does not
// hang (the emulator drops it silently); anything else gets an empty Result.
func (c *Client) Dispatch(ev Event, done func(Result)) {
	if done == nil {
		done = func(Result) {}
	}
	live := c.settings.Load()
	tmpl, url, ok := live.match(ev.Hub, ev.Category, ev.Event)
	if !ok {
		c.noMatch.Add(1)
		c.log.Debug("no upstream template matches", "hub", ev.Hub, "category", ev.Category, "event", ev.Event)
		done(c.errorResult(ev, fmt.Sprintf(errTextNoMatch, ev.Hub, ev.Event)))
		return
	}
	j := job{ev: ev, url: url, tmpl: tmpl, live: live, done: done}

	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		c.dropped.Add(1)
		done(c.errorResult(ev, errTextStopped))
		return
	}
	q := c.conns[ev.ConnectionID]
	if q == nil {
		q = &connQueue{id: ev.ConnectionID}
		c.conns[ev.ConnectionID] = q
	}
	if len(q.jobs) >= c.queueLimit && ev.Category != CategoryConnections {
		first := !q.dropping
		q.dropping = true
		c.mu.Unlock()
		c.dropped.Add(1)
		if first {
			c.log.Warn("upstream queue full, dropping events", "connection", ev.ConnectionID, "hub", ev.Hub, "limit", c.queueLimit)
		}
		done(c.errorResult(ev, errTextQueue))
		return
	}
	q.jobs = append(q.jobs, j)
	if !q.busy && len(q.jobs) == 1 {
		c.ready = append(c.ready, q)
		c.cond.Signal()
	}
	c.mu.Unlock()
}

// Run runs the workers and, with a SettingsFile, the reload loop, until ctx ends. In-flight calls
// are then cancelled (their invocations get the status-500 error), queued events are finished
// with the shutting-down error, and Run returns once every goroutine it started has. Later
// Dispatch calls finish at once. Run may be called once; further calls return immediately.
func (c *Client) Run(ctx context.Context) {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range c.concurrency {
		wg.Go(func() { c.worker(ctx) })
	}
	if c.file != "" {
		wg.Go(func() { c.watch(ctx) })
	}
	<-ctx.Done()

	c.mu.Lock()
	c.stopping = true
	var pending []job
	for _, q := range c.ready {
		pending = append(pending, q.jobs...)
		q.jobs = nil
	}
	c.ready = nil
	for _, q := range c.conns {
		// A busy connection's queued jobs: the worker finds none left and goes away.
		pending = append(pending, q.jobs...)
		q.jobs = nil
	}
	c.cond.Broadcast()
	c.mu.Unlock()

	wg.Wait()
	// Workers are gone, so these done calls still follow each connection's in-flight one.
	for _, j := range pending {
		c.dropped.Add(1)
		j.done(c.errorResult(j.ev, errTextStopped))
	}
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
}

func (c *Client) worker(ctx context.Context) {
	for {
		c.mu.Lock()
		for len(c.ready) == 0 && !c.stopping {
			c.cond.Wait()
		}
		// Once ctx ends, Run fails whatever is still queued: a worker finishing an in-flight call
		// must not start the next one before Run gets the lock.
		if c.stopping || ctx.Err() != nil {
			c.mu.Unlock()
			return
		}
		q := c.ready[0]
		c.ready[0] = nil
		c.ready = c.ready[1:]
		j := q.jobs[0]
		q.jobs[0] = job{}
		q.jobs = q.jobs[1:]
		q.busy = true
		if len(q.jobs) < c.queueLimit {
			q.dropping = false
		}
		c.mu.Unlock()

		res := c.send(ctx, &j)
		j.done(res)

		c.mu.Lock()
		q.busy = false
		switch {
		case len(q.jobs) > 0 && !c.stopping:
			// Back of the line: one busy connection cannot starve the others.
			c.ready = append(c.ready, q)
			c.cond.Signal()
		case len(q.jobs) == 0 && c.conns[q.id] == q:
			delete(c.conns, q.id)
		}
		c.mu.Unlock()
	}
}

// stat returns the settings file's modification time and size.
func (c *Client) stat() (fileStamp, error) {
	fi, err := os.Stat(c.file)
	if err == nil && fi.IsDir() {
		fi, err = os.Stat(filepath.Join(c.file, SettingsFileName))
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

func (c *Client) watch(ctx context.Context) {
	t := time.NewTicker(c.reloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.reload()
		}
	}
}

// reload re-reads the settings file when its modification time or size changed. A missing or
// broken file keeps the previous settings; each distinct problem is logged once.
func (c *Client) reload() {
	st, err := c.stat()
	if err != nil {
		c.fileStat = fileStamp{} // whatever reappears is read
		c.reloadProblem("upstream settings file unavailable, keeping the previous settings", err)
		return
	}
	if st.mod.Equal(c.fileStat.mod) && st.size == c.fileStat.size {
		return
	}
	c.fileStat = st
	s, err := LoadSettings(c.file)
	if err != nil {
		c.reloadProblem("upstream settings file rejected, keeping the previous settings", err)
		return
	}
	cs, err := compile(s, "Templates")
	if err != nil {
		c.reloadProblem("upstream settings file rejected, keeping the previous settings", err)
		return
	}
	c.settings.Store(newLive(cs))
	c.lastErr = ""
	c.log.Info("upstream settings reloaded", "file", c.file, "templates", len(cs.templates))
}

func (c *Client) reloadProblem(msg string, err error) {
	if err.Error() == c.lastErr {
		return
	}
	c.lastErr = err.Error()
	c.log.Error(msg, "file", c.file, "err", err)
}
