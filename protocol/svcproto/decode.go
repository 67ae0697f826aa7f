package svcproto

import (
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("svcproto: malformed message")

// minFields is the shortest array (type id included) each message type can be read from: the
// fields MessagePack-CSharp's reader reads unconditionally. Longer arrays add optional tail fields;
// elements beyond the known ones are ignored, as the SDK does.
var minFields = [maxKnownType + 1]int{
	TypeHandshakeRequest:                2,
	TypeHandshakeResponse:               2,
	TypePing:                            1,
	TypeOpenConnection:                  3,
	TypeCloseConnection:                 3,
	TypeConnectionData:                  3,
	TypeMultiConnectionData:             3,
	TypeUserData:                        3,
	TypeMultiUserData:                   3,
	TypeBroadcastData:                   3,
	TypeJoinGroup:                       3,
	TypeLeaveGroup:                      3,
	TypeGroupBroadcastData:              4,
	TypeMultiGroupBroadcastData:         3,
	TypeServiceError:                    2,
	TypeUserJoinGroup:                   3,
	TypeUserLeaveGroup:                  3,
	TypeJoinGroupWithAck:                4,
	TypeLeaveGroupWithAck:               4,
	TypeAck:                             4,
	TypeCheckUserInGroupWithAck:         4,
	TypeServiceEvent:                    6,
	TypeCheckGroupExistenceWithAck:      4,
	TypeCheckConnectionExistenceWithAck: 4,
	TypeCheckUserExistenceWithAck:       4,
	TypeUserJoinGroupWithAck:            5,
	TypeUserLeaveGroupWithAck:           5,
	TypeAccessKeyRequest:                4,
	TypeAccessKeyResponse:               6,
	TypeCloseConnectionWithAck:          4,
	TypeCloseConnectionsWithAck:         4,
	TypeCloseUserConnectionsWithAck:     5,
	TypeCloseGroupConnectionsWithAck:    5,
	TypeClientInvocation:                6,
	TypeClientCompletion:                7,
	TypeErrorCompletion:                 6,
	TypeServiceMapping:                  5,
	TypeConnectionReconnect:             3,
	TypeConnectionFlowControl:           4,
	TypeGroupMemberQuery:                6,
}

// Decode parses one unframed message body (no length prefix).
//
// An unknown type id returns (nil, nil) so the caller can skip it, as the SDK does. Malformed input
// returns an error wrapping ErrMalformed. []byte fields of the result (payloads) alias body, so
// body must not be modified while they are in use; strings are copied.
func Decode(body []byte) (Message, error) {
	m, _, err := decode(body)
	return m, err
}

// decode is Decode that also reports how many bytes of body the message used.
func decode(body []byte) (Message, int, error) {
	d := decoder{b: body}
	n := d.arrayLen()
	if d.err == nil && n == 0 {
		d.fail(errShort, 0)
	}
	id := d.int32()
	if d.err != nil {
		return nil, d.i, fmt.Errorf("%w: message header at byte %d: %v", ErrMalformed, d.at, d.err)
	}
	if id < 1 || id > int32(maxKnownType) {
		return nil, d.i, nil
	}
	t := MessageType(id)
	if n < minFields[t] {
		return nil, d.i, fmt.Errorf("%w: %v has %d elements, need at least %d", ErrMalformed, t, n, minFields[t])
	}
	m := decodeFields(&d, t, n)
	if d.err != nil {
		return nil, d.i, fmt.Errorf("%w: %v at byte %d: %v", ErrMalformed, t, d.at, d.err)
	}
	return m, d.i, nil
}

// decodeFields reads the elements after the type id of an n-element message of type t.
func decodeFields(d *decoder, t MessageType, n int) Message {
	switch t {
	case TypeHandshakeRequest:
		m := HandshakeRequest{Version: d.int(), Fields: 2}
		if n >= 4 {
			m.ConnectionType = ConnectionType(d.int32())
			m.Target = d.str()
			m.Fields = 4
		}
		if n >= 5 {
			m.MigrationLevel = d.int()
			m.Fields = 5
		}
		if n >= 6 {
			m.Ext = d.ext(t)
			m.Fields = 6
		}
		if n >= 7 {
			m.AllowStatefulReconnect = d.bool()
			m.Fields = 7
		}
		return m
	case TypeHandshakeResponse:
		m := HandshakeResponse{ErrorMessage: d.str()}
		if n >= 3 {
			m.Ext = d.ext(t)
		}
		if n >= 4 {
			m.ConnectionID = d.str()
		}
		return m
	case TypePing:
		var m Ping
		if n > 1 {
			m.Values = make([]string, n-1)
			for i := range m.Values {
				m.Values[i] = d.str()
			}
		}
		return m
	case TypeOpenConnection:
		m := OpenConnection{ConnectionID: d.str(), Claims: d.claims()}
		if n >= 5 { // a 4-element array is read as the 3-element layout, like the SDK
			m.Headers = d.headers()
			m.QueryString = d.str()
		}
		if n >= 6 {
			m.Ext = d.ext(t)
		}
		return m
	case TypeCloseConnection:
		m := CloseConnection{ConnectionID: d.str(), ErrorMessage: d.str()}
		if n >= 4 {
			m.Headers = d.headers()
		}
		if n >= 5 {
			m.Ext = d.ext(t)
		}
		return m
	case TypeConnectionData:
		m := ConnectionData{ConnectionID: d.str(), Payload: d.bytes()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeMultiConnectionData:
		m := MultiConnectionData{ConnectionIDs: d.strArray(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeUserData:
		m := UserData{UserID: d.str(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeMultiUserData:
		m := MultiUserData{UserIDs: d.strArray(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeBroadcastData:
		m := BroadcastData{ExcludedConnections: d.strArray(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeJoinGroup:
		m := JoinGroup{ConnectionID: d.str(), Group: d.str()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeLeaveGroup:
		m := LeaveGroup{ConnectionID: d.str(), Group: d.str()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeGroupBroadcastData:
		m := GroupBroadcastData{Group: d.str(), ExcludedConnections: d.strArray(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 5)
		if n >= 7 { // a 6-element array is read as the 5-element layout, like the SDK
			m.ExcludedUsers = d.strArray()
			m.CallerUserID = d.str()
		}
		return m
	case TypeMultiGroupBroadcastData:
		m := MultiGroupBroadcastData{Groups: d.strArray(), Payloads: d.payloads()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeServiceError:
		return ServiceError{ErrorMessage: d.str()}
	case TypeUserJoinGroup:
		m := UserJoinGroup{UserID: d.str(), Group: d.str()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeUserLeaveGroup:
		m := UserLeaveGroup{UserID: d.str(), Group: d.str()}
		m.Ext = d.optExt(t, n, 4)
		return m
	case TypeJoinGroupWithAck:
		m := JoinGroupWithAck{ConnectionID: d.str(), Group: d.str(), AckID: d.int()}
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeLeaveGroupWithAck:
		m := LeaveGroupWithAck{ConnectionID: d.str(), Group: d.str(), AckID: d.int()}
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeAck:
		m := Ack{AckID: d.int(), Status: AckStatus(d.int32()), Message: d.str()}
		m.Ext = d.optExt(t, n, 5)
		if n >= 6 {
			m.Payload, _ = d.bin()
		}
		return m
	case TypeCheckUserInGroupWithAck:
		m := CheckUserInGroupWithAck{UserID: d.str(), Group: d.str(), AckID: d.int()}
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeServiceEvent:
		return ServiceEvent{ObjectType: d.int(), ID: d.str(), Kind: d.int(), Message: d.str(), Ext: d.ext(t)}
	case TypeCheckGroupExistenceWithAck:
		return CheckGroupExistenceWithAck{Group: d.str(), AckID: d.int(), Ext: d.ext(t)}
	case TypeCheckConnectionExistenceWithAck:
		return CheckConnectionExistenceWithAck{ConnectionID: d.str(), AckID: d.int(), Ext: d.ext(t)}
	case TypeCheckUserExistenceWithAck:
		return CheckUserExistenceWithAck{UserID: d.str(), AckID: d.int(), Ext: d.ext(t)}
	case TypeUserJoinGroupWithAck:
		return UserJoinGroupWithAck{UserID: d.str(), Group: d.str(), AckID: d.int(), Ext: d.ext(t)}
	case TypeUserLeaveGroupWithAck:
		return UserLeaveGroupWithAck{UserID: d.str(), Group: d.str(), AckID: d.int(), Ext: d.ext(t)}
	case TypeAccessKeyRequest:
		return AccessKeyRequest{Token: d.str(), KeyID: d.str(), Ext: d.ext(t)}
	case TypeAccessKeyResponse:
		return AccessKeyResponse{KeyID: d.str(), AccessKey: d.str(), ErrorType: d.str(), ErrorMessage: d.str(), Ext: d.ext(t)}
	case TypeCloseConnectionWithAck:
		m := CloseConnectionWithAck{ConnectionID: d.str(), Reason: d.str(), AckID: d.int()}
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeCloseConnectionsWithAck:
		m := CloseConnectionsWithAck{Reason: d.str(), AckID: d.int(), ExcludedConnections: d.strArray()}
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeCloseUserConnectionsWithAck:
		m := CloseUserConnectionsWithAck{UserID: d.str(), Reason: d.str(), AckID: d.int(), ExcludedConnections: d.strArray()}
		m.Ext = d.optExt(t, n, 6)
		return m
	case TypeCloseGroupConnectionsWithAck:
		m := CloseGroupConnectionsWithAck{Group: d.str(), Reason: d.str(), AckID: d.int(), ExcludedConnections: d.strArray()}
		m.Ext = d.optExt(t, n, 6)
		return m
	case TypeClientInvocation:
		return ClientInvocation{InvocationID: d.str(), ConnectionID: d.str(), CallerServerID: d.str(),
			Payloads: d.payloads(), Ext: d.ext(t)}
	case TypeClientCompletion:
		return ClientCompletion{InvocationID: d.str(), ConnectionID: d.str(), CallerServerID: d.str(),
			Protocol: d.internStr(), Payload: d.bytes(), Ext: d.ext(t)}
	case TypeErrorCompletion:
		return ErrorCompletion{InvocationID: d.str(), ConnectionID: d.str(), CallerServerID: d.str(),
			Error: d.str(), Ext: d.ext(t)}
	case TypeServiceMapping:
		return ServiceMapping{InvocationID: d.str(), ConnectionID: d.str(), InstanceID: d.str(), Ext: d.ext(t)}
	case TypeConnectionReconnect:
		return ConnectionReconnect{ConnectionID: d.str(), Ext: d.ext(t)}
	case TypeConnectionFlowControl:
		at := d.i
		m := ConnectionFlowControl{ConnectionID: d.str(), Target: FlowControlTarget(d.int32()), Op: FlowControlOp(d.int32())}
		if !validFlow(m.Target, m.Op) {
			d.fail(errBadValue, at)
		}
		// The SDK reader stops before the ext map; read it when present to validate it.
		m.Ext = d.optExt(t, n, 5)
		return m
	case TypeGroupMemberQuery:
		// The ext map comes first in this message.
		return GroupMemberQuery{Ext: d.ext(t), Group: d.str(), AckID: d.int(), Max: d.int(), ContinuationToken: d.str()}
	}
	return nil // unreachable: t is a known type
}

// optExt reads the ext map if the array has at least minLen elements.
func (d *decoder) optExt(t MessageType, n, minLen int) Ext {
	if n < minLen {
		return Ext{}
	}
	return d.ext(t)
}

// int reads an int32-range integer into an int (the SDK's int fields are Int32).
func (d *decoder) int() int { return int(d.int32()) }

func validFlow(t FlowControlTarget, op FlowControlOp) bool {
	return (t == FlowClient || t == FlowServer) && op >= FlowPause && op <= FlowOffline
}

// fitsInt32 reports whether v survives the SDK's Int32 fields.
func fitsInt32(v int) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }
