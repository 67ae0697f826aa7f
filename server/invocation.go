package server

import (
	"context"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// pendingInvocation is a client-result invocation ("InvokeAsync" on a client) awaiting its
// completion (service-protocol §2.7). It lives on the node of the caller's link.
type pendingInvocation struct {
	created      time.Time
	hub          *hubState
	connID       string
	invocationID string
	client       *client // nil when another node holds the client
	clientNode   string  // that node ("" here)
	caller       string  // server id of the invoking app server
	hostedBy     string  // server id hosting the client
}

// onClientInvocation delivers the invocation to the client and, when another app server hosts
// that client, forwards it there so that server relays the client's completion. In a cluster
// the client may be on another node: the invocation travels there, and wherever the hosting
// server reports the completion, the registry names this node as the one waiting for it.
func (l *link) onClientInvocation(m svcproto.ClientInvocation) {
	cl := l.in.cl
	inv := &pendingInvocation{created: time.Now(), hub: l.hub, connID: m.ConnectionID, invocationID: m.InvocationID, caller: m.CallerServerID}
	c, ok := l.hub.client(m.ConnectionID)
	if !ok && cl != nil {
		if node, found := cl.owner(l.ctx, m.ConnectionID); found && node != cl.node {
			inv.clientNode = node
			l.in.addInvocation(inv)
			cl.recordInvocation(l.ctx, m.ConnectionID, m.InvocationID, true)
			f, _ := svcproto.AppendFrame(nil, m)
			cl.publish(topicNode(node), &envelope{Kind: envInvoke, Hub: l.hub.id, Conns: []string{m.ConnectionID}, Group: m.InvocationID, Data: f})
			// Lets the SDK fail the invocation when that node goes offline.
			l.sendControl(svcproto.ServiceMapping{InvocationID: m.InvocationID, ConnectionID: m.ConnectionID, InstanceID: node})
			return
		}
	}
	if !ok {
		l.sendControl(svcproto.ErrorCompletion{
			InvocationID: m.InvocationID, ConnectionID: m.ConnectionID, CallerServerID: m.CallerServerID,
			Error: "Connection '" + m.ConnectionID + "' does not exist.",
		})
		return
	}
	inv.client, inv.hostedBy = c, c.appServerID()
	l.in.addInvocation(inv)
	if cl != nil {
		// A relayed client's hosting server reports the completion to another node.
		cl.recordInvocation(l.ctx, m.ConnectionID, m.InvocationID, c.relay.Load() != nil)
	}
	c.deliverInvocation(m)
}

// deliverInvocation forwards an invocation to the client's hosting server when that is not the
// caller, then to the client.
func (c *client) deliverInvocation(m svcproto.ClientInvocation) {
	host := c.appServerID()
	if host != "" && host != m.CallerServerID {
		fwd := svcproto.ClientInvocation{
			InvocationID: m.InvocationID, ConnectionID: m.ConnectionID, CallerServerID: m.CallerServerID,
			Payloads: m.Payloads, Ext: m.Ext,
		}
		if l := c.link.Load(); l != nil {
			l.sendControl(fwd)
		} else if rt := c.relay.Load(); rt != nil {
			f, _ := svcproto.AppendFrame(nil, fwd)
			c.in.cl.publish(topicNode(rt.node), &envelope{Kind: envRelayData, Hub: c.hub.id, Conns: []string{c.id}, Data: f})
		}
	}
	if b, ok := m.Payloads.Get(c.protocol); ok {
		c.Send(b)
	}
}

func (in *instance) addInvocation(inv *pendingInvocation) {
	in.invMu.Lock()
	in.invocations[invKey(inv.connID, inv.invocationID)] = inv
	in.invMu.Unlock()
}

// invKey identifies a pending invocation by connection and invocation id: both travel in every
// ClientCompletion and ErrorCompletion, while callerServerId does not (a hosting server relaying
// the result writes its own id there, as the .NET SDK does).
func invKey(connID, id string) string { return connID + "\x00" + id }

// completeInvocation routes a completion reported by server `from` to the caller; in a cluster,
// a completion for an invocation waiting on another node goes there.
func (in *instance) completeInvocation(connID, id, from string, m svcproto.Message) {
	in.invMu.Lock()
	inv, ok := in.invocations[invKey(connID, id)]
	if ok {
		delete(in.invocations, invKey(connID, id))
	}
	in.invMu.Unlock()
	if !ok {
		if in.cl != nil {
			in.cl.forwardCompletion(connID, id, from, m)
		}
		return
	}
	if in.cl != nil {
		in.cl.forgetInvocation(connID, id)
	}
	if inv.caller == from {
		return
	}
	if l := inv.hub.linkToServer(inv.caller); l != nil {
		l.sendControl(m)
	}
}

// failInvocationsOf fails the pending invocations of a client that went away.
func (in *instance) failInvocationsOf(c *client) {
	reason := "Connection '" + c.id + "' disconnected."
	in.failInvocations(func(p *pendingInvocation) bool { return p.client == c }, reason)
	if in.cl != nil {
		in.cl.failRemoteInvocationsOf(c.id, reason)
	}
}

// failInvocationsVia fails invocations whose client was hosted through a lost link's server
// when that server has no link left.
func (in *instance) failInvocationsVia(l *link) {
	if l.hub.linkToServer(l.serverID) != nil {
		return
	}
	in.failInvocations(func(p *pendingInvocation) bool { return p.hub == l.hub && p.hostedBy == l.serverID },
		"The app server hosting the connection disconnected.")
}

func (in *instance) failInvocations(match func(*pendingInvocation) bool, reason string) {
	var out []*pendingInvocation
	in.invMu.Lock()
	for key, p := range in.invocations {
		if match(p) {
			out = append(out, p)
			delete(in.invocations, key)
		}
	}
	in.invMu.Unlock()
	for _, p := range out {
		if in.cl != nil {
			in.cl.forgetInvocation(p.connID, p.invocationID)
		}
		if l := p.hub.linkToServer(p.caller); l != nil {
			l.sendControl(svcproto.ErrorCompletion{
				InvocationID: p.invocationID, ConnectionID: p.connID, CallerServerID: p.caller, Error: reason,
			})
		}
	}
}

// invocationTimeout bounds a client-result invocation (the service protocol's ClientInvocation
// spec: ten minutes).
const invocationTimeout = 10 * time.Minute

// expireInvocations fails invocations the client never answered.
func (in *instance) expireInvocations(now time.Time) {
	in.failInvocations(func(p *pendingInvocation) bool { return now.Sub(p.created) > invocationTimeout },
		"The client did not complete the invocation within 10 minutes.")
	if in.cl != nil {
		in.cl.expireRemoteInvocations(now)
	}
}

// Cluster side of client results.

// recordInvocation names this node as the one waiting for an invocation's completion. With
// wait, when the completion may reach another node (the client or its hosting server is
// elsewhere), it returns once written: the invocation goes out only then, or a quick client's
// completion could look for the record before it exists and be dropped.
func (cl *cluster) recordInvocation(ctx context.Context, connID, id string, wait bool) {
	write := func(ctx context.Context) error {
		return cl.store.Put(ctx, keyInvocation(connID, id), []byte(cl.node), invocationTimeout)
	}
	if !wait {
		cl.background("record invocation", write)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := write(ctx); err != nil {
		cl.log.Warn("recording a client invocation failed: its completion may not find the caller", "conn_id", connID, "err", err)
	}
}

func (cl *cluster) forgetInvocation(connID, id string) {
	cl.background("forget invocation", func(ctx context.Context) error {
		return cl.store.Delete(ctx, keyInvocation(connID, id))
	})
}

// forwardCompletion sends a completion to the node waiting for it.
func (cl *cluster) forwardCompletion(connID, id, from string, m svcproto.Message) {
	ctx, cancel := cl.storeCtx()
	v, err := cl.store.Get(ctx, keyInvocation(connID, id))
	cancel()
	if err != nil || string(v) == cl.node || len(v) == 0 {
		return
	}
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return
	}
	cl.publish(topicNode(string(v)), &envelope{Kind: envCompletion, Conns: []string{connID}, Group: id, Server: from, Data: f})
}

// onRemoteInvoke delivers an invocation whose caller is on another node to a local client.
func (cl *cluster) onRemoteInvoke(e *envelope) {
	id := e.Conns[0]
	msg, err := decodeFrame(e.Data)
	m, ok := msg.(svcproto.ClientInvocation)
	if err != nil || !ok {
		return
	}
	c, ok := cl.in.hub(e.Hub).client(id)
	if !ok {
		cl.publish(topicNode(e.Origin), &envelope{Kind: envInvokeFailed, Conns: []string{id}, Group: m.InvocationID, Text: "Connection '" + id + "' does not exist."})
		return
	}
	key := invKey(id, m.InvocationID)
	cl.remoteInvMu.Lock()
	if _, dup := cl.remoteInv[key]; !dup {
		c.remoteInvs.Add(1)
	}
	cl.remoteInv[key] = remoteInvocation{callerNode: e.Origin, created: time.Now(), client: c}
	cl.remoteInvMu.Unlock()
	c.deliverInvocation(m)
}

// noteRemoteCompletion forgets a remote caller's invocation once the client answered it (its
// Completion goes on to the hosting server as ordinary data), so neither memory nor a later
// "disconnected" failure outlives it. Called for each inbound message (inMu held); free unless
// the client has such invocations.
func (c *client) noteRemoteCompletion(msg []byte) {
	if c.remoteInvs.Load() == 0 || c.in.cl == nil {
		return
	}
	if t, err := c.codec.PeekType(msg); err != nil || t != hubproto.TypeCompletion {
		return
	}
	m, err := c.codec.Decode(msg)
	comp, ok := m.(hubproto.Completion)
	if err != nil || !ok {
		return
	}
	cl := c.in.cl
	cl.remoteInvMu.Lock()
	defer cl.remoteInvMu.Unlock()
	if _, ok := cl.remoteInv[invKey(c.id, comp.InvocationID)]; ok {
		delete(cl.remoteInv, invKey(c.id, comp.InvocationID))
		c.remoteInvs.Add(-1)
	}
}

// failRemoteInvocationsOf tells the callers' nodes that a client with invocations went away.
func (cl *cluster) failRemoteInvocationsOf(connID, reason string) {
	prefix := connID + "\x00"
	cl.remoteInvMu.Lock()
	var out []envelope
	for key, r := range cl.remoteInv {
		if len(key) > len(prefix) && key[:len(prefix)] == prefix {
			out = append(out, envelope{Kind: envInvokeFailed, Conns: []string{connID}, Group: key[len(prefix):], Text: reason, Server: r.callerNode})
			delete(cl.remoteInv, key)
			r.client.remoteInvs.Add(-1)
		}
	}
	cl.remoteInvMu.Unlock()
	for _, e := range out {
		node := e.Server
		e.Server = ""
		cl.publish(topicNode(node), &e)
	}
}

func (cl *cluster) expireRemoteInvocations(now time.Time) {
	cl.remoteInvMu.Lock()
	defer cl.remoteInvMu.Unlock()
	for key, r := range cl.remoteInv {
		if now.Sub(r.created) > invocationTimeout {
			delete(cl.remoteInv, key)
			r.client.remoteInvs.Add(-1)
		}
	}
}

// failInvocationsOn fails the invocations waiting for clients of a dead node.
func (cl *cluster) failInvocationsOn(node string) {
	cl.in.failInvocations(func(p *pendingInvocation) bool { return p.clientNode == node },
		"The service node holding the connection went offline.")
	// And forget the invocations whose caller waited on that node: nobody awaits their outcome.
	cl.remoteInvMu.Lock()
	defer cl.remoteInvMu.Unlock()
	for key, r := range cl.remoteInv {
		if r.callerNode == node {
			delete(cl.remoteInv, key)
			r.client.remoteInvs.Add(-1)
		}
	}
}
