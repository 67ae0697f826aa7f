package appserver

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// hubRuntime is one mapped hub: its sockets (the SDK's service connection container), its client
// connections (the client connection manager) and its timers.
type hubRuntime struct {
	srv    *Server
	name   string
	id     string // hub id on the wire
	hub    *Hub
	codecs []hubproto.Codec
	log    *slog.Logger
	hc     *HubContext

	terminated  atomic.Bool  // no reconnects any more (Close/Shutdown)
	activeCount atomic.Int32 // len(conns), readable without mu

	mu      sync.Mutex
	conns   []*svcConn // sockets that completed the handshake and may be written to
	clients map[string]*clientConn
}

func newHubRuntime(s *Server, name string, h *Hub, codecs []hubproto.Codec) *hubRuntime {
	id := auth.HubID(s.opts.Application, name)
	rt := &hubRuntime{
		srv:     s,
		name:    name,
		id:      id,
		hub:     h,
		codecs:  codecs,
		log:     s.log.With("hub", id),
		clients: make(map[string]*clientConn),
	}
	rt.hc = &HubContext{
		Name:       name,
		ID:         id,
		Clients:    &Clients{h: rt},
		Groups:     &Groups{h: rt},
		UserGroups: &UserGroups{h: rt},
		h:          rt,
	}
	return rt
}

// start launches the sockets, the status ping and the client heartbeat. Called with srv.mu held.
func (h *hubRuntime) start(ctx context.Context) {
	s := h.srv
	for i := 0; i < s.opts.ConnectionCount; i++ {
		s.wg.Go(func() { h.runLink(ctx) })
	}
	if s.opts.ConnectionCount > 0 {
		// "when server connection count is specified to 0, the app server only handles negotiate"
		s.wg.Go(func() { h.statusPingLoop(ctx) })
	}
	s.wg.Go(func() { h.heartbeatLoop(ctx) })
}

// runLink keeps one fixed socket connected: reconnect at once after a drop, back off after a
// failed attempt (ServiceConnectionContainerBase.GetRetryDelay).
func (h *hubRuntime) runLink(ctx context.Context) {
	base := h.srv.opts.Timing.ReconnectBase
	attempt := 0
	for ctx.Err() == nil && !h.terminated.Load() {
		started := time.Now()
		connected := h.connectAndServe(ctx)
		if ctx.Err() != nil || h.terminated.Load() {
			return
		}
		// A socket that connected and lived a while is replaced at once, as the SDK does; one
		// that dropped right away counts as a failure so a flapping service is not hammered.
		if connected && time.Since(started) >= base {
			attempt = 0
			continue
		}
		d := retryDelay(base, attempt)
		attempt++
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// retryDelay is base × 1, 2, 4, 8, 16, 32, then 60, plus a random 0..base jitter.
func retryDelay(base time.Duration, attempt int) time.Duration {
	jitter := time.Duration(rand.Int64N(int64(base)))
	if attempt > 5 {
		return 60*base + jitter
	}
	return base<<attempt + jitter
}

// statusPingLoop sends ["status","1"] on one random socket every StatusPing period.
func (h *hubRuntime) statusPingLoop(ctx context.Context) {
	t := time.NewTicker(h.srv.opts.Timing.StatusPing)
	defer t.Stop()
	ping := svcproto.Ping{Values: []string{"status", "1"}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c := h.pick(nil, ""); c != nil {
				if err := c.send(ctx, ping); err != nil {
					h.log.Debug("status ping failed", "error", err)
				}
			}
		}
	}
}

// heartbeatLoop is HeartBeat.cs plus HubConnectionContext's tick handlers: keep-alive pings to
// idle clients, client timeouts and handshake timeouts.
func (h *hubRuntime) heartbeatLoop(ctx context.Context) {
	tick := h.srv.opts.Timing.Heartbeat
	// Short hub intervals (tests) need a finer tick to be honoured.
	for _, d := range []time.Duration{h.hub.keepAlive(), h.hub.clientTimeout(), h.hub.handshakeTimeout()} {
		tick = min(tick, max(d/4, time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := h.srv.now()
			for _, cc := range h.clientsSnapshot() {
				cc.tick(now)
			}
		}
	}
}

func (h *hubRuntime) clientsSnapshot() []*clientConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*clientConn, 0, len(h.clients))
	for _, cc := range h.clients {
		out = append(out, cc)
	}
	return out
}

func (h *hubRuntime) client(id string) *clientConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients[id]
}

func (h *hubRuntime) connsSnapshot() []*svcConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*svcConn(nil), h.conns...)
}

// addConn makes a socket writable for the hub.
func (h *hubRuntime) addConn(c *svcConn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	n := len(h.conns)
	h.activeCount.Store(int32(n))
	h.mu.Unlock()
	if n == 1 {
		h.srv.notify()
	}
}

// removeConn stops routing writes to a socket (closed, ServiceError or offline).
func (h *hubRuntime) removeConn(c *svcConn) {
	h.mu.Lock()
	removed := false
	for i, x := range h.conns {
		if x == c {
			h.conns = append(h.conns[:i:i], h.conns[i+1:]...)
			removed = true
			break
		}
	}
	n := len(h.conns)
	h.activeCount.Store(int32(n))
	h.mu.Unlock()
	if removed && n == 0 {
		h.srv.notify()
	}
}

// pick selects the socket for a message (ServiceConnectionContainerBase.SelectConnection): the
// caller's own socket inside a client scope, else a socket chosen by the partition key, else a
// random one. nil when none is usable.
func (h *hubRuntime) pick(scope *clientConn, key string) *svcConn {
	if scope != nil {
		if c := scope.boundConn(); c != nil && c.usable() {
			return c
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.conns)
	if n == 0 {
		return nil
	}
	if key != "" {
		f := fnv.New32a()
		_, _ = f.Write([]byte(key))
		return h.conns[int(f.Sum32()%uint32(n))]
	}
	return h.conns[rand.IntN(n)]
}

// writeAny writes m on a socket of the hub, re-selecting up to 3 times 200 ms apart when the
// chosen socket turns out to be gone (ServiceConnectionContainerBase.WriteMessageAsync).
func (h *hubRuntime) writeAny(ctx context.Context, scope *clientConn, key string, m svcproto.Message) error {
	buf, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return fmt.Errorf("appserver: encode %v: %w", m.Type(), err)
	}
	for retry := 1; ; retry++ {
		c := h.pick(scope, key)
		if c == nil {
			return fmt.Errorf("appserver: write %v to hub %q: %w", m.Type(), h.id, ErrNotConnected)
		}
		err := c.sendFrame(ctx, buf)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotConnected) || retry >= 3 {
			return fmt.Errorf("appserver: write %v to hub %q: %w", m.Type(), h.id, err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("appserver: write %v to hub %q: %w", m.Type(), h.id, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// writeAck sends an ack-able message built around a fresh ack id and waits for its Ack on any
// socket (ServiceConnectionContainerBase.WriteAckableMessageAsync). A missing Ack yields
// (AckTimeout, ErrAckTimeout) after Timing.Ack.
func (h *hubRuntime) writeAck(ctx context.Context, scope *clientConn, key, op string, build func(ackID int) svcproto.Message) (AckStatus, int, error) {
	id, ch := h.srv.acks.register()
	defer h.srv.acks.forget(id)
	if err := h.writeAny(ctx, scope, key, build(id)); err != nil {
		return 0, id, err
	}
	t := time.NewTimer(h.srv.opts.Timing.Ack)
	defer t.Stop()
	select {
	case st := <-ch:
		return st, id, nil
	case <-t.C:
		return AckTimeout, id, fmt.Errorf("appserver: %s (ackId: %d) timed out: %w", op, id, ErrAckTimeout)
	case <-ctx.Done():
		return 0, id, fmt.Errorf("appserver: %s (ackId: %d): %w", op, id, context.Cause(ctx))
	}
}

// ackBool maps an Ack the way AckHandler.HandleAckStatus does: Ok → true, NotFound → false,
// Timeout/InternalServerError → ErrAckTimeout, anything else → ErrAckStatus.
func (h *hubRuntime) ackBool(ctx context.Context, scope *clientConn, key, op string, build func(int) svcproto.Message) (bool, error) {
	st, id, err := h.writeAck(ctx, scope, key, op, build)
	if err != nil {
		return false, err
	}
	switch st {
	case AckOK:
		return true, nil
	case AckNotFound:
		return false, nil
	}
	return false, fmt.Errorf("appserver: %w", ackError(op, id, st))
}

// payloads serializes one Invocation per protocol of the hub (DefaultHubMessageSerializer).
func (h *hubRuntime) payloads(method string, args []any, only hubproto.Codec) (svcproto.Payloads, error) {
	return h.payloadsWithID("", method, args, only)
}

// payloadsWithID is payloads for an Invocation that expects a completion (client results).
func (h *hubRuntime) payloadsWithID(invocationID, method string, args []any, only hubproto.Codec) (svcproto.Payloads, error) {
	codecs := h.codecs
	if only != nil {
		codecs = []hubproto.Codec{only}
	}
	out := make(svcproto.Payloads, 0, len(codecs))
	for _, codec := range codecs {
		raws := make([]hubproto.Raw, len(args))
		for i, a := range args {
			r, err := codec.Marshal(a)
			if err != nil {
				return nil, fmt.Errorf("appserver: serialize argument %d of %q for %s: %w", i, method, codec.Name(), err)
			}
			raws[i] = r
		}
		frame, err := codec.Append(nil, hubproto.Invocation{InvocationID: invocationID, Target: method, Arguments: raws})
		if err != nil {
			return nil, fmt.Errorf("appserver: serialize %q for %s: %w", method, codec.Name(), err)
		}
		out = append(out, svcproto.Payload{Protocol: codec.Name(), Data: frame})
	}
	return out, nil
}

func (h *hubRuntime) codecFor(name string) hubproto.Codec {
	for _, c := range h.codecs {
		if equalFold(c.Name(), name) {
			return c
		}
	}
	return nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
