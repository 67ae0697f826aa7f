// Package svcproto encodes and decodes the Azure SignalR service protocol: the MessagePack
// messages exchanged between the .NET app-server SDK (Microsoft.Azure.SignalR) and the service
// over a server connection (../shared/specs/service-protocol.md §2). Framing (the VarInt length
// prefix) comes from package protocol.
//
// Each message type is a plain struct whose fields follow the wire order; Decode returns them as
// values, Append and AppendFrame accept values or pointers.
//
// Encoding is byte-identical to the SDK's writer for every current (TestData) vector:
// smallest integer forms (non-negative values as fixint/uint8/16/32/64) except the fixed int32 of
// ConnectionFlowControl, shortest str forms, bin8/16/32, empty lists as 90 and empty maps as 80,
// and nil for the SDK's nullable strings when empty (HandshakeResponse.ConnectionID,
// AccessKeyRequest.KeyID, all AccessKeyResponse strings, GroupBroadcastData.CallerUserID, the
// Close*WithAck reasons, GroupMemberQuery.ContinuationToken and the groups of the leave messages).
// Layouts written: the newest the SDK reads (HandshakeRequest per Fields, default 7 elements;
// HandshakeResponse 4; Ack 5, or 6 when it has a payload).
//
// Decoding is as tolerant as MessagePack-CSharp's reader: any integer encoding in range, any str
// form, nil strings read as "", older shorter layouts (detected by array length), extra trailing
// elements and unknown ext keys ignored, unknown type ids returned as (nil, nil).
//
// Ext members are written and read only for the message types the SDK gives them to (see Ext):
// the SDK's reader cannot skip a known key on a type that lacks it. Keys 5 and 6 (DataMessageType,
// IsPartial) must not reach SDKs older than 1.26; Ext.Legacy drops them.
//
// Goroutine safety: Decode, Append and AppendFrame are pure functions, safe for concurrent use;
// decoded []byte fields alias the decoded body. A Reader is used by one goroutine at a time.
// Nothing here blocks.
package svcproto
