package svcproto

import (
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/signalrd/signalrd/protocol"
)

// ErrInvalid is wrapped by Append errors: a value the wire format or the SDK cannot carry
// (an int outside Int32, an unknown flow-control value, an unknown Message implementation, a body
// over 2^31-1 bytes).
var ErrInvalid = errors.New("svcproto: invalid message")

// maxBody is the largest body a VarInt length prefix can describe.
const maxBody = math.MaxInt32

// Append appends the unframed MessagePack body of m to dst, byte-identical to the SDK's writer
// (see the package doc for the layouts chosen). m may be a message struct or a pointer to one.
// On error dst is returned unchanged (truncated to its original length).
func Append(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	b, err := appendMessage(dst, m)
	if err == nil && len(b)-start > maxBody {
		err = fmt.Errorf("%w: %v body of %d bytes exceeds %d", ErrInvalid, reflect.TypeOf(m), len(b)-start, maxBody)
	}
	if err != nil {
		return dst[:start], err
	}
	return b, nil
}

// AppendFrame appends m with its VarInt length prefix, as it travels on the socket. The body is
// encoded in place after a prefix sized from a lower-bound estimate of the body length; only
// when the estimate falls short of a VarInt size class (e.g. a control message over 127 bytes)
// is the body moved to widen the prefix.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	reserve := protocol.VarintLen(sizeHint(m))
	for range reserve {
		dst = append(dst, 0)
	}
	b, err := Append(dst, m)
	if err != nil {
		return dst[:start], err
	}
	n := len(b) - start - reserve
	if need := protocol.VarintLen(n); need != reserve {
		// The hint is a lower bound, so the prefix only ever grows; the general move keeps
		// this correct even if it did not.
		for range need - reserve {
			b = append(b, 0)
		}
		copy(b[start+need:], b[start+reserve:start+reserve+n])
		b = b[:start+need+n]
	}
	protocol.AppendVarint(b[:start], n) // overwrite the reserved prefix in place
	return b, nil
}

// sizeHint is a cheap lower bound of the encoded body size, dominated by the binary payloads so
// that AppendFrame rarely needs to move data messages.
func sizeHint(m Message) int {
	switch m := m.(type) {
	case ConnectionData:
		return 4 + len(m.ConnectionID) + len(m.Payload)
	case *ConnectionData:
		if m != nil {
			return 4 + len(m.ConnectionID) + len(m.Payload)
		}
	case BroadcastData:
		return payloadsHint(m.Payloads)
	case *BroadcastData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case MultiConnectionData:
		return payloadsHint(m.Payloads)
	case *MultiConnectionData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case GroupBroadcastData:
		return payloadsHint(m.Payloads)
	case *GroupBroadcastData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case UserData:
		return payloadsHint(m.Payloads)
	case *UserData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case MultiUserData:
		return payloadsHint(m.Payloads)
	case *MultiUserData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case MultiGroupBroadcastData:
		return payloadsHint(m.Payloads)
	case *MultiGroupBroadcastData:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case ClientInvocation:
		return payloadsHint(m.Payloads)
	case *ClientInvocation:
		if m != nil {
			return payloadsHint(m.Payloads)
		}
	case ClientCompletion:
		return len(m.Payload)
	case *ClientCompletion:
		if m != nil {
			return len(m.Payload)
		}
	case Ack:
		return len(m.Payload)
	case *Ack:
		if m != nil {
			return len(m.Payload)
		}
	}
	return 0
}

func payloadsHint(p Payloads) int {
	n := 0
	for i := range p {
		n += 2 + len(p[i].Protocol) + len(p[i].Data)
	}
	return n
}

// appendMessage dispatches on the concrete type; pointer cases share the value encoders.
func appendMessage(b []byte, m Message) ([]byte, error) {
	// Client data, the per-message case, has a small frame of its own: appendMessageAny's big
	// type switch keeps a copy of every message type on the stack (over 4 KB), which would
	// grow the stack of every client reader forwarding data to its app server.
	switch m := m.(type) {
	case ConnectionData:
		return appendConnectionData(b, &m), nil
	case *ConnectionData:
		if m != nil {
			return appendConnectionData(b, m), nil
		}
	}
	return appendMessageAny(b, m)
}

//go:noinline
func appendMessageAny(b []byte, m Message) ([]byte, error) {
	switch m := m.(type) {
	case HandshakeRequest:
		return appendHandshakeRequest(b, &m)
	case *HandshakeRequest:
		if m != nil {
			return appendHandshakeRequest(b, m)
		}
	case HandshakeResponse:
		return appendHandshakeResponse(b, &m), nil
	case *HandshakeResponse:
		if m != nil {
			return appendHandshakeResponse(b, m), nil
		}
	case Ping:
		return appendPing(b, &m), nil
	case *Ping:
		if m != nil {
			return appendPing(b, m), nil
		}
	case OpenConnection:
		return appendOpenConnection(b, &m), nil
	case *OpenConnection:
		if m != nil {
			return appendOpenConnection(b, m), nil
		}
	case CloseConnection:
		return appendCloseConnection(b, &m), nil
	case *CloseConnection:
		if m != nil {
			return appendCloseConnection(b, m), nil
		}
	case ConnectionData:
		return appendConnectionData(b, &m), nil
	case *ConnectionData:
		if m != nil {
			return appendConnectionData(b, m), nil
		}
	case MultiConnectionData:
		return appendMulticast(b, m.Type(), m.ConnectionIDs, m.Payloads, &m.Ext), nil
	case *MultiConnectionData:
		if m != nil {
			return appendMulticast(b, m.Type(), m.ConnectionIDs, m.Payloads, &m.Ext), nil
		}
	case UserData:
		return appendUserData(b, &m), nil
	case *UserData:
		if m != nil {
			return appendUserData(b, m), nil
		}
	case MultiUserData:
		return appendMulticast(b, m.Type(), m.UserIDs, m.Payloads, &m.Ext), nil
	case *MultiUserData:
		if m != nil {
			return appendMulticast(b, m.Type(), m.UserIDs, m.Payloads, &m.Ext), nil
		}
	case BroadcastData:
		return appendMulticast(b, m.Type(), m.ExcludedConnections, m.Payloads, &m.Ext), nil
	case *BroadcastData:
		if m != nil {
			return appendMulticast(b, m.Type(), m.ExcludedConnections, m.Payloads, &m.Ext), nil
		}
	case JoinGroup:
		return appendTwoStr(b, m.Type(), m.ConnectionID, m.Group, false, &m.Ext), nil
	case *JoinGroup:
		if m != nil {
			return appendTwoStr(b, m.Type(), m.ConnectionID, m.Group, false, &m.Ext), nil
		}
	case LeaveGroup:
		return appendTwoStr(b, m.Type(), m.ConnectionID, m.Group, true, &m.Ext), nil
	case *LeaveGroup:
		if m != nil {
			return appendTwoStr(b, m.Type(), m.ConnectionID, m.Group, true, &m.Ext), nil
		}
	case GroupBroadcastData:
		return appendGroupBroadcastData(b, &m), nil
	case *GroupBroadcastData:
		if m != nil {
			return appendGroupBroadcastData(b, m), nil
		}
	case MultiGroupBroadcastData:
		return appendMulticast(b, m.Type(), m.Groups, m.Payloads, &m.Ext), nil
	case *MultiGroupBroadcastData:
		if m != nil {
			return appendMulticast(b, m.Type(), m.Groups, m.Payloads, &m.Ext), nil
		}
	case ServiceError:
		return appendStr(append(b, 0x92, byte(TypeServiceError)), m.ErrorMessage), nil
	case *ServiceError:
		if m != nil {
			return appendStr(append(b, 0x92, byte(TypeServiceError)), m.ErrorMessage), nil
		}
	case UserJoinGroup:
		return appendTwoStr(b, m.Type(), m.UserID, m.Group, false, &m.Ext), nil
	case *UserJoinGroup:
		if m != nil {
			return appendTwoStr(b, m.Type(), m.UserID, m.Group, false, &m.Ext), nil
		}
	case UserLeaveGroup:
		return appendTwoStr(b, m.Type(), m.UserID, m.Group, true, &m.Ext), nil
	case *UserLeaveGroup:
		if m != nil {
			return appendTwoStr(b, m.Type(), m.UserID, m.Group, true, &m.Ext), nil
		}
	case JoinGroupWithAck:
		return appendGroupAck(b, m.Type(), m.ConnectionID, m.Group, false, m.AckID, &m.Ext)
	case *JoinGroupWithAck:
		if m != nil {
			return appendGroupAck(b, m.Type(), m.ConnectionID, m.Group, false, m.AckID, &m.Ext)
		}
	case LeaveGroupWithAck:
		return appendGroupAck(b, m.Type(), m.ConnectionID, m.Group, true, m.AckID, &m.Ext)
	case *LeaveGroupWithAck:
		if m != nil {
			return appendGroupAck(b, m.Type(), m.ConnectionID, m.Group, true, m.AckID, &m.Ext)
		}
	case Ack:
		return appendAck(b, &m)
	case *Ack:
		if m != nil {
			return appendAck(b, m)
		}
	case CheckUserInGroupWithAck:
		return appendGroupAck(b, m.Type(), m.UserID, m.Group, false, m.AckID, &m.Ext)
	case *CheckUserInGroupWithAck:
		if m != nil {
			return appendGroupAck(b, m.Type(), m.UserID, m.Group, false, m.AckID, &m.Ext)
		}
	case ServiceEvent:
		return appendServiceEvent(b, &m)
	case *ServiceEvent:
		if m != nil {
			return appendServiceEvent(b, m)
		}
	case CheckGroupExistenceWithAck:
		return appendCheckAck(b, m.Type(), m.Group, m.AckID, &m.Ext)
	case *CheckGroupExistenceWithAck:
		if m != nil {
			return appendCheckAck(b, m.Type(), m.Group, m.AckID, &m.Ext)
		}
	case CheckConnectionExistenceWithAck:
		return appendCheckAck(b, m.Type(), m.ConnectionID, m.AckID, &m.Ext)
	case *CheckConnectionExistenceWithAck:
		if m != nil {
			return appendCheckAck(b, m.Type(), m.ConnectionID, m.AckID, &m.Ext)
		}
	case CheckUserExistenceWithAck:
		return appendCheckAck(b, m.Type(), m.UserID, m.AckID, &m.Ext)
	case *CheckUserExistenceWithAck:
		if m != nil {
			return appendCheckAck(b, m.Type(), m.UserID, m.AckID, &m.Ext)
		}
	case UserJoinGroupWithAck:
		return appendGroupAck(b, m.Type(), m.UserID, m.Group, false, m.AckID, &m.Ext)
	case *UserJoinGroupWithAck:
		if m != nil {
			return appendGroupAck(b, m.Type(), m.UserID, m.Group, false, m.AckID, &m.Ext)
		}
	case UserLeaveGroupWithAck:
		return appendGroupAck(b, m.Type(), m.UserID, m.Group, true, m.AckID, &m.Ext)
	case *UserLeaveGroupWithAck:
		if m != nil {
			return appendGroupAck(b, m.Type(), m.UserID, m.Group, true, m.AckID, &m.Ext)
		}
	case AccessKeyRequest:
		return appendAccessKeyRequest(b, &m), nil
	case *AccessKeyRequest:
		if m != nil {
			return appendAccessKeyRequest(b, m), nil
		}
	case AccessKeyResponse:
		return appendAccessKeyResponse(b, &m), nil
	case *AccessKeyResponse:
		if m != nil {
			return appendAccessKeyResponse(b, m), nil
		}
	case CloseConnectionWithAck:
		return appendCloseConnectionWithAck(b, &m)
	case *CloseConnectionWithAck:
		if m != nil {
			return appendCloseConnectionWithAck(b, m)
		}
	case CloseConnectionsWithAck:
		return appendCloseManyAck(b, m.Type(), nil, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
	case *CloseConnectionsWithAck:
		if m != nil {
			return appendCloseManyAck(b, m.Type(), nil, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
		}
	case CloseUserConnectionsWithAck:
		return appendCloseManyAck(b, m.Type(), &m.UserID, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
	case *CloseUserConnectionsWithAck:
		if m != nil {
			return appendCloseManyAck(b, m.Type(), &m.UserID, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
		}
	case CloseGroupConnectionsWithAck:
		return appendCloseManyAck(b, m.Type(), &m.Group, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
	case *CloseGroupConnectionsWithAck:
		if m != nil {
			return appendCloseManyAck(b, m.Type(), &m.Group, m.Reason, m.AckID, m.ExcludedConnections, &m.Ext)
		}
	case ClientInvocation:
		return appendClientInvocation(b, &m), nil
	case *ClientInvocation:
		if m != nil {
			return appendClientInvocation(b, m), nil
		}
	case ClientCompletion:
		return appendClientCompletion(b, &m), nil
	case *ClientCompletion:
		if m != nil {
			return appendClientCompletion(b, m), nil
		}
	case ErrorCompletion:
		return appendErrorCompletion(b, &m), nil
	case *ErrorCompletion:
		if m != nil {
			return appendErrorCompletion(b, m), nil
		}
	case ServiceMapping:
		return appendServiceMapping(b, &m), nil
	case *ServiceMapping:
		if m != nil {
			return appendServiceMapping(b, m), nil
		}
	case ConnectionReconnect:
		return appendExt(appendStr(append(b, 0x93, byte(TypeConnectionReconnect)), m.ConnectionID), m.Type(), &m.Ext), nil
	case *ConnectionReconnect:
		if m != nil {
			return appendExt(appendStr(append(b, 0x93, byte(TypeConnectionReconnect)), m.ConnectionID), m.Type(), &m.Ext), nil
		}
	case ConnectionFlowControl:
		return appendConnectionFlowControl(b, &m)
	case *ConnectionFlowControl:
		if m != nil {
			return appendConnectionFlowControl(b, m)
		}
	case GroupMemberQuery:
		return appendGroupMemberQuery(b, &m)
	case *GroupMemberQuery:
		if m != nil {
			return appendGroupMemberQuery(b, m)
		}
	default:
		// reflect.TypeOf, unlike fmt's %T, does not make m escape, which would cost every caller
		// an allocation to box its message.
		return b, fmt.Errorf("%w: unsupported Message implementation %v", ErrInvalid, reflect.TypeOf(m))
	}
	return b, fmt.Errorf("%w: nil %v", ErrInvalid, reflect.TypeOf(m))
}

func intErr(t MessageType, field string, v int) error {
	return fmt.Errorf("%w: %v.%s = %d does not fit in Int32", ErrInvalid, t, field, v)
}

func appendHandshakeRequest(b []byte, m *HandshakeRequest) ([]byte, error) {
	fields := m.Fields
	if fields == 0 {
		fields = 7
	}
	switch {
	case fields != 2 && (fields < 4 || fields > 7):
		return b, fmt.Errorf("%w: HandshakeRequest.Fields = %d, want 2, 4, 5, 6 or 7", ErrInvalid, m.Fields)
	case !fitsInt32(m.Version):
		return b, intErr(TypeHandshakeRequest, "Version", m.Version)
	case !fitsInt32(int(m.ConnectionType)):
		return b, intErr(TypeHandshakeRequest, "ConnectionType", int(m.ConnectionType))
	case !fitsInt32(m.MigrationLevel):
		return b, intErr(TypeHandshakeRequest, "MigrationLevel", m.MigrationLevel)
	}
	b = append(b, 0x90|byte(fields), byte(TypeHandshakeRequest))
	b = appendInt(b, int64(m.Version))
	if fields >= 4 {
		b = appendInt(b, int64(m.ConnectionType))
		b = appendStr(b, m.Target)
	}
	if fields >= 5 {
		b = appendInt(b, int64(m.MigrationLevel))
	}
	if fields >= 6 {
		b = appendExt(b, TypeHandshakeRequest, &m.Ext)
	}
	if fields >= 7 {
		b = appendBool(b, m.AllowStatefulReconnect)
	}
	return b, nil
}

func appendHandshakeResponse(b []byte, m *HandshakeResponse) []byte {
	b = appendStr(append(b, 0x94, byte(TypeHandshakeResponse)), m.ErrorMessage)
	b = appendExt(b, TypeHandshakeResponse, &m.Ext)
	return appendNilStr(b, m.ConnectionID)
}

func appendPing(b []byte, m *Ping) []byte {
	b = appendArrayLen(b, len(m.Values)+1)
	b = append(b, byte(TypePing))
	for _, v := range m.Values {
		b = appendStr(b, v)
	}
	return b
}

func appendOpenConnection(b []byte, m *OpenConnection) []byte {
	b = appendStr(append(b, 0x96, byte(TypeOpenConnection)), m.ConnectionID)
	b = appendClaims(b, m.Claims)
	b = appendHeaders(b, m.Headers)
	b = appendStr(b, m.QueryString)
	return appendExt(b, TypeOpenConnection, &m.Ext)
}

func appendCloseConnection(b []byte, m *CloseConnection) []byte {
	b = appendStr(append(b, 0x95, byte(TypeCloseConnection)), m.ConnectionID)
	b = appendStr(b, m.ErrorMessage)
	b = appendHeaders(b, m.Headers)
	return appendExt(b, TypeCloseConnection, &m.Ext)
}

func appendConnectionData(b []byte, m *ConnectionData) []byte {
	b = appendStr(append(b, 0x94, byte(TypeConnectionData)), m.ConnectionID)
	b = appendBin(b, m.Payload)
	return appendExt(b, TypeConnectionData, &m.Ext)
}

// appendMulticast writes the [t, [str], payloads, ext] layout of types 7, 9, 10 and 14.
func appendMulticast(b []byte, t MessageType, list []string, p Payloads, e *Ext) []byte {
	b = appendStrArray(append(b, 0x94, byte(t)), list)
	b = appendPayloads(b, p)
	return appendExt(b, t, e)
}

func appendUserData(b []byte, m *UserData) []byte {
	b = appendStr(append(b, 0x94, byte(TypeUserData)), m.UserID)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeUserData, &m.Ext)
}

// appendTwoStr writes the [t, id, group, ext] layout of types 11, 12, 16 and 17; nilGroup writes
// an empty group as nil (the leave messages, where nil means all groups).
func appendTwoStr(b []byte, t MessageType, id, group string, nilGroup bool, e *Ext) []byte {
	b = appendStr(append(b, 0x94, byte(t)), id)
	if nilGroup {
		b = appendNilStr(b, group)
	} else {
		b = appendStr(b, group)
	}
	return appendExt(b, t, e)
}

// appendGroupAck writes the [t, id, group, ackId, ext] layout of types 18, 19, 21, 26 and 27.
func appendGroupAck(b []byte, t MessageType, id, group string, nilGroup bool, ackID int, e *Ext) ([]byte, error) {
	if !fitsInt32(ackID) {
		return b, intErr(t, "AckID", ackID)
	}
	b = appendStr(append(b, 0x95, byte(t)), id)
	if nilGroup {
		b = appendNilStr(b, group)
	} else {
		b = appendStr(b, group)
	}
	b = appendInt(b, int64(ackID))
	return appendExt(b, t, e), nil
}

func appendGroupBroadcastData(b []byte, m *GroupBroadcastData) []byte {
	b = appendStr(append(b, 0x97, byte(TypeGroupBroadcastData)), m.Group)
	b = appendStrArray(b, m.ExcludedConnections)
	b = appendPayloads(b, m.Payloads)
	b = appendExt(b, TypeGroupBroadcastData, &m.Ext)
	b = appendStrArray(b, m.ExcludedUsers)
	return appendNilStr(b, m.CallerUserID)
}

func appendAck(b []byte, m *Ack) ([]byte, error) {
	if !fitsInt32(m.AckID) {
		return b, intErr(TypeAck, "AckID", m.AckID)
	}
	if !fitsInt32(int(m.Status)) {
		return b, intErr(TypeAck, "Status", int(m.Status))
	}
	if m.Payload == nil {
		b = append(b, 0x95, byte(TypeAck))
	} else {
		b = append(b, 0x96, byte(TypeAck))
	}
	b = appendInt(b, int64(m.AckID))
	b = appendInt(b, int64(m.Status))
	b = appendStr(b, m.Message)
	b = appendExt(b, TypeAck, &m.Ext)
	if m.Payload != nil {
		b = appendBin(b, m.Payload)
	}
	return b, nil
}

func appendServiceEvent(b []byte, m *ServiceEvent) ([]byte, error) {
	if !fitsInt32(m.ObjectType) {
		return b, intErr(TypeServiceEvent, "ObjectType", m.ObjectType)
	}
	if !fitsInt32(m.Kind) {
		return b, intErr(TypeServiceEvent, "Kind", m.Kind)
	}
	b = appendInt(append(b, 0x96, byte(TypeServiceEvent)), int64(m.ObjectType))
	b = appendStr(b, m.ID)
	b = appendInt(b, int64(m.Kind))
	b = appendStr(b, m.Message)
	return appendExt(b, TypeServiceEvent, &m.Ext), nil
}

// appendCheckAck writes the [t, id, ackId, ext] layout of types 23, 24 and 25.
func appendCheckAck(b []byte, t MessageType, id string, ackID int, e *Ext) ([]byte, error) {
	if !fitsInt32(ackID) {
		return b, intErr(t, "AckID", ackID)
	}
	b = appendStr(append(b, 0x94, byte(t)), id)
	b = appendInt(b, int64(ackID))
	return appendExt(b, t, e), nil
}

func appendAccessKeyRequest(b []byte, m *AccessKeyRequest) []byte {
	b = appendStr(append(b, 0x94, byte(TypeAccessKeyRequest)), m.Token)
	b = appendNilStr(b, m.KeyID)
	return appendExt(b, TypeAccessKeyRequest, &m.Ext)
}

func appendAccessKeyResponse(b []byte, m *AccessKeyResponse) []byte {
	b = appendNilStr(append(b, 0x96, byte(TypeAccessKeyResponse)), m.KeyID)
	b = appendNilStr(b, m.AccessKey)
	b = appendNilStr(b, m.ErrorType)
	b = appendNilStr(b, m.ErrorMessage)
	return appendExt(b, TypeAccessKeyResponse, &m.Ext)
}

func appendCloseConnectionWithAck(b []byte, m *CloseConnectionWithAck) ([]byte, error) {
	if !fitsInt32(m.AckID) {
		return b, intErr(TypeCloseConnectionWithAck, "AckID", m.AckID)
	}
	b = appendStr(append(b, 0x95, byte(TypeCloseConnectionWithAck)), m.ConnectionID)
	b = appendNilStr(b, m.Reason)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCloseConnectionWithAck, &m.Ext), nil
}

// appendCloseManyAck writes [t, (id,) reason, ackId, excluded, ext] for types 31, 32 and 33;
// id is nil for 31, which has no leading id.
func appendCloseManyAck(b []byte, t MessageType, id *string, reason string, ackID int, excluded []string, e *Ext) ([]byte, error) {
	if !fitsInt32(ackID) {
		return b, intErr(t, "AckID", ackID)
	}
	if id == nil {
		b = append(b, 0x95, byte(t))
	} else {
		b = appendStr(append(b, 0x96, byte(t)), *id)
	}
	b = appendNilStr(b, reason)
	b = appendInt(b, int64(ackID))
	b = appendStrArray(b, excluded)
	return appendExt(b, t, e), nil
}

func appendClientInvocation(b []byte, m *ClientInvocation) []byte {
	b = appendStr(append(b, 0x96, byte(TypeClientInvocation)), m.InvocationID)
	b = appendStr(b, m.ConnectionID)
	b = appendStr(b, m.CallerServerID)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeClientInvocation, &m.Ext)
}

func appendClientCompletion(b []byte, m *ClientCompletion) []byte {
	b = appendStr(append(b, 0x97, byte(TypeClientCompletion)), m.InvocationID)
	b = appendStr(b, m.ConnectionID)
	b = appendStr(b, m.CallerServerID)
	b = appendStr(b, m.Protocol)
	b = appendBin(b, m.Payload)
	return appendExt(b, TypeClientCompletion, &m.Ext)
}

func appendErrorCompletion(b []byte, m *ErrorCompletion) []byte {
	b = appendStr(append(b, 0x96, byte(TypeErrorCompletion)), m.InvocationID)
	b = appendStr(b, m.ConnectionID)
	b = appendStr(b, m.CallerServerID)
	b = appendStr(b, m.Error)
	return appendExt(b, TypeErrorCompletion, &m.Ext)
}

func appendServiceMapping(b []byte, m *ServiceMapping) []byte {
	b = appendStr(append(b, 0x95, byte(TypeServiceMapping)), m.InvocationID)
	b = appendStr(b, m.ConnectionID)
	b = appendStr(b, m.InstanceID)
	return appendExt(b, TypeServiceMapping, &m.Ext)
}

func appendConnectionFlowControl(b []byte, m *ConnectionFlowControl) ([]byte, error) {
	if !validFlow(m.Target, m.Op) {
		return b, fmt.Errorf("%w: ConnectionFlowControl target %d / operation %d", ErrInvalid, m.Target, m.Op)
	}
	b = appendStr(append(b, 0x95, byte(TypeConnectionFlowControl)), m.ConnectionID)
	b = appendInt32Fixed(b, int32(m.Target))
	b = appendInt32Fixed(b, int32(m.Op))
	return appendExt(b, TypeConnectionFlowControl, &m.Ext), nil
}

func appendGroupMemberQuery(b []byte, m *GroupMemberQuery) ([]byte, error) {
	if !fitsInt32(m.AckID) {
		return b, intErr(TypeGroupMemberQuery, "AckID", m.AckID)
	}
	if !fitsInt32(m.Max) {
		return b, intErr(TypeGroupMemberQuery, "Max", m.Max)
	}
	b = appendExt(append(b, 0x96, byte(TypeGroupMemberQuery)), TypeGroupMemberQuery, &m.Ext)
	b = appendStr(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	b = appendInt(b, int64(m.Max))
	return appendNilStr(b, m.ContinuationToken), nil
}
