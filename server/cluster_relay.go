package server

import (
	"context"
	"sync"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// The relay carries a client's traffic between its node (the client node, which holds the
// client's transport) and a node holding a socket of the app server the client was given (the
// app node) when the client node has none: every message costs one backplane hop. The client
// node publishes OpenConnection, the client's data and its close on n/{appNode}, in order
// (one publisher queue per topic); the app node binds the client to one of the server's links
// as a relay stub and publishes the server's data, close and invocations for it on
// n/{clientNode}. OpenConnection carries Asrs-Instance-Id = client node, so an `offline` ping
// for a dead client node makes the SDK drop exactly the clients it held.

// relayTarget is where a relayed client's app server is.
type relayTarget struct{ node, serverID string }

// relayed is the app node's stub for a client held by another node.
type relayed struct {
	id, node string
	hub      *hubState
	link     *link
}

// route chooses a client's app server: a local link when the node has one for the client
// (honouring sticky modes), else a server on another node through the relay. exclude names a
// server that must not be chosen (a migration's source).
func (h *hubState) route(ctx context.Context, mode auth.StickyMode, sid, exclude string) (*link, *relayTarget, error) {
	l, err := h.pick(mode, sid, exclude)
	cl := h.cl()
	if cl == nil {
		return l, nil, err
	}
	stickyElsewhere := mode != auth.StickyDisabled && sid != "" && (l == nil || l.serverID != sid)
	if l != nil && !stickyElsewhere {
		return l, nil, nil
	}
	var servers []remoteServer
	for _, s := range cl.remoteServers(ctx, h.id) {
		if s.serverID != exclude {
			servers = append(servers, s)
		}
	}
	if stickyElsewhere {
		for _, s := range servers {
			if s.serverID == sid {
				if l != nil {
					h.released(l)
				}
				return nil, &relayTarget{s.node, s.serverID}, nil
			}
		}
	}
	if l != nil {
		return l, nil, nil
	}
	if mode == auth.StickyRequired && sid != "" {
		return nil, nil, err
	}
	if len(servers) == 0 {
		return nil, nil, errNoServer
	}
	s := servers[int(cl.rr.Add(1))%len(servers)]
	return nil, &relayTarget{s.node, s.serverID}, nil
}

// toApp sends a data message to the client's app server, wherever it is.
func (c *client) toApp(ctx context.Context, m svcproto.Message) error {
	if l := c.link.Load(); l != nil {
		return l.sendData(ctx, m)
	}
	rt := c.relay.Load()
	if rt == nil {
		return errLinkClosed
	}
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return err
	}
	return c.in.cl.publishWait(ctx, topicNode(rt.node), &envelope{Kind: envRelayData, Hub: c.hub.id, Conns: []string{c.id}, Data: f})
}

// appServerID names the client's app server ("" when it has none).
func (c *client) appServerID() string {
	if l := c.link.Load(); l != nil {
		return l.serverID
	}
	if rt := c.relay.Load(); rt != nil {
		return rt.serverID
	}
	return ""
}

// openRelay announces a client to its app server through the relay: OpenConnection and the
// handshake travel together, so the app node binds the client before its first data.
func (c *client) openRelay(rt *relayTarget, open svcproto.OpenConnection, handshake []byte) error {
	of, err := svcproto.AppendFrame(nil, open)
	if err != nil {
		return err
	}
	hf, err := svcproto.AppendFrame(nil, svcproto.ConnectionData{ConnectionID: c.id, Payload: handshake})
	if err != nil {
		return err
	}
	c.relay.Store(rt)
	return c.in.cl.publishWait(c.ctx, topicNode(rt.node), &envelope{Kind: envRelayOpen, Hub: c.hub.id, Conns: []string{c.id}, Server: rt.serverID, Data: of, Data2: hf})
}

// closeRelay tells the app node the client is gone; frame, when set, is the CloseConnection
// to forward (a migration's, with its header), else one is made from reason.
func (c *client) closeRelay(rt *relayTarget, reason string, frame []byte) {
	// Waits (bounded) for room in the queue rather than dropping: a lost close would leave the
	// client connected at its app server until that socket closes.
	cl := c.in.cl
	ctx, cancel := context.WithTimeout(cl.in.srv.ctx, storeTimeout)
	defer cancel()
	if err := cl.publishWait(ctx, topicNode(rt.node), &envelope{Kind: envRelayClose, Hub: c.hub.id, Conns: []string{c.id}, Text: reason, Data: frame}); err != nil {
		cl.stats.lost.Add(1)
		if cl.in.srv.ctx.Err() == nil { // not this node stopping (its peers hear it left)
			cl.log.Warn("telling the app node a relayed client closed failed", "conn_id", c.id, "peer", rt.node, "err", err)
		}
	}
}

// relayBacklog bounds what a link may hold for relayed clients: over it (the app server is not
// reading) a relayed client is dropped, as a local client over linkBackpressure waits.
const relayBacklog = 4 * linkBackpressure

// fromRelayTarget reports whether a relay notice comes from the node the client is relayed to
// now (a migrated client ignores its former app node's notices).
func fromRelayTarget(c *client, e *envelope) bool {
	rt := c.relay.Load()
	return rt != nil && rt.node == e.Origin
}

// onRelay handles relay and client-result envelopes addressed to this node.
func (cl *cluster) onRelay(e *envelope) {
	if len(e.Conns) == 0 {
		return
	}
	id := e.Conns[0]
	switch e.Kind {
	case envRelayOpen:
		cl.relayOpen(e)
	case envRelayData:
		r := cl.relayOf(id)
		if r == nil {
			// The stub is gone (its link closed, or a lost open): the client must not talk into
			// the void.
			cl.publish(topicNode(e.Origin), &envelope{Kind: envServerLost, Hub: e.Hub, Conns: []string{id}})
			return
		}
		if r.link.out.Len() > relayBacklog || !r.link.out.Push(e.Data) {
			cl.dropRelay(r, true)
		}
	case envRelayClose:
		if r := cl.relayOf(id); r != nil {
			frame := e.Data
			if frame == nil {
				frame, _ = svcproto.AppendFrame(nil, svcproto.CloseConnection{ConnectionID: id, ErrorMessage: e.Text})
			}
			r.link.out.Push(frame)
			cl.dropRelay(r, false)
		}
	case envToClient:
		if c, ok := cl.in.hub(e.Hub).client(id); ok {
			c.sendFromApp(e.Data)
		}
	case envAppClose:
		if c, ok := cl.in.hub(e.Hub).client(id); ok && fromRelayTarget(c, e) {
			c.closeFromApp()
		}
	case envServerLost, envRelayRefused:
		if c, ok := cl.in.hub(e.Hub).client(id); ok && fromRelayTarget(c, e) {
			c.appClosed.Store(true)
			c.closeWith(closeReasonServerLost, reasonServerLost, true)
		}
	case envRelayMigrate:
		if c, ok := cl.in.hub(e.Hub).client(id); ok {
			cl.spawn(func() { c.migrate(e.Server) })
		}
	case envInvoke:
		cl.onRemoteInvoke(e)
	case envCompletion:
		// Off the delivery goroutine: an invocation no longer pending here is looked up in the
		// registry.
		if m, err := decodeFrame(e.Data); err == nil {
			cl.spawn(func() { cl.in.completeInvocation(id, e.Group, e.Server, m) })
		}
	case envInvokeFailed:
		cl.in.failInvocations(func(p *pendingInvocation) bool {
			return p.connID == id && (e.Group == "" || p.invocationID == e.Group)
		}, e.Text)
	}
}

// relayOpen binds a client of another node to a link of the requested server.
func (cl *cluster) relayOpen(e *envelope) {
	id := e.Conns[0]
	h := cl.in.hub(e.Hub)
	l := h.usableLink(e.Server)
	if l == nil {
		cl.publish(topicNode(e.Origin), &envelope{Kind: envRelayRefused, Hub: e.Hub, Conns: []string{id}})
		return
	}
	r := &relayed{id: id, node: e.Origin, hub: h, link: l}
	cl.relayMu.Lock()
	cl.relays[id] = r
	cl.relayMu.Unlock()
	l.bindRelayed(r)
	h.counted(l)
	l.out.Push(e.Data)
	l.out.Push(e.Data2)
}

func (cl *cluster) relayOf(id string) *relayed {
	cl.relayMu.Lock()
	defer cl.relayMu.Unlock()
	return cl.relays[id]
}

// dropRelay forgets a stub; lost tells the client node its server is gone.
func (cl *cluster) dropRelay(r *relayed, lost bool) {
	cl.relayMu.Lock()
	if cl.relays[r.id] != r {
		cl.relayMu.Unlock()
		return
	}
	delete(cl.relays, r.id)
	cl.relayMu.Unlock()
	r.link.unbindRelayed(r)
	r.hub.released(r.link)
	if lost {
		// Both ends: the app server forgets the client (its OnDisconnected runs; harmless when
		// the socket itself is gone), and the client's node closes it reconnectably.
		r.link.sendControl(svcproto.CloseConnection{ConnectionID: r.id, ErrorMessage: reasonServerLost})
		cl.publish(topicNode(r.node), &envelope{Kind: envServerLost, Hub: r.hub.id, Conns: []string{r.id}})
	}
}

// dropRelaysOf forgets the stubs of a dead client node (the `offline` ping told the app
// servers) and closes this node's clients relayed to a dead app node.
func (cl *cluster) dropRelaysOf(node string) {
	cl.relayMu.Lock()
	var stubs []*relayed
	for _, r := range cl.relays {
		if r.node == node {
			stubs = append(stubs, r)
		}
	}
	cl.relayMu.Unlock()
	for _, r := range stubs {
		cl.dropRelay(r, false)
	}
	for _, h := range cl.in.hubSnapshot() {
		for _, c := range h.clientSnapshot() {
			if rt := c.relay.Load(); rt != nil && rt.node == node {
				c.appClosed.Store(true)
				c.closeWith(closeReasonServerLost, reasonServerLost, true)
			}
		}
	}
}

// toRelayedClient forwards what an app server sent for a client held by another node.
func (cl *cluster) toRelayedClient(ctx context.Context, m svcproto.Message) bool {
	switch m := m.(type) {
	case svcproto.ConnectionData:
		r := cl.relayOf(m.ConnectionID)
		if r == nil {
			return false
		}
		// Bounded: the link's reader waits at most storeTimeout for room in the queue.
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		if err := cl.publishWait(ctx, topicNode(r.node), &envelope{Kind: envToClient, Hub: r.hub.id, Conns: []string{r.id}, Data: m.Payload}); err != nil {
			cl.stats.lost.Add(1)
			cl.dropRelay(r, true)
		}
		return true
	case svcproto.CloseConnection:
		r := cl.relayOf(m.ConnectionID)
		if r == nil {
			return false
		}
		cl.dropRelay(r, false)
		cl.publish(topicNode(r.node), &envelope{Kind: envAppClose, Hub: r.hub.id, Conns: []string{r.id}})
		return true
	}
	return false
}

// migrateRelayed asks the nodes holding relayed clients of a shutting-down server to move
// them, and waits (bounded) until they did, so the finack comes after their migration.
func (cl *cluster) migrateRelayed(h *hubState, serverID string) int {
	stubs := cl.relayedOf(h, serverID)
	for _, r := range stubs {
		cl.publish(topicNode(r.node), &envelope{Kind: envRelayMigrate, Hub: h.id, Conns: []string{r.id}, Server: serverID})
	}
	deadline := time.Now().Add(rpcTimeout)
	for len(cl.relayedOf(h, serverID)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return len(stubs)
}

func (cl *cluster) relayedOf(h *hubState, serverID string) []*relayed {
	cl.relayMu.Lock()
	defer cl.relayMu.Unlock()
	var out []*relayed
	for _, r := range cl.relays {
		if r.hub == h && r.link.serverID == serverID {
			out = append(out, r)
		}
	}
	return out
}

// remoteInvocation is a client result whose caller sits on another node, remembered by the
// client's node so the caller learns when the client goes away first.
type remoteInvocation struct {
	callerNode string
	created    time.Time
	client     *client
}

func decodeFrame(b []byte) (svcproto.Message, error) {
	var r svcproto.Reader
	r.Write(b)
	return r.Next()
}

// earlyFanout holds what fan-out delivers to a relayed client before its app server's
// handshake response arrived. The response travels on this node's topic, fan-out on the hub,
// user and group topics: the backplane keeps order per topic only, so a message the app server
// sent after the handshake (from OnConnected: to all, to the user, to a group) can arrive
// first. A client with a local link gets both in the order its socket carried them; a relayed
// one gets the held messages right after the response instead of losing them.
type earlyFanout struct {
	mu     sync.Mutex
	frames [][]byte
	size   int
	done   bool // the response arrived: nothing is held any more
}

// Bounds of what a relayed client holds before its handshake response; beyond them fan-out
// skips it, as it skips any client before its handshake.
const (
	earlyMaxFrames = 256
	earlyMaxBytes  = 1 << 20
)

// holdEarly keeps a fan-out frame for a relayed client that is not ready yet.
func (c *client) holdEarly(frame []byte) bool {
	e := &c.early
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return c.push(frame) // the response arrived meanwhile
	}
	if len(e.frames) >= earlyMaxFrames || e.size+len(frame) > earlyMaxBytes {
		return false
	}
	e.frames = append(e.frames, frame)
	e.size += len(frame)
	return true
}

// releaseEarly queues the held frames after the handshake response.
func (c *client) releaseEarly() {
	e := &c.early
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done = true
	for _, f := range e.frames {
		c.push(f)
	}
	e.frames, e.size = nil, 0
}
