package server

import (
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// pendingInvocation is a client-result invocation ("InvokeAsync" on a client) awaiting its
// completion (service-protocol §2.7).
type pendingInvocation struct {
	created  time.Time
	hub      *hubState
	client   *client
	caller   string // server id of the invoking app server
	hostedBy string // server id hosting the client
}

// onClientInvocation delivers the invocation to the client and, when another app server hosts
// that client, forwards it there so that server relays the client's completion.
func (l *link) onClientInvocation(m svcproto.ClientInvocation) {
	c, ok := l.hub.client(m.ConnectionID)
	if !ok {
		l.sendControl(svcproto.ErrorCompletion{
			InvocationID: m.InvocationID, ConnectionID: m.ConnectionID, CallerServerID: m.CallerServerID,
			Error: "Connection '" + m.ConnectionID + "' does not exist.",
		})
		return
	}
	host := c.link.Load()
	inv := &pendingInvocation{created: time.Now(), hub: l.hub, client: c, caller: m.CallerServerID}
	if host != nil {
		inv.hostedBy = host.serverID
	}
	l.in.invMu.Lock()
	l.in.invocations[invKey(m.ConnectionID, m.InvocationID)] = inv
	l.in.invMu.Unlock()
	if host != nil && host.serverID != m.CallerServerID {
		host.sendControl(svcproto.ClientInvocation{
			InvocationID: m.InvocationID, ConnectionID: m.ConnectionID, CallerServerID: m.CallerServerID,
			Payloads: m.Payloads, Ext: m.Ext,
		})
	}
	if b, ok := m.Payloads.Get(c.protocol); ok {
		c.Send(b)
	}
}

// invKey identifies a pending invocation by connection and invocation id: both travel in every
// ClientCompletion and ErrorCompletion, while callerServerId does not (a hosting server relaying
// the result writes its own id there, as the .NET SDK does).
func invKey(connID, id string) string { return connID + "\x00" + id }

// completeInvocation routes a completion reported by server `from` to the caller.
func (in *instance) completeInvocation(connID, id, from string, m svcproto.Message) {
	in.invMu.Lock()
	inv, ok := in.invocations[invKey(connID, id)]
	if ok {
		delete(in.invocations, invKey(connID, id))
	}
	in.invMu.Unlock()
	if !ok || inv.caller == from {
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
	type failed struct {
		id  string
		inv *pendingInvocation
	}
	var out []failed
	in.invMu.Lock()
	for key, p := range in.invocations {
		if match(p) {
			out = append(out, failed{key[len(p.client.id)+1:], p})
			delete(in.invocations, key)
		}
	}
	in.invMu.Unlock()
	for _, f := range out {
		if l := f.inv.hub.linkToServer(f.inv.caller); l != nil {
			l.sendControl(svcproto.ErrorCompletion{
				InvocationID: f.id, ConnectionID: f.inv.client.id, CallerServerID: f.inv.caller, Error: reason,
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
}
