package appserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Server is one app-server process: it owns the sockets of every mapped hub, the client
// connections they carry and the process-wide ack ids. Create it with New, map hubs, then Start.
type Server struct {
	opts    Options
	cs      auth.ConnectionString
	log     *slog.Logger
	epoch   time.Time // monotonic base for timestamps kept in atomics
	acks    ackTable
	results callerResults // client-result invocations made by this process

	// clientCount counts client connections of all hubs: the SDK's "#clientInHub" ping value is
	// its process-wide ClientConnectionManager.Count.
	clientCount atomic.Int64
	// lastRequestID keeps negotiate request ids strictly increasing.
	lastRequestID atomic.Int64

	mu      sync.Mutex
	hubs    map[string]*hubRuntime // by lower-case hub name
	order   []*hubRuntime
	state   int // stateNew, stateStarted, stateClosed
	ctx     context.Context
	cancel  context.CancelFunc
	changed chan struct{} // closed and replaced whenever a hub gains or loses its last socket
	wg      sync.WaitGroup
}

const (
	stateNew = iota
	stateStarted
	stateClosed
)

// New validates opts and returns an unstarted Server.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cs, err := auth.ParseConnectionString(opts.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("appserver: new: %w", err)
	}
	opts = opts.withDefaults()
	s := &Server{
		opts:    opts,
		cs:      cs,
		log:     opts.Logger.With("component", "appserver"),
		epoch:   time.Now(),
		hubs:    make(map[string]*hubRuntime),
		changed: make(chan struct{}),
	}
	s.acks.init()
	s.results.init()
	return s, nil
}

// ServerID is the id this process announces (X-ASRS-Server-Id).
func (s *Server) ServerID() string { return s.opts.ServerID }

// MapHub registers h under name (the hub id is auth.HubID(Options.Application, name)). Mapping
// after Start connects the hub at once. It panics on a duplicate name (case-insensitive, since
// hub ids are lower-case) or an unsupported protocol in h.Protocols.
func (s *Server) MapHub(name string, h *Hub) *HubContext {
	if name == "" || h == nil {
		panic("appserver: MapHub needs a name and a hub")
	}
	protos := h.Protocols
	if len(protos) == 0 {
		protos = s.opts.Protocols
	}
	var codecs []hubproto.Codec
	for _, p := range protos {
		c, ok := hubproto.CodecFor(p)
		if !ok {
			panic(fmt.Sprintf("appserver: hub %q: protocol %q is not supported", name, p))
		}
		codecs = append(codecs, c)
	}
	rt := newHubRuntime(s, name, h, codecs)

	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(name)
	if _, dup := s.hubs[key]; dup {
		panic(fmt.Sprintf("appserver: hub %q is already mapped", name))
	}
	s.hubs[key] = rt
	s.order = append(s.order, rt)
	if s.state == stateStarted {
		rt.start(s.ctx)
	}
	s.notifyLocked()
	return rt.hc
}

// Hub returns the HubContext of a mapped hub (IHubContext<THub>), usable outside hub calls, or
// nil when no hub is mapped under name.
func (s *Server) Hub(name string) *HubContext {
	if rt := s.hub(name); rt != nil {
		return rt.hc
	}
	return nil
}

func (s *Server) hub(name string) *hubRuntime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hubs[strings.ToLower(name)]
}

// Start opens Options.ConnectionCount sockets for every mapped hub and keeps them connected
// (reconnecting with back-off) until Close or Shutdown. It does not wait for the sockets; use
// Ready for that. ctx only carries values: cancelling it later does not stop the Server.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStarted:
		return errors.New("appserver: start: already started")
	case stateClosed:
		return fmt.Errorf("appserver: start: %w", ErrClosed)
	}
	s.state = stateStarted
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, rt := range s.order {
		rt.start(s.ctx)
	}
	return nil
}

// Ready blocks until every mapped hub has at least one connected socket (the endpoint is
// "online"), ctx ends, or the Server is closed.
func (s *Server) Ready(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.state == stateClosed {
			s.mu.Unlock()
			return fmt.Errorf("appserver: ready: %w", ErrClosed)
		}
		ready := s.state == stateStarted
		for _, rt := range s.order {
			if rt.activeCount.Load() == 0 {
				ready = false
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("appserver: ready: %w", context.Cause(ctx))
		}
	}
}

// notify wakes Ready. Callers must not hold s.mu.
func (s *Server) notify() {
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close stops every socket at once (WebSocket close 1000), ends all client connections
// (OnDisconnected runs with a nil error, as when the SDK loses its sockets) and waits for the
// Server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return nil
	}
	started := s.state == stateStarted
	s.state = stateClosed
	hubs := append([]*hubRuntime(nil), s.order...)
	s.notifyLocked()
	s.mu.Unlock()
	if !started {
		return nil
	}
	for _, rt := range hubs {
		rt.terminated.Store(true)
	}
	var wg sync.WaitGroup
	for _, rt := range hubs {
		for _, c := range rt.connsSnapshot() {
			wg.Go(func() { c.closeGracefully() })
		}
	}
	wg.Wait()
	s.cancel()
	s.wg.Wait()
	// Completions for clients of other servers can no longer arrive.
	s.results.failAll(ErrClosed)
	return nil
}

// Shutdown stops the Server gracefully according to Options.GracefulShutdown
// (ServiceHubDispatcher.ShutdownAsync): with ShutdownOff it is Close. Otherwise it sends
// ["shutdown","fin:N"] on every socket and waits for "finack" (5 s per attempt, up to 24
// attempts), waits until all client connections have ended, then closes. ctx bounds the graceful
// part (the SDK's GracefulShutdown.Timeout); when it ends the Server is closed anyway and the
// context's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.state == stateStarted
	hubs := append([]*hubRuntime(nil), s.order...)
	s.mu.Unlock()
	if !started || s.opts.GracefulShutdown == ShutdownOff {
		return s.Close()
	}
	fin := "fin:" + fmt.Sprint(int(s.opts.GracefulShutdown))
	var wg sync.WaitGroup
	for _, rt := range hubs {
		rt.terminated.Store(true)
		for _, c := range rt.connsSnapshot() {
			wg.Go(func() { c.offline(ctx, fin) })
		}
	}
	wg.Wait()
	var err error
	if ctx.Err() == nil {
		err = s.waitClientsGone(ctx)
	} else {
		err = fmt.Errorf("appserver: shutdown: %w", context.Cause(ctx))
	}
	_ = s.Close()
	return err
}

func (s *Server) waitClientsGone(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.clientCount.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("appserver: shutdown: waiting for clients: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// now is a monotonic timestamp in nanoseconds, cheap to keep in atomics.
func (s *Server) now() int64 { return int64(time.Since(s.epoch)) }

// ackTable hands out process-wide ack ids (from 1, like AckHandler.Singleton) and routes Acks
// from any socket of any hub to the waiting call.
type ackTable struct {
	mu      sync.Mutex
	next    int
	waiters map[int]chan svcproto.AckStatus
}

func (t *ackTable) init() { t.waiters = make(map[int]chan svcproto.AckStatus) }

func (t *ackTable) register() (int, chan svcproto.AckStatus) {
	ch := make(chan svcproto.AckStatus, 1)
	t.mu.Lock()
	t.next++
	if t.next <= 0 || t.next > 1<<31-1 { // ack ids are int32 on the wire
		t.next = 1
	}
	id := t.next
	t.waiters[id] = ch
	t.mu.Unlock()
	return id, ch
}

func (t *ackTable) resolve(id int, st svcproto.AckStatus) {
	t.mu.Lock()
	ch, ok := t.waiters[id]
	delete(t.waiters, id)
	t.mu.Unlock()
	if ok {
		ch <- st
	}
}

func (t *ackTable) forget(id int) {
	t.mu.Lock()
	delete(t.waiters, id)
	t.mu.Unlock()
}
