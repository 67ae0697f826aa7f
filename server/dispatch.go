package server

import (
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/router"
)

// dispatch handles one message from an app server. It runs on the link's reader goroutine, so
// everything one socket sends reaches each client in order.
func (l *link) dispatch(m svcproto.Message) {
	h := l.hub.conn
	l.traceDispatch(m)
	switch m := m.(type) {
	case svcproto.Ping:
		l.onPing(m)
	case svcproto.ConnectionData:
		if c, ok := l.hub.client(m.ConnectionID); ok {
			c.sendFromApp(m.Payload) // the Reader gives every message its own copy of its body

		}
		// Data for unknown or closed connections is expected after a close; drop it.
	case svcproto.CloseConnection:
		if c, ok := l.hub.client(m.ConnectionID); ok {
			c.closeFromApp()
		}
	case svcproto.MultiConnectionData:
		h.SendConnections(m.ConnectionIDs, m.Payloads)
	case svcproto.UserData:
		h.SendUsers([]string{m.UserID}, m.Payloads)
	case svcproto.MultiUserData:
		h.SendUsers(m.UserIDs, m.Payloads)
	case svcproto.BroadcastData:
		h.Broadcast(m.Payloads, m.ExcludedConnections)
	case svcproto.GroupBroadcastData:
		h.SendGroup(m.Group, m.Payloads, m.ExcludedConnections, m.ExcludedUsers)
	case svcproto.MultiGroupBroadcastData:
		h.SendGroups(m.Groups, m.Payloads)
	case svcproto.JoinGroup:
		h.JoinGroup(m.ConnectionID, m.Group)
	case svcproto.LeaveGroup:
		h.LeaveGroup(m.ConnectionID, m.Group)
	case svcproto.UserJoinGroup:
		h.UserJoinGroup(m.UserID, m.Group, ttlOf(m.Ext))
	case svcproto.UserLeaveGroup:
		h.UserLeaveGroup(m.UserID, m.Group)
	case svcproto.JoinGroupWithAck:
		l.ack(m.AckID, h.JoinGroup(m.ConnectionID, m.Group), m.Ext)
	case svcproto.LeaveGroupWithAck:
		l.ack(m.AckID, h.LeaveGroup(m.ConnectionID, m.Group), m.Ext)
	case svcproto.UserJoinGroupWithAck:
		h.UserJoinGroup(m.UserID, m.Group, ttlOf(m.Ext))
		l.ack(m.AckID, true, m.Ext)
	case svcproto.UserLeaveGroupWithAck:
		h.UserLeaveGroup(m.UserID, m.Group)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.CheckUserInGroupWithAck:
		l.ack(m.AckID, h.UserInGroup(m.UserID, m.Group), m.Ext)
	case svcproto.CheckGroupExistenceWithAck:
		l.ack(m.AckID, h.GroupExists(m.Group), m.Ext)
	case svcproto.CheckConnectionExistenceWithAck:
		_, ok := h.Conn(m.ConnectionID)
		l.ack(m.AckID, ok, m.Ext)
	case svcproto.CheckUserExistenceWithAck:
		l.ack(m.AckID, h.UserExists(m.UserID), m.Ext)
	case svcproto.CloseConnectionWithAck:
		c, ok := l.hub.client(m.ConnectionID)
		if ok {
			c.closeWith(closeReasonService, m.Reason, false)
		}
		l.ack(m.AckID, ok, m.Ext)
	case svcproto.CloseConnectionsWithAck:
		closeConns(h.Conns(), m.Reason, m.ExcludedConnections)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.CloseUserConnectionsWithAck:
		closeConns(h.UserConns(m.UserID), m.Reason, m.ExcludedConnections)
		l.ack(m.AckID, true, m.Ext)
	case svcproto.CloseGroupConnectionsWithAck:
		closeConns(h.GroupConns(m.Group), m.Reason, m.ExcludedConnections)
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

// ack answers an ack-able request: Ok when it took effect, NotFound otherwise.
func (l *link) ack(id int, ok bool, ext svcproto.Ext) {
	st := svcproto.AckOK
	if !ok {
		st = svcproto.AckNotFound
	}
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
