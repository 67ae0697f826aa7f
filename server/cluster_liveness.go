package server

import (
	"context"
	"errors"
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Node liveness. Every heartbeat a node renews its liveness entry (TTL: nodeTTLBeats
// heartbeats), its advertised address and its app servers' entries, then compares the live
// nodes with the previous reading. A node missing from two readings in a row (taken once this
// node's own heartbeats have succeeded for a whole TTL, so a Redis restart that expired
// everyone's entry at once is not mistaken for deaths) is dead: every node sends its app
// servers `offline` for it and drops what it relayed for it; the first live node removes its
// connections from the registry.
// Bound: a node stops at t; its entry expires by t+TTL; it is declared dead within two more
// heartbeats (TTL 4 heartbeats: ≤ 6 heartbeats, 12 s by default). A node that stops gracefully
// says so (envNodeLeft, leave): its peers react at once, as to a death but without the wait.
const nodeTTLBeats = 4

// releaseTimeout bounds the registry write of a finishing connection.
const releaseTimeout = time.Second

// forgetBudget bounds the removal of a node's registry entries (one read and one delete per
// connection it held).
const forgetBudget = 2 * time.Minute

func (cl *cluster) nodeTTL() time.Duration { return nodeTTLBeats * cl.heartbeat }

func (cl *cluster) runLiveness(ctx context.Context) {
	t := time.NewTicker(cl.heartbeat) // start made the first heartbeat and reading
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			cl.leave()
			return
		case now := <-t.C:
			cl.beat(ctx)
			cl.refreshServers(ctx)
			cl.checkPeers(ctx)
			if now.Sub(renewed) >= ownershipRefresh {
				renewed = now
				cl.spawn(func() { cl.renewOwnership() })
			}
		}
	}
}

// beat renews this node's liveness and address. An address entry gone before its TTL says the
// registry lost what this node wrote (Redis restarted empty, or this node could not reach it
// for longer than the TTL): the ownership records of its connections went with it, and without
// them no other node can reach those connections (sends, membership, forwarded requests), so
// they are written again. So they are when the entry could not be read (the first command after
// a Redis restart may fail on a stale connection): writing them again is harmless.
func (cl *cluster) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, gerr := cl.store.Get(ctx, keyAddr(cl.node))
	err := cl.store.Heartbeat(ctx, cl.node, cl.nodeTTL())
	if err == nil {
		err = cl.store.Put(ctx, keyAddr(cl.node), []byte(cl.advertise.Load().(string)), cl.nodeTTL())
	}
	if err == nil && gerr != nil {
		cl.in.srv.goConn(cl.reclaim)
	}
	cl.liveMu.Lock()
	defer cl.liveMu.Unlock()
	now := time.Now()
	if err != nil {
		if cl.beats > 0 && !errors.Is(err, context.Canceled) { // not the node stopping
			cl.log.Warn("cluster heartbeat failed: peers will see this node as dead if it lasts", "err", err)
		}
		cl.beats = 0
		if cl.lapsed.IsZero() {
			// Measured from the last success: that is when this node's entry began to age.
			cl.lapsed = cl.lastBeat
		}
		return
	}
	if !cl.lapsed.IsZero() && now.Sub(cl.lapsed) >= cl.nodeTTL() {
		cl.spawn(cl.afterLapse)
	}
	cl.lapsed = time.Time{}
	cl.lastBeat = now
	cl.beats++
}

// afterLapse runs when this node's heartbeats failed for at least a node TTL: its peers may have
// declared it dead and told the app servers (`offline`), which then dropped the clients this
// node relays to them, and dropped the relayed clients they hold for it. Both sides of the
// relay are ended cleanly: its relayed clients reconnect, its relay stubs are closed at their
// app servers.
func (cl *cluster) afterLapse() {
	cl.log.Warn("this node could not heartbeat for a whole node TTL: closing relayed clients and relay stubs, which peers may have dropped")
	cl.relayMu.Lock()
	stubs := make([]*relayed, 0, len(cl.relays))
	for _, r := range cl.relays {
		stubs = append(stubs, r)
	}
	cl.relayMu.Unlock()
	for _, r := range stubs {
		cl.dropRelay(r, true)
	}
	for _, h := range cl.in.hubSnapshot() {
		for _, c := range h.clientSnapshot() {
			if c.relay.Load() != nil {
				c.appClosed.Store(true)
				c.closeWith(closeReasonServerLost, reasonServerLost, true)
			}
		}
	}
}

// reclaim records this node's open connections as its own again, after the registry lost them.
func (cl *cluster) reclaim() {
	if n := cl.renewOwnership(); n > 0 {
		cl.log.Info("the registry had lost this node's connections: recorded them again", "connections", n)
	}
}

// renewOwnership writes the ownership records of this node's open connections (with a fresh
// TTL) and returns how many it wrote.
func (cl *cluster) renewOwnership() int {
	n := 0
	for _, h := range cl.in.hubSnapshot() {
		for _, c := range h.clientSnapshot() {
			if !c.claimed.Load() || c.ctx.Err() != nil {
				continue
			}
			if err := cl.claim(c.ctx, c.id); err != nil {
				if c.ctx.Err() == nil {
					cl.log.Warn("recording connection ownership again failed", "err", err)
					return n
				}
				continue
			}
			if c.ctx.Err() != nil {
				c.releaseOwnership() // it finished meanwhile: its tombstone again
				continue
			}
			n++
		}
	}
	return n
}

// checkPeers reads the live nodes and handles the ones that died.
func (cl *cluster) checkPeers(ctx context.Context) {
	read := time.Now()
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	nodes, err := cl.store.LiveNodes(rctx)
	cancel()
	if err != nil {
		return
	}
	var dead []string
	cl.liveMu.Lock()
	now := map[string]bool{cl.node: true}
	for n, g := range cl.gone {
		if read.Sub(g) > 2*storeTimeout { // no reading in flight is that old
			delete(cl.gone, n)
		}
	}
	for _, n := range nodes {
		if g, ok := cl.gone[n]; ok && !read.After(g) {
			continue // it left or died after this reading started
		}
		delete(cl.gone, n)
		now[n] = true
		delete(cl.missing, n)
	}
	for n := range cl.live {
		if now[n] {
			continue
		}
		cl.missing[n]++
		// Judged only once this node's own heartbeats have succeeded for a whole TTL: after a
		// Redis outage every node's client recovers on its own schedule (go-redis probes a
		// refused address once a second), and a live peer may renew its entry that much later.
		if cl.missing[n] >= 2 && cl.beats > nodeTTLBeats {
			dead = append(dead, n)
			delete(cl.missing, n)
			continue
		}
		now[n] = true // still presumed alive
	}
	for n := range now {
		if !cl.live[n] {
			cl.log.Info("node joined", "peer", n)
		}
	}
	cl.live = now
	cl.liveMu.Unlock()
	for _, n := range dead {
		cl.forgetPeer(n)
		// Off the liveness loop: cleaning a big node's registry entries takes a while, and this
		// node must keep heartbeating meanwhile or its peers would take it for dead too.
		cl.spawn(func() { cl.nodeDied(cl.in.srv.ctx, n) })
	}
}

// nodeDied reacts to a dead peer.
func (cl *cluster) nodeDied(ctx context.Context, node string) {
	cl.log.Warn("node is dead: its clients reconnect through the remaining nodes", "peer", node)
	cl.dropNode(node)
	if live := cl.liveNodes(); len(live) > 0 && live[0] == cl.node {
		cl.forgetNode(ctx, node)
	}
}

// nodeLeft reacts to a peer that said it left (leave; onMessage called forgetPeer already):
// at once, rather than after the two heartbeat readings that find a node dead, during which
// every question to all nodes would wait rpcTimeout for its answer. The peer removed its own
// registry entries.
func (cl *cluster) nodeLeft(node string) {
	cl.log.Info("node left", "peer", node)
	cl.dropNode(node)
}

// dropNode tells the app servers that a node is gone (the SDK drops the clients whose
// Asrs-Instance-Id names it) and ends what this node relayed or awaited for it.
func (cl *cluster) dropNode(node string) {
	offline := svcproto.Ping{Values: []string{"offline", node}}
	for _, h := range cl.in.hubSnapshot() {
		for _, l := range h.linkSnapshot() {
			l.sendControl(offline)
		}
	}
	cl.dropRelaysOf(node)
	cl.failInvocationsOn(node)
}

// forgetNode removes a node's connections and address from the registry.
func (cl *cluster) forgetNode(ctx context.Context, node string) int {
	ctx, cancel := context.WithTimeout(ctx, forgetBudget)
	defer cancel()
	ids, err := cl.store.SetMembers(ctx, keyNodeConns(node))
	if err != nil {
		if !errors.Is(err, context.Canceled) { // not this node stopping meanwhile
			cl.log.Warn("cleaning up a dead node's connections failed", "peer", node, "err", err)
		}
		return 0
	}
	for _, id := range ids {
		if v, err := cl.store.Get(ctx, keyConn(id)); err == nil && string(v) == node {
			_ = cl.store.Delete(ctx, keyConn(id))
		}
	}
	_ = cl.store.SetRemoveAll(ctx, keyNodeConns(node))
	_ = cl.store.Delete(ctx, keyAddr(node))
	if len(ids) > 0 {
		cl.log.Info("removed a dead node's connections from the registry", "peer", node, "connections", len(ids))
	}
	return len(ids)
}

// leave takes this node out of the cluster on shutdown, after its clients were closed.
func (cl *cluster) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// Receive nothing more: the subscriptions would outlive the node on a shared storage.
	if cl.nodeSub != nil {
		cl.nodeSub.Close()
	}
	cl.interest.closeAll()
	peers := cl.liveNodesNow(ctx) // a peer that joined since the last heartbeat too
	_ = cl.store.RemoveNode(ctx, cl.node)
	// Tell the peers (the publisher has stopped: publish directly), after leaving the live
	// nodes so that none of them adds this node back from the registry.
	cl.tellPeers(ctx, peers, envNodeLeft, nil)
	for _, h := range cl.in.hubSnapshot() {
		// Only the servers connected here: serverIDs would also read the other nodes' servers
		// with the server's context, which is over by now (a warning at every shutdown).
		for _, id := range h.localServerIDs() {
			_ = cl.store.SetRemove(ctx, keyServers(h.id), cl.node+"|"+id)
		}
	}
	cl.forgetNode(ctx, cl.node)
}

// localServerIDs lists the hub's app servers with a socket on this node, draining ones too.
func (h *hubState) localServerIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sortedKeys(h.servers)
}

// refreshServers renews the registry entries of the app servers that can take clients here.
func (cl *cluster) refreshServers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	for _, h := range cl.in.hubSnapshot() {
		for _, id := range h.usableServerIDs() {
			if err := cl.store.SetAdd(ctx, keyServers(h.id), cl.node+"|"+id, cl.nodeTTL()); err != nil {
				return
			}
		}
	}
}

// announceServer publishes (or withdraws) one app server of a hub at once, without waiting
// for the next heartbeat.
func (cl *cluster) announceServer(hub, serverID string, usable bool) {
	member := cl.node + "|" + serverID
	cl.background("announce app server", func(ctx context.Context) error {
		if usable {
			return cl.store.SetAdd(ctx, keyServers(hub), member, cl.nodeTTL())
		}
		return cl.store.SetRemove(ctx, keyServers(hub), member)
	})
}

// announceServerNow publishes a usable app server of a hub and returns once it is written.
func (cl *cluster) announceServerNow(ctx context.Context, hub, serverID string) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := cl.store.SetAdd(ctx, keyServers(hub), cl.node+"|"+serverID, cl.nodeTTL()); err != nil && cl.in.srv.ctx.Err() == nil {
		cl.log.Warn("cluster registry write failed", "op", "announce app server", "err", err)
	}
}

// remoteServer is an app server reachable through another node.
type remoteServer struct{ node, serverID string }

// remoteServers lists the hub's app servers on other live nodes, sorted.
func (cl *cluster) remoteServers(ctx context.Context, hub string) []remoteServer {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	members, err := cl.store.SetMembers(ctx, keyServers(hub))
	if err != nil {
		cl.log.Warn("reading the hub's app servers failed", "hub", hub, "err", err)
		return nil
	}
	var out []remoteServer
	for _, m := range members {
		node, id, ok := splitServerMember(m)
		if ok && node != cl.node && cl.isLiveNow(ctx, node) { // a node that just joined counts
			out = append(out, remoteServer{node, id})
		}
	}
	return out
}

// claim records this node as the owner of a connection (before its app server hears of it, so
// sends from other nodes find it).
func (cl *cluster) claim(ctx context.Context, connID string) error {
	_, err := cl.claimAs(ctx, connID, true)
	return err
}

// claimAs records the ownership: unconditionally (force: this node holds the connection), or
// only when no node has (a token's first use: of two nodes racing for it, one wins). Records
// live ownershipTTL and are renewed every ownershipRefresh while the connection lasts, so what a
// node that vanished unseen (a whole cluster crashed) left behind is gone within a day.
func (cl *cluster) claimAs(ctx context.Context, connID string, force bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	won := true
	var err error
	if force {
		err = cl.store.Put(ctx, keyConn(connID), []byte(cl.node), ownershipTTL)
	} else {
		won, err = cl.store.PutIfAbsent(ctx, keyConn(connID), []byte(cl.node), ownershipTTL)
	}
	if err != nil || !won {
		return false, err
	}
	return true, cl.store.SetAdd(ctx, keyNodeConns(cl.node), connID, ownershipTTL)
}

// Ownership records: their lifetime and how often a node renews those of its connections.
const (
	ownershipTTL     = 24 * time.Hour
	ownershipRefresh = time.Hour
)

// release marks a finished connection: a tombstone until its connection token would have
// expired anyway, so the token cannot start it again on another node. It returns once written:
// the connection's app server, told of the close next, may ask any node whether the
// connection exists, and that node reads the registry.
func (cl *cluster) release(connID string, tombstone time.Duration) {
	// Short: finish waits for it (also from the housekeeping sweep), and a registry that does
	// not answer must not hold up every connection's cleanup.
	ctx, cancel := context.WithTimeout(cl.in.srv.ctx, releaseTimeout)
	defer cancel()
	var err error
	if tombstone > 0 {
		err = cl.store.Put(ctx, keyConn(connID), nil, tombstone)
	} else {
		err = cl.store.Delete(ctx, keyConn(connID))
	}
	if err == nil {
		err = cl.store.SetRemove(ctx, keyNodeConns(cl.node), connID)
	}
	if err != nil && cl.in.srv.ctx.Err() == nil {
		cl.log.Warn("cluster registry write failed", "op", "release connection", "conn_id", connID, "err", err)
	}
}
