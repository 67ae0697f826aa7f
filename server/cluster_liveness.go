package server

import (
	"context"
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Node liveness. Every heartbeat a node renews its liveness entry (TTL: nodeTTLBeats
// heartbeats), its advertised address and its app servers' entries, then compares the live
// nodes with the previous reading. A node missing from two readings in a row (taken while this
// node's own heartbeats succeed, so a Redis restart that expired everyone's entry at once is
// not mistaken for deaths) is dead: every node sends its app servers `offline` for it and drops
// what it relayed for it; the first live node removes its connections from the registry.
// Bound: a node stops at t; its entry expires by t+TTL; it is declared dead within two more
// heartbeats (TTL 4 heartbeats: ≤ 6 heartbeats, 12 s by default).
const nodeTTLBeats = 4

func (cl *cluster) nodeTTL() time.Duration { return nodeTTLBeats * cl.heartbeat }

func (cl *cluster) runLiveness(ctx context.Context) {
	cl.beat(ctx)
	cl.forgetNode(ctx, cl.node) // what an earlier life of this node id left behind
	t := time.NewTicker(cl.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cl.leave()
			return
		case <-t.C:
			cl.beat(ctx)
			cl.refreshServers(ctx)
			cl.checkPeers(ctx)
		}
	}
}

// beat renews this node's liveness and address.
func (cl *cluster) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := cl.store.Heartbeat(ctx, cl.node, cl.nodeTTL())
	if err == nil {
		err = cl.store.Put(ctx, keyAddr(cl.node), []byte(cl.advertise.Load().(string)), cl.nodeTTL())
	}
	cl.liveMu.Lock()
	defer cl.liveMu.Unlock()
	if err != nil {
		if cl.beats > 0 {
			cl.log.Warn("cluster heartbeat failed: peers will see this node as dead if it lasts", "err", err)
		}
		cl.beats = 0
		return
	}
	cl.beats++
}

// checkPeers reads the live nodes and handles the ones that died.
func (cl *cluster) checkPeers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	nodes, err := cl.store.LiveNodes(ctx)
	cancel()
	if err != nil {
		return
	}
	var dead []string
	cl.liveMu.Lock()
	now := map[string]bool{cl.node: true}
	for _, n := range nodes {
		now[n] = true
		delete(cl.missing, n)
	}
	for n := range cl.live {
		if now[n] {
			continue
		}
		cl.missing[n]++
		if cl.missing[n] >= 2 && cl.beats >= 2 {
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
		cl.nodeDied(ctx, n)
	}
}

// nodeDied reacts to a dead peer.
func (cl *cluster) nodeDied(ctx context.Context, node string) {
	cl.log.Warn("node is dead: its clients reconnect through the remaining nodes", "peer", node)
	offline := svcproto.Ping{Values: []string{"offline", node}}
	for _, h := range cl.in.hubSnapshot() {
		for _, l := range h.linkSnapshot() {
			l.sendControl(offline)
		}
	}
	cl.dropRelaysOf(node)
	cl.failInvocationsOn(node)
	if live := cl.liveNodes(); len(live) > 0 && live[0] == cl.node {
		cl.forgetNode(ctx, node)
	}
}

// forgetNode removes a node's connections and address from the registry.
func (cl *cluster) forgetNode(ctx context.Context, node string) {
	ctx, cancel := context.WithTimeout(ctx, 4*storeTimeout)
	defer cancel()
	ids, err := cl.store.SetMembers(ctx, keyNodeConns(node))
	if err != nil {
		cl.log.Warn("cleaning up a dead node's connections failed", "peer", node, "err", err)
		return
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
}

// leave takes this node out of the cluster on shutdown, after its clients were closed.
func (cl *cluster) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_ = cl.store.RemoveNode(ctx, cl.node)
	for _, h := range cl.in.hubSnapshot() {
		for _, id := range h.serverIDs() {
			_ = cl.store.SetRemove(ctx, keyServers(h.id), cl.node+"|"+id)
		}
	}
	cl.forgetNode(ctx, cl.node)
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
		if ok && node != cl.node && cl.isLive(node) {
			out = append(out, remoteServer{node, id})
		}
	}
	return out
}

// claim records this node as the owner of a connection (before its app server hears of it, so
// sends from other nodes find it).
func (cl *cluster) claim(ctx context.Context, connID string) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := cl.store.Put(ctx, keyConn(connID), []byte(cl.node), 0); err != nil {
		return err
	}
	return cl.store.SetAdd(ctx, keyNodeConns(cl.node), connID, 0)
}

// release marks a finished connection: a tombstone until its connection token would have
// expired anyway, so the token cannot start it again on another node.
func (cl *cluster) release(connID string, tombstone time.Duration) {
	cl.background("release connection", func(ctx context.Context) error {
		var err error
		if tombstone > 0 {
			err = cl.store.Put(ctx, keyConn(connID), nil, tombstone)
		} else {
			err = cl.store.Delete(ctx, keyConn(connID))
		}
		if err != nil {
			return err
		}
		return cl.store.SetRemove(ctx, keyNodeConns(cl.node), connID)
	})
}
