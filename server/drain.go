package server

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// Graceful shutdown of one node (Serve calls drain once /readyz already fails and the listener is
// closing):
//
//  1. Every client gets a SignalR Close with allowReconnect: true, in batches spread evenly over
//     Config.DrainWindow (capped at half of ShutdownTimeout), so thousands of clients do not
//     reconnect to the remaining nodes in the same instant. The order is stable (instance, hub,
//     connection id) and a final sweep catches clients that arrived meanwhile.
//  2. The app-server links stay up until then, so the app server sees each CloseConnection and
//     can still send to clients being drained. Then each link is closed with a clean WebSocket
//     close (1001 going away). The SDK treats any socket close as "reconnect with back-off"
//     (1 s, 2 s, 4 s… plus jitter) to the same endpoint, which behind a load balancer is another
//     node. An `offline` ping is deliberately not sent: it makes the SDK drop the clients of the
//     socket, which is only right when a service instance died without closing them.

const (
	drainMinTick     = 10 * time.Millisecond // batches are at least this far apart
	drainLinkGrace   = time.Second           // wait for drained clients to finish before closing links
	drainProgressLog = time.Second
	reasonShutdown   = "Service is shutting down."
	linkCloseTimeout = 2 * time.Second // bound on the clean close handshake of one link
)

// drain closes every client, spread over the drain window, then every app-server link. It
// returns when done or when ctx (the shutdown bound) ends.
func (s *Server) drain(ctx context.Context) {
	window := s.cfg.DrainWindow
	if half := s.cfg.ShutdownTimeout / 2; window > half {
		window = half
	}
	clients := s.drainOrder()
	start := time.Now()
	s.log.Info("draining clients", "clients", len(clients), "window", max(window, 0))
	closeBatches(ctx, clients, window, func(done, total int) {
		s.log.Info("draining clients", "closed", done, "remaining", total-done)
	})
	// Clients that connected while the batches went out (an open keep-alive connection, a
	// negotiation completed just before the listener closed).
	late := 0
	for _, c := range s.drainOrder() {
		if !c.done() && c.closeKind.Load() == nil {
			c.drainClose()
			late++
		}
	}
	s.waitClientsDone(ctx, clients)
	var links int
	for _, in := range s.instances {
		for _, h := range in.hubSnapshot() {
			for _, l := range h.linkSnapshot() {
				l.goAway()
				links++
			}
		}
	}
	s.log.Info("clients drained", "clients", len(clients)+late, "links_closed", links, "took", time.Since(start).Round(time.Millisecond))
}

// drainOrder lists every client of the node in a stable order: instances in configuration
// order, then hub id, then connection id. Negotiated-but-unconnected clients are included.
func (s *Server) drainOrder() []*client {
	var out []*client
	for _, in := range s.instances {
		seen := map[*client]bool{}
		var cs []*client
		add := func(c *client) {
			if !seen[c] {
				seen[c] = true
				cs = append(cs, c)
			}
		}
		for _, h := range in.hubSnapshot() {
			for _, c := range h.clientSnapshot() {
				add(c)
			}
		}
		for _, c := range in.connSnapshot() {
			add(c)
		}
		slices.SortFunc(cs, func(a, b *client) int {
			return cmp.Or(cmp.Compare(a.hub.id, b.hub.id), cmp.Compare(a.id, b.id))
		})
		out = append(out, cs...)
	}
	return out
}

// closeBatches closes clients with a reconnectable Close in batches, the first at once and the
// rest on a ticker so the last goes out at window*(batches-1)/batches. A window <= 0, or ctx
// ending, closes whatever is left at once. progress is called about once a second.
func closeBatches(ctx context.Context, clients []*client, window time.Duration, progress func(done, total int)) {
	n := len(clients)
	batches := 1
	if window > 0 {
		batches = int(min(int64(n), int64(window/drainMinTick)))
	}
	batches = max(batches, 1)
	closeRange := func(from, to int) {
		for _, c := range clients[from:to] {
			c.drainClose()
		}
	}
	// Batch k covers [k*n/batches, (k+1)*n/batches): sizes differ by at most one.
	bound := func(k int) int { return k * n / batches }
	closeRange(0, bound(1))
	if batches == 1 {
		return
	}
	t := time.NewTicker(window / time.Duration(batches))
	defer t.Stop()
	lastLog := time.Now()
	for k := 1; k < batches; k++ {
		select {
		case <-ctx.Done():
			closeRange(bound(k), n)
			return
		case now := <-t.C:
			closeRange(bound(k), bound(k+1))
			if now.Sub(lastLog) >= drainProgressLog {
				lastLog = now
				progress(bound(k+1), n)
			}
		}
	}
}

// drainClose ends a client for the shutdown: a reconnectable Close after what is queued, or, for
// a negotiated connection no transport has opened yet, nothing to say: it just ends.
func (c *client) drainClose() {
	if c.expiresAt.Load() != 0 {
		c.finish(closeReasonService, reasonShutdown)
		return
	}
	c.closeWith(closeReasonService, reasonShutdown, true)
}

// waitClientsDone waits, at most drainLinkGrace, for closed clients to finish, so their app
// servers get the CloseConnection before the links go.
func (s *Server) waitClientsDone(ctx context.Context, clients []*client) {
	ctx, cancel := context.WithTimeout(ctx, drainLinkGrace)
	defer cancel()
	t := time.NewTicker(drainMinTick)
	defer t.Stop()
	for _, c := range clients {
		for !c.done() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

// goAway ends the link as part of a shutdown: runLink then closes the socket cleanly.
func (l *link) goAway() {
	l.goingAway.Store(true)
	l.cancel()
}

// closeSocket ends an app-server socket after runLink's relay stopped: a clean close handshake
// (bounded) when the node is going away, so the SDK reconnects elsewhere, else at once.
func (l *link) closeSocket(ws *websocket.Conn, pumpDone <-chan struct{}) {
	if !l.goingAway.Load() {
		ws.CloseNow()
		<-pumpDone
		return
	}
	<-pumpDone // the close frame must not interleave with a frame of the write pump
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = ws.Close(websocket.StatusGoingAway, reasonShutdown)
	}()
	select {
	case <-closed:
	case <-time.After(linkCloseTimeout):
		ws.CloseNow()
		<-closed
	}
}
