package server

import (
	"context"
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/router"
)

// dispatch handles one message from an app server. It runs on the link's reader goroutine, so
// everything one socket sends reaches each client in order.
func (l *link) dispatch(m svcproto.Message) {
	hs := l.hub
	l.traceDispatch(m)
	switch m := m.(type) {
	case svcproto.Ping:
		l.onPing(m)
	case svcproto.ConnectionData:
		if c, ok := l.hub.client(m.ConnectionID); ok {
			c.sendFromApp(m.Payload) // the Reader gives every message its own copy of its body
		} else if cl := l.in.cl; cl != nil {
			cl.toRelayedClient(l.ctx, m)
		}
		// Data for unknown or closed connections is expected after a close; drop it.
	case svcproto.CloseConnection:
		if c, ok := l.hub.client(m.ConnectionID); ok {
			c.closeFromApp()
		} else if cl := l.in.cl; cl != nil {
			cl.toRelayedClient(l.ctx, m)
		}
	case svcproto.MultiConnectionData:
		hs.sendConnections(l.ctx, m.ConnectionIDs, m.Payloads)
	case svcproto.UserData:
		hs.sendUsers([]string{m.UserID}, m.Payloads)
	case svcproto.MultiUserData:
		hs.sendUsers(m.UserIDs, m.Payloads)
	case svcproto.BroadcastData:
		hs.broadcast(m.Payloads, m.ExcludedConnections)
	case svcproto.GroupBroadcastData:
		hs.sendGroup(m.Group, m.Payloads, m.ExcludedConnections, m.ExcludedUsers)
	case svcproto.MultiGroupBroadcastData:
		hs.sendGroups(m.Groups, m.Payloads)
	case svcproto.JoinGroup:
		l.onConn(m.ConnectionID, func(ctx context.Context) { hs.joinGroup(ctx, m.ConnectionID, m.Group) })
	case svcproto.LeaveGroup:
		l.onConn(m.ConnectionID, func(ctx context.Context) { hs.leaveGroup(ctx, m.ConnectionID, m.Group) })
	case svcproto.UserJoinGroup:
		hs.conn.UserJoinGroup(m.UserID, m.Group, ttlOf(m.Ext)) // this node's members at once, in link order
		l.later(func(ctx context.Context) { hs.userJoinGroupElsewhere(ctx, m.UserID, m.Group, ttlOf(m.Ext)) })
	case svcproto.UserLeaveGroup:
		hs.conn.UserLeaveGroup(m.UserID, m.Group)
		l.later(func(ctx context.Context) { hs.userLeaveGroupElsewhere(ctx, m.UserID, m.Group) })
	case svcproto.JoinGroupWithAck:
		l.onConn(m.ConnectionID, func(ctx context.Context) { l.ackStatus(m.AckID, hs.joinGroup(ctx, m.ConnectionID, m.Group), m.Ext) })
	case svcproto.LeaveGroupWithAck:
		l.onConn(m.ConnectionID, func(ctx context.Context) { l.ackStatus(m.AckID, hs.leaveGroup(ctx, m.ConnectionID, m.Group), m.Ext) })
	case svcproto.UserJoinGroupWithAck:
		hs.conn.UserJoinGroup(m.UserID, m.Group, ttlOf(m.Ext))
		l.later(func(ctx context.Context) {
			hs.userJoinGroupElsewhere(ctx, m.UserID, m.Group, ttlOf(m.Ext))
			l.ack(m.AckID, true, m.Ext)
		})
	case svcproto.UserLeaveGroupWithAck:
		hs.conn.UserLeaveGroup(m.UserID, m.Group)
		l.later(func(ctx context.Context) {
			hs.userLeaveGroupElsewhere(ctx, m.UserID, m.Group)
			l.ack(m.AckID, true, m.Ext)
		})
	case svcproto.CheckUserInGroupWithAck:
		l.later(func(ctx context.Context) { l.ack(m.AckID, hs.userInGroup(ctx, m.UserID, m.Group), m.Ext) })
	case svcproto.CheckGroupExistenceWithAck:
		l.later(func(ctx context.Context) { l.ack(m.AckID, hs.groupExists(ctx, m.Group), m.Ext) })
	case svcproto.CheckConnectionExistenceWithAck:
		l.onConn(m.ConnectionID, func(ctx context.Context) { l.ack(m.AckID, hs.connExists(ctx, m.ConnectionID), m.Ext) })
	case svcproto.CheckUserExistenceWithAck:
		l.later(func(ctx context.Context) { l.ack(m.AckID, hs.userExists(ctx, m.UserID), m.Ext) })
	case svcproto.CloseConnectionWithAck:
		l.onConn(m.ConnectionID, func(ctx context.Context) { l.ackStatus(m.AckID, hs.closeConn(ctx, m.ConnectionID, m.Reason), m.Ext) })
	case svcproto.CloseConnectionsWithAck:
		hs.closeAll(m.Reason, m.ExcludedConnections)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.CloseUserConnectionsWithAck:
		hs.closeUser(m.UserID, m.Reason, m.ExcludedConnections)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.CloseGroupConnectionsWithAck:
		hs.closeGroup(m.Group, m.Reason, m.ExcludedConnections)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.ClientInvocation:
		l.onClientInvocation(m)
	case svcproto.ClientCompletion:
		l.in.completeInvocation(m.ConnectionID, m.InvocationID, l.serverID, m)
	case svcproto.ErrorCompletion:
		l.in.completeInvocation(m.ConnectionID, m.InvocationID, l.serverID, m)
	case svcproto.AccessKeyRequest:
		l.sendControl(svcproto.AccessKeyResponse{
			KeyID:        m.KeyID,
			ErrorType:    "NotSupportedException",
			ErrorMessage: "signalrd authenticates app servers with access keys only; Microsoft Entra ID is not supported.",
		})
	case svcproto.ConnectionFlowControl, svcproto.HandshakeRequest, svcproto.ServiceError:
		// PauseAck is only sent in answer to a Pause, which this node does not send.
	default:
		l.log.Debug("ignored service message", "type", m.Type())
	}
}

// onConn runs a command or check on one connection: at once for a connection of this node
// (keeping the link's order, which the SDK relies on: a JoinGroup then a group send), else
// through later.
func (l *link) onConn(connID string, fn func(ctx context.Context)) {
	if _, ok := l.hub.conn.Conn(connID); ok {
		fn(l.ctx)
		return
	}
	l.later(fn)
}

// later runs a command or check at once on a single node. In a cluster, where it must ask
// other nodes, it runs on its own goroutine so the link keeps reading; the Ack goes out when
// the answers arrive (their effect on this node's connections was applied in link order).
func (l *link) later(fn func(ctx context.Context)) {
	if l.in.cl == nil {
		fn(l.ctx)
		return
	}
	l.in.srv.goConn(func() {
		ctx, cancel := context.WithTimeout(l.ctx, rpcTimeout+storeTimeout)
		defer cancel()
		fn(ctx)
	})
}

// ack answers an ack-able request: Ok when it took effect, NotFound otherwise.
func (l *link) ack(id int, ok bool, ext svcproto.Ext) {
	st := svcproto.AckOK
	if !ok {
		st = svcproto.AckNotFound
	}
	l.ackStatus(id, st, ext)
}

// ackStatus answers an ack-able request with a status.
func (l *link) ackStatus(id int, st svcproto.AckStatus, ext svcproto.Ext) {
	var e svcproto.Ext
	if ext.HasTracingID {
		e.TracingID, e.HasTracingID = ext.TracingID, true
	}
	l.sendControl(svcproto.Ack{AckID: id, Status: st, Ext: e})
}

func ttlOf(e svcproto.Ext) time.Duration {
	if e.HasTTL && e.TTL > 0 {
		return time.Duration(e.TTL) * time.Second
	}
	return 0
}

func closeConns(conns []router.Conn, reason string, excluded []string) {
	for _, rc := range conns {
		c, ok := rc.(*client)
		if !ok || containsString(excluded, c.id) {
			continue
		}
		c.closeWith(closeReasonService, reason, false)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
