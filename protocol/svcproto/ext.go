package svcproto

// Ext is the extension map carried by most messages: a MessagePack map with int keys 1..6.
// Zero values mean "absent" and are not written; members are written in key order 1..6.
//
// Only the members the SDK's message class implements are written or read for a message type
// (see extKeys): the SDK reader does not consume the value of a known key its class lacks, so
// sending, say, a tracing id on an Ack would desynchronise it. Members set on other types are
// silently dropped by Append and ignored by Decode.
type Ext struct {
	TracingID       uint64 // key 1
	HasTracingID    bool
	TTL             int32 // key 2, seconds
	HasTTL          bool
	Protocol        string          // key 3, "" = absent
	Filter          string          // key 4, "" = absent
	DataMessageType DataMessageType // key 5, DataUnknown = absent
	IsPartial       bool            // key 6, written only when true
}

// Extension map keys.
const (
	extTracingID       = 1
	extTTL             = 2
	extProtocol        = 3
	extFilter          = 4
	extDataMessageType = 5
	extIsPartial       = 6
)

// Legacy returns e without the members added in SDK 1.26 (keys 5 and 6): readers before
// PR #1932 cannot skip unknown keys, so only send those to SDKs that sent a 7-element handshake.
func (e Ext) Legacy() Ext {
	e.DataMessageType = DataUnknown
	e.IsPartial = false
	return e
}

const (
	kTrace    = 1 << extTracingID
	kTTL      = 1 << extTTL
	kProtocol = 1 << extProtocol
	kFilter   = 1 << extFilter
	kData     = 1<<extDataMessageType | 1<<extIsPartial
)

// extKeys is the set of ext keys each message type carries, from the SDK's interfaces
// (IMessageWithTracingId, IHasTtl, IHasProtocol, IHasSubscriberFilter, IHasDataMessageType,
// IPartializable). Types with no entry carry an (always empty) map or none at all.
var extKeys = [maxKnownType + 1]uint8{
	TypeOpenConnection:                  kTrace | kProtocol,
	TypeCloseConnection:                 kTrace,
	TypeConnectionData:                  kTrace | kData,
	TypeMultiConnectionData:             kTrace | kFilter,
	TypeUserData:                        kTrace | kFilter,
	TypeMultiUserData:                   kTrace | kFilter,
	TypeBroadcastData:                   kTrace | kFilter,
	TypeJoinGroup:                       kTrace,
	TypeLeaveGroup:                      kTrace,
	TypeGroupBroadcastData:              kTrace | kFilter,
	TypeMultiGroupBroadcastData:         kTrace | kFilter,
	TypeUserJoinGroup:                   kTrace | kTTL,
	TypeUserLeaveGroup:                  kTrace,
	TypeJoinGroupWithAck:                kTrace,
	TypeLeaveGroupWithAck:               kTrace,
	TypeCheckUserInGroupWithAck:         kTrace,
	TypeCheckGroupExistenceWithAck:      kTrace,
	TypeCheckConnectionExistenceWithAck: kTrace,
	TypeCheckUserExistenceWithAck:       kTrace,
	TypeUserJoinGroupWithAck:            kTrace | kTTL,
	TypeUserLeaveGroupWithAck:           kTrace,
	TypeCloseConnectionWithAck:          kTrace,
	TypeCloseConnectionsWithAck:         kTrace,
	TypeCloseUserConnectionsWithAck:     kTrace,
	TypeCloseGroupConnectionsWithAck:    kTrace,
	TypeClientInvocation:                kTrace,
	TypeClientCompletion:                kTrace | kProtocol,
	TypeErrorCompletion:                 kTrace,
	TypeGroupMemberQuery:                kTrace,
}

// appendExt writes the members of e allowed for t.
func appendExt(b []byte, t MessageType, e *Ext) []byte {
	keys := extKeys[t]
	if keys == 0 {
		return append(b, 0x80)
	}
	hasTrace := keys&kTrace != 0 && e.HasTracingID
	hasTTL := keys&kTTL != 0 && e.HasTTL
	hasProto := keys&kProtocol != 0 && e.Protocol != ""
	hasFilter := keys&kFilter != 0 && e.Filter != ""
	hasData := keys&kData != 0 && e.DataMessageType != DataUnknown
	hasPartial := keys&kData != 0 && e.IsPartial
	n := b2i(hasTrace) + b2i(hasTTL) + b2i(hasProto) + b2i(hasFilter) + b2i(hasData) + b2i(hasPartial)
	b = append(b, 0x80|byte(n)) // n <= 6: always a fixmap
	if hasTrace {
		b = appendUint(append(b, extTracingID), e.TracingID)
	}
	if hasTTL {
		b = appendInt(append(b, extTTL), int64(e.TTL))
	}
	if hasProto {
		b = appendStr(append(b, extProtocol), e.Protocol)
	}
	if hasFilter {
		b = appendStr(append(b, extFilter), e.Filter)
	}
	if hasData {
		b = appendInt(append(b, extDataMessageType), int64(e.DataMessageType))
	}
	if hasPartial {
		b = append(b, extIsPartial, 0xc3)
	}
	return b
}

// ext reads an extension map, keeping the members allowed for t. Unknown keys and members t does
// not carry are skipped (MessagePack-CSharp's ReadInt32 key, any value).
func (d *decoder) ext(t MessageType) Ext {
	var e Ext
	n := d.mapLen()
	keys := extKeys[t]
	for i := 0; i < n && d.err == nil; i++ {
		k := d.int32()
		if d.err != nil {
			break
		}
		if k < extTracingID || k > extIsPartial || keys&(1<<k) == 0 {
			d.skip()
			continue
		}
		switch k {
		case extTracingID:
			e.TracingID, e.HasTracingID = d.uint64(), true
		case extTTL:
			e.TTL, e.HasTTL = d.int32(), true
		case extProtocol:
			e.Protocol = d.internStr()
		case extFilter:
			e.Filter = d.str()
		case extDataMessageType:
			e.DataMessageType = DataMessageType(d.int32())
		case extIsPartial:
			e.IsPartial = d.bool()
		}
	}
	return e
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
