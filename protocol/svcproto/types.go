package svcproto

import (
	"strconv"
	"strings"
)

// MessageType is the type id in element 0 of every service-protocol message.
type MessageType uint8

// Type ids (ServiceProtocolConstants.cs). 41+ are unknown to this package and skipped.
const (
	TypeHandshakeRequest                MessageType = 1
	TypeHandshakeResponse               MessageType = 2
	TypePing                            MessageType = 3
	TypeOpenConnection                  MessageType = 4
	TypeCloseConnection                 MessageType = 5
	TypeConnectionData                  MessageType = 6
	TypeMultiConnectionData             MessageType = 7
	TypeUserData                        MessageType = 8
	TypeMultiUserData                   MessageType = 9
	TypeBroadcastData                   MessageType = 10
	TypeJoinGroup                       MessageType = 11
	TypeLeaveGroup                      MessageType = 12
	TypeGroupBroadcastData              MessageType = 13
	TypeMultiGroupBroadcastData         MessageType = 14
	TypeServiceError                    MessageType = 15
	TypeUserJoinGroup                   MessageType = 16
	TypeUserLeaveGroup                  MessageType = 17
	TypeJoinGroupWithAck                MessageType = 18
	TypeLeaveGroupWithAck               MessageType = 19
	TypeAck                             MessageType = 20
	TypeCheckUserInGroupWithAck         MessageType = 21
	TypeServiceEvent                    MessageType = 22
	TypeCheckGroupExistenceWithAck      MessageType = 23
	TypeCheckConnectionExistenceWithAck MessageType = 24
	TypeCheckUserExistenceWithAck       MessageType = 25
	TypeUserJoinGroupWithAck            MessageType = 26
	TypeUserLeaveGroupWithAck           MessageType = 27
	TypeAccessKeyRequest                MessageType = 28
	TypeAccessKeyResponse               MessageType = 29
	TypeCloseConnectionWithAck          MessageType = 30
	TypeCloseConnectionsWithAck         MessageType = 31
	TypeCloseUserConnectionsWithAck     MessageType = 32
	TypeCloseGroupConnectionsWithAck    MessageType = 33
	TypeClientInvocation                MessageType = 34
	TypeClientCompletion                MessageType = 35
	TypeErrorCompletion                 MessageType = 36
	TypeServiceMapping                  MessageType = 37
	TypeConnectionReconnect             MessageType = 38
	TypeConnectionFlowControl           MessageType = 39
	TypeGroupMemberQuery                MessageType = 40

	maxKnownType = TypeGroupMemberQuery
)

var typeNames = [...]string{
	TypeHandshakeRequest:                "HandshakeRequest",
	TypeHandshakeResponse:               "HandshakeResponse",
	TypePing:                            "Ping",
	TypeOpenConnection:                  "OpenConnection",
	TypeCloseConnection:                 "CloseConnection",
	TypeConnectionData:                  "ConnectionData",
	TypeMultiConnectionData:             "MultiConnectionData",
	TypeUserData:                        "UserData",
	TypeMultiUserData:                   "MultiUserData",
	TypeBroadcastData:                   "BroadcastData",
	TypeJoinGroup:                       "JoinGroup",
	TypeLeaveGroup:                      "LeaveGroup",
	TypeGroupBroadcastData:              "GroupBroadcastData",
	TypeMultiGroupBroadcastData:         "MultiGroupBroadcastData",
	TypeServiceError:                    "ServiceError",
	TypeUserJoinGroup:                   "UserJoinGroup",
	TypeUserLeaveGroup:                  "UserLeaveGroup",
	TypeJoinGroupWithAck:                "JoinGroupWithAck",
	TypeLeaveGroupWithAck:               "LeaveGroupWithAck",
	TypeAck:                             "Ack",
	TypeCheckUserInGroupWithAck:         "CheckUserInGroupWithAck",
	TypeServiceEvent:                    "ServiceEvent",
	TypeCheckGroupExistenceWithAck:      "CheckGroupExistenceWithAck",
	TypeCheckConnectionExistenceWithAck: "CheckConnectionExistenceWithAck",
	TypeCheckUserExistenceWithAck:       "CheckUserExistenceWithAck",
	TypeUserJoinGroupWithAck:            "UserJoinGroupWithAck",
	TypeUserLeaveGroupWithAck:           "UserLeaveGroupWithAck",
	TypeAccessKeyRequest:                "AccessKeyRequest",
	TypeAccessKeyResponse:               "AccessKeyResponse",
	TypeCloseConnectionWithAck:          "CloseConnectionWithAck",
	TypeCloseConnectionsWithAck:         "CloseConnectionsWithAck",
	TypeCloseUserConnectionsWithAck:     "CloseUserConnectionsWithAck",
	TypeCloseGroupConnectionsWithAck:    "CloseGroupConnectionsWithAck",
	TypeClientInvocation:                "ClientInvocation",
	TypeClientCompletion:                "ClientCompletion",
	TypeErrorCompletion:                 "ErrorCompletion",
	TypeServiceMapping:                  "ServiceMapping",
	TypeConnectionReconnect:             "ConnectionReconnect",
	TypeConnectionFlowControl:           "ConnectionFlowControl",
	TypeGroupMemberQuery:                "GroupMemberQuery",
}

// String returns the message name, e.g. "ConnectionData", or "MessageType(41)" for unknown ids.
func (t MessageType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one decoded service-protocol message. Concrete types are the value structs below;
// Append also accepts pointers to them.
type Message interface{ Type() MessageType }

// DataMessageType classifies a ConnectionData frame (ext key 5).
type DataMessageType int32

// DataMessageType values (enums.cs). DataUnknown is never written.
const (
	DataUnknown    DataMessageType = 0
	DataHandshake  DataMessageType = 1
	DataInvocation DataMessageType = 2
	DataOther      DataMessageType = 3
	DataClose      DataMessageType = 4
)

// ConnectionType is the kind of server connection announced in HandshakeRequest.
type ConnectionType int

// ConnectionType values.
const (
	ConnDefault  ConnectionType = 0 // carries clients, must be accepted
	ConnOnDemand ConnectionType = 1 // carries clients, may be rejected
	ConnWeak     ConnectionType = 2 // never carries clients
)

// AckStatus is the status of an Ack. Other values occur on the wire (the SDK tests use 0, 100, 101)
// and are preserved.
type AckStatus int

// AckStatus values (AckStatus.cs).
const (
	AckOK                  AckStatus = 1
	AckNotFound            AckStatus = 2
	AckTimeout             AckStatus = 3
	AckInternalServerError AckStatus = 4
)

// FlowControlTarget says what a ConnectionFlowControl message addresses.
type FlowControlTarget int32

// FlowControlTarget values; anything else is rejected by the SDK reader and by this package.
const (
	FlowClient FlowControlTarget = 1
	FlowServer FlowControlTarget = 2
)

// FlowControlOp is the ConnectionFlowControl operation.
type FlowControlOp int32

// FlowControlOp values; anything else is rejected by the SDK reader and by this package.
const (
	FlowPause    FlowControlOp = 1
	FlowPauseAck FlowControlOp = 2
	FlowResume   FlowControlOp = 3
	FlowOffline  FlowControlOp = 4
)

// Claim is one entry of OpenConnection's claims map. Claims are kept as an ordered list because
// duplicate types (several role claims) are meaningful.
type Claim struct{ Type, Value string }

// Header is one entry of a headers map (name → StringValues), in wire order.
type Header struct {
	Name   string
	Values []string
}

// Headers is an ordered headers map.
type Headers []Header

// Get returns the values of the first header whose name matches case-insensitively, or nil.
func (h Headers) Get(name string) []string {
	for i := range h {
		if strings.EqualFold(h[i].Name, name) {
			return h[i].Values
		}
	}
	return nil
}

// Payload is one entry of a payloads map: a complete framed hub message in the named hub protocol.
type Payload struct {
	Protocol string
	Data     []byte
}

// Payloads is an ordered payloads map (protocol name → bytes).
type Payloads []Payload

// Get returns the payload of the first entry whose protocol matches case-insensitively (as the SDK
// compares them). It does not allocate.
func (p Payloads) Get(protocol string) ([]byte, bool) {
	for i := range p {
		if strings.EqualFold(p[i].Protocol, protocol) {
			return p[i].Data, true
		}
	}
	return nil, false
}

// HandshakeRequest (1) is the first message the SDK sends on a server connection.
type HandshakeRequest struct {
	Version                int
	ConnectionType         ConnectionType
	Target                 string
	MigrationLevel         int
	Ext                    Ext
	AllowStatefulReconnect bool
	// Fields is the array length of the layout: 2, 4, 5, 6 or 7. Decode sets the longest layout the
	// array covers (a 3-element array reads as 2, 8+ as 7); 0 on encode means 7.
	Fields int
}

// HandshakeResponse (2) answers HandshakeRequest; ErrorMessage "" means success.
type HandshakeResponse struct {
	ErrorMessage string
	Ext          Ext
	ConnectionID string // nil on the wire when ""
}

// Ping (3) is a keep-alive carrying a flat key/value list.
type Ping struct{ Values []string }

// Get returns the value of the first key equal to key, scanning pairs at i = 0, 2, 4… while
// i < len-1, like RuntimeServicePingMessage.TryGetValue.
func (p Ping) Get(key string) (string, bool) {
	for i := 0; i < len(p.Values)-1; i += 2 {
		if p.Values[i] == key {
			return p.Values[i+1], true
		}
	}
	return "", false
}

// OpenConnection (4) announces a client connection to the app server.
type OpenConnection struct {
	ConnectionID string
	Claims       []Claim
	Headers      Headers
	QueryString  string
	Ext          Ext
}

// CloseConnection (5) ends a client connection (either direction).
type CloseConnection struct {
	ConnectionID string
	ErrorMessage string
	Headers      Headers
	Ext          Ext
}

// ConnectionData (6) carries raw client bytes (either direction).
type ConnectionData struct {
	ConnectionID string
	Payload      []byte
	Ext          Ext
}

// MultiConnectionData (7) sends payloads to a list of connections.
type MultiConnectionData struct {
	ConnectionIDs []string
	Payloads      Payloads
	Ext           Ext
}

// UserData (8) sends payloads to all connections of a user.
type UserData struct {
	UserID   string
	Payloads Payloads
	Ext      Ext
}

// MultiUserData (9) sends payloads to all connections of several users.
type MultiUserData struct {
	UserIDs  []string
	Payloads Payloads
	Ext      Ext
}

// BroadcastData (10) sends payloads to every connection of the hub except the excluded ones.
type BroadcastData struct {
	ExcludedConnections []string
	Payloads            Payloads
	Ext                 Ext
}

// JoinGroup (11) is the legacy, unacknowledged group join.
type JoinGroup struct {
	ConnectionID string
	Group        string
	Ext          Ext
}

// LeaveGroup (12) is the legacy, unacknowledged group leave. Group "" is nil on the wire (all groups).
type LeaveGroup struct {
	ConnectionID string
	Group        string
	Ext          Ext
}

// GroupBroadcastData (13) sends payloads to a group.
type GroupBroadcastData struct {
	Group               string
	ExcludedConnections []string
	Payloads            Payloads
	Ext                 Ext
	ExcludedUsers       []string
	CallerUserID        string // nil on the wire when ""
}

// MultiGroupBroadcastData (14) sends payloads to several groups.
type MultiGroupBroadcastData struct {
	Groups   []string
	Payloads Payloads
	Ext      Ext
}

// ServiceError (15) tells the SDK to stop writing on this socket.
type ServiceError struct{ ErrorMessage string }

// UserJoinGroup (16) adds a user to a group (legacy, no ack). Ext.TTL is the membership lifetime.
type UserJoinGroup struct {
	UserID string
	Group  string
	Ext    Ext
}

// UserLeaveGroup (17) removes a user from a group (legacy). Group "" is nil on the wire (all groups).
type UserLeaveGroup struct {
	UserID string
	Group  string
	Ext    Ext
}

// JoinGroupWithAck (18) adds a connection to a group; answered with Ack.
type JoinGroupWithAck struct {
	ConnectionID string
	Group        string
	AckID        int
	Ext          Ext
}

// LeaveGroupWithAck (19) removes a connection from a group (Group "" = nil = all groups); answered with Ack.
type LeaveGroupWithAck struct {
	ConnectionID string
	Group        string
	AckID        int
	Ext          Ext
}

// Ack (20) answers an ack-able message. A nil Payload is written as the 5-element layout, a non-nil
// one (even empty) as the 6-element layout of 2025 SDKs.
type Ack struct {
	AckID   int
	Status  AckStatus
	Message string
	Ext     Ext
	Payload []byte
}

// CheckUserInGroupWithAck (21) asks whether a user is in a group.
type CheckUserInGroupWithAck struct {
	UserID string
	Group  string
	AckID  int
	Ext    Ext
}

// ServiceEvent (22) is an informational event the SDK logs.
type ServiceEvent struct {
	ObjectType int
	ID         string
	Kind       int
	Message    string
	Ext        Ext
}

// CheckGroupExistenceWithAck (23) asks whether a group has members.
type CheckGroupExistenceWithAck struct {
	Group string
	AckID int
	Ext   Ext
}

// CheckConnectionExistenceWithAck (24) asks whether a connection exists.
type CheckConnectionExistenceWithAck struct {
	ConnectionID string
	AckID        int
	Ext          Ext
}

// CheckUserExistenceWithAck (25) asks whether a user has connections.
type CheckUserExistenceWithAck struct {
	UserID string
	AckID  int
	Ext    Ext
}

// UserJoinGroupWithAck (26) adds a user to a group; Ext.TTL is the membership lifetime.
type UserJoinGroupWithAck struct {
	UserID string
	Group  string
	AckID  int
	Ext    Ext
}

// UserLeaveGroupWithAck (27) removes a user from a group (Group "" = nil = all groups).
type UserLeaveGroupWithAck struct {
	UserID string
	Group  string
	AckID  int
	Ext    Ext
}

// AccessKeyRequest (28) asks for a signing key (Entra auth).
type AccessKeyRequest struct {
	Token string
	KeyID string // nil on the wire when ""
	Ext   Ext
}

// AccessKeyResponse (29) answers AccessKeyRequest. Empty strings are nil on the wire.
type AccessKeyResponse struct {
	KeyID        string
	AccessKey    string
	ErrorType    string
	ErrorMessage string
	Ext          Ext
}

// CloseConnectionWithAck (30, obsolete) closes one connection. Reason "" is nil on the wire.
type CloseConnectionWithAck struct {
	ConnectionID string
	Reason       string
	AckID        int
	Ext          Ext
}

// CloseConnectionsWithAck (31, obsolete) closes all connections except the excluded ones.
type CloseConnectionsWithAck struct {
	Reason              string
	AckID               int
	ExcludedConnections []string
	Ext                 Ext
}

// CloseUserConnectionsWithAck (32) closes a user's connections.
type CloseUserConnectionsWithAck struct {
	UserID              string
	Reason              string
	AckID               int
	ExcludedConnections []string
	Ext                 Ext
}

// CloseGroupConnectionsWithAck (33) closes a group's connections.
type CloseGroupConnectionsWithAck struct {
	Group               string
	Reason              string
	AckID               int
	ExcludedConnections []string
	Ext                 Ext
}

// ClientInvocation (34) starts a client-result invocation.
type ClientInvocation struct {
	InvocationID   string
	ConnectionID   string
	CallerServerID string
	Payloads       Payloads
	Ext            Ext
}

// ClientCompletion (35) carries a client's completion of an invocation.
type ClientCompletion struct {
	InvocationID   string
	ConnectionID   string
	CallerServerID string
	Protocol       string
	Payload        []byte
	Ext            Ext
}

// ErrorCompletion (36) fails an invocation.
type ErrorCompletion struct {
	InvocationID   string
	ConnectionID   string
	CallerServerID string
	Error          string
	Ext            Ext
}

// ServiceMapping (37) tells the caller server which service instance holds an invocation.
type ServiceMapping struct {
	InvocationID string
	ConnectionID string
	InstanceID   string
	Ext          Ext
}

// ConnectionReconnect (38) makes the SDK drop a client's partial-message buffer.
type ConnectionReconnect struct {
	ConnectionID string
	Ext          Ext
}

// ConnectionFlowControl (39) pauses, resumes or offlines a client or server connection.
// Target and Op are written as fixed int32 (d2) like the SDK does.
type ConnectionFlowControl struct {
	ConnectionID string
	Target       FlowControlTarget
	Op           FlowControlOp
	Ext          Ext
}

// GroupMemberQuery (40, 2025 SDKs) pages through a group's members. Ext is element 1 on the wire.
type GroupMemberQuery struct {
	Ext               Ext
	Group             string
	AckID             int
	Max               int
	ContinuationToken string // nil on the wire when ""
}

// Type implementations (value receivers so both T and *T are Messages).

func (HandshakeRequest) Type() MessageType                { return TypeHandshakeRequest }
func (HandshakeResponse) Type() MessageType               { return TypeHandshakeResponse }
func (Ping) Type() MessageType                            { return TypePing }
func (OpenConnection) Type() MessageType                  { return TypeOpenConnection }
func (CloseConnection) Type() MessageType                 { return TypeCloseConnection }
func (ConnectionData) Type() MessageType                  { return TypeConnectionData }
func (MultiConnectionData) Type() MessageType             { return TypeMultiConnectionData }
func (UserData) Type() MessageType                        { return TypeUserData }
func (MultiUserData) Type() MessageType                   { return TypeMultiUserData }
func (BroadcastData) Type() MessageType                   { return TypeBroadcastData }
func (JoinGroup) Type() MessageType                       { return TypeJoinGroup }
func (LeaveGroup) Type() MessageType                      { return TypeLeaveGroup }
func (GroupBroadcastData) Type() MessageType              { return TypeGroupBroadcastData }
func (MultiGroupBroadcastData) Type() MessageType         { return TypeMultiGroupBroadcastData }
func (ServiceError) Type() MessageType                    { return TypeServiceError }
func (UserJoinGroup) Type() MessageType                   { return TypeUserJoinGroup }
func (UserLeaveGroup) Type() MessageType                  { return TypeUserLeaveGroup }
func (JoinGroupWithAck) Type() MessageType                { return TypeJoinGroupWithAck }
func (LeaveGroupWithAck) Type() MessageType               { return TypeLeaveGroupWithAck }
func (Ack) Type() MessageType                             { return TypeAck }
func (CheckUserInGroupWithAck) Type() MessageType         { return TypeCheckUserInGroupWithAck }
func (ServiceEvent) Type() MessageType                    { return TypeServiceEvent }
func (CheckGroupExistenceWithAck) Type() MessageType      { return TypeCheckGroupExistenceWithAck }
func (CheckConnectionExistenceWithAck) Type() MessageType { return TypeCheckConnectionExistenceWithAck }
func (CheckUserExistenceWithAck) Type() MessageType       { return TypeCheckUserExistenceWithAck }
func (UserJoinGroupWithAck) Type() MessageType            { return TypeUserJoinGroupWithAck }
func (UserLeaveGroupWithAck) Type() MessageType           { return TypeUserLeaveGroupWithAck }
func (AccessKeyRequest) Type() MessageType                { return TypeAccessKeyRequest }
func (AccessKeyResponse) Type() MessageType               { return TypeAccessKeyResponse }
func (CloseConnectionWithAck) Type() MessageType          { return TypeCloseConnectionWithAck }
func (CloseConnectionsWithAck) Type() MessageType         { return TypeCloseConnectionsWithAck }
func (CloseUserConnectionsWithAck) Type() MessageType     { return TypeCloseUserConnectionsWithAck }
func (CloseGroupConnectionsWithAck) Type() MessageType    { return TypeCloseGroupConnectionsWithAck }
func (ClientInvocation) Type() MessageType                { return TypeClientInvocation }
func (ClientCompletion) Type() MessageType                { return TypeClientCompletion }
func (ErrorCompletion) Type() MessageType                 { return TypeErrorCompletion }
func (ServiceMapping) Type() MessageType                  { return TypeServiceMapping }
func (ConnectionReconnect) Type() MessageType             { return TypeConnectionReconnect }
func (ConnectionFlowControl) Type() MessageType           { return TypeConnectionFlowControl }
func (GroupMemberQuery) Type() MessageType                { return TypeGroupMemberQuery }
