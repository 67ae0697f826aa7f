package svcproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// vectorsPath is the repository's copy of the shared test-vector file (spec §10), so a checkout
// alone runs every test; sharedVectorsPath is the original beside the repository, when present
// (TestVectorsCopyCurrent keeps the copy identical to it).
const (
	vectorsPath       = "testdata/service-protocol-vectors.json"
	sharedVectorsPath = "../../../shared/testdata/service-protocol-vectors.json"
)

func TestVectorsCopyCurrent(t *testing.T) {
	shared, err := os.ReadFile(sharedVectorsPath)
	if err != nil {
		t.Skipf("no shared vectors beside the repository (%v): the copy in testdata is used as is", err)
	}
	copied, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, copied) {
		t.Fatalf("%s differs from %s: copy the shared file again", vectorsPath, sharedVectorsPath)
	}
}

type vector struct {
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	TypeID      int             `json:"type_id"`
	Set         string          `json:"set"`
	ArrayLength int             `json:"array_length"`
	Fields      json.RawMessage `json:"fields"`
	BytesB64    string          `json:"bytes_base64"`
	FramedB64   string          `json:"framed_base64"`

	body, framed []byte
}

func (v *vector) current() bool { return strings.HasPrefix(v.Set, "TestData") }

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		tb.Fatalf("read vectors: %v", err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		tb.Fatalf("parse vectors: %v", err)
	}
	for i := range vs {
		v := &vs[i]
		if v.body, err = base64.StdEncoding.DecodeString(v.BytesB64); err != nil {
			tb.Fatalf("%s: bytes_base64: %v", v.Name, err)
		}
		if v.framed, err = base64.StdEncoding.DecodeString(v.FramedB64); err != nil {
			tb.Fatalf("%s: framed_base64: %v", v.Name, err)
		}
	}
	return vs
}

func TestVectorFile(t *testing.T) {
	t.Parallel()
	vs := loadVectors(t)
	if len(vs) != 124 {
		t.Fatalf("got %d vectors, want 124", len(vs))
	}
	current := 0
	for _, v := range vs {
		if v.current() {
			current++
		}
	}
	if current != 81 {
		t.Errorf("got %d TestData vectors, want 81", current)
	}
}

// TestVectorsDecode decodes every vector completely and compares each struct field with the
// vector's independently decoded `fields`.
func TestVectorsDecode(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			m, used, err := decode(v.body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if m == nil {
				t.Fatal("decode returned no message")
			}
			if used != len(v.body) {
				t.Errorf("decode used %d of %d bytes", used, len(v.body))
			}
			if int(m.Type()) != v.TypeID || m.Type().String() != v.Type {
				t.Errorf("type %v (%d), want %s (%d)", m.Type(), m.Type(), v.Type, v.TypeID)
			}
			compareMessages(t, m, expectedMessage(t, &v))
		})
	}
}

// TestVectorsEncode encodes every current vector, from its documented fields and from the decoded
// message, byte for byte.
func TestVectorsEncode(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		if !v.current() {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			want := expectedMessage(t, &v)
			decoded, err := Decode(v.body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			for _, src := range []struct {
				name string
				m    Message
			}{{"fields", want}, {"decoded", decoded}, {"pointer", pointerTo(want)}} {
				got, err := Append(nil, src.m)
				if err != nil {
					t.Fatalf("%s: Append: %v", src.name, err)
				}
				if !bytes.Equal(got, v.body) {
					t.Errorf("%s: Append\n got % x\nwant % x", src.name, got, v.body)
				}
				prefix := []byte("prefix")
				got, err = AppendFrame(prefix, src.m)
				if err != nil {
					t.Fatalf("%s: AppendFrame: %v", src.name, err)
				}
				if !bytes.Equal(got[:len(prefix)], []byte("prefix")) || !bytes.Equal(got[len(prefix):], v.framed) {
					t.Errorf("%s: AppendFrame\n got % x\nwant prefix + % x", src.name, got, v.framed)
				}
			}
		})
	}
}

// TestVectorsRoundTrip re-encodes every vector (compat ones in the current layout) and decodes
// the result back to the same message.
func TestVectorsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		m, err := Decode(v.body)
		if err != nil {
			t.Fatalf("%s: decode: %v", v.Name, err)
		}
		b, err := Append(nil, m)
		if err != nil {
			t.Fatalf("%s: Append: %v", v.Name, err)
		}
		m2, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode re-encoded % x: %v", v.Name, b, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", v.Name, m2, m)
		}
	}
}

// pointerTo returns a pointer to a copy of the message struct in m.
func pointerTo(m Message) Message {
	p := reflect.New(reflect.TypeOf(m))
	p.Elem().Set(reflect.ValueOf(m))
	return p.Interface().(Message)
}

// compareMessages compares got and want field by field. Nil and empty slices are equal, except
// Ack.Payload where nil selects the 5-element layout.
func compareMessages(t *testing.T, got, want Message) {
	t.Helper()
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	if gv.Type() != wv.Type() {
		t.Fatalf("got %T, want %T", got, want)
	}
	for i := 0; i < gv.NumField(); i++ {
		name := gv.Type().Field(i).Name
		g, w := gv.Field(i), wv.Field(i)
		if _, isAck := got.(Ack); isAck && name == "Payload" && g.IsNil() != w.IsNil() {
			t.Errorf("%T.Payload nil = %v, want %v", got, g.IsNil(), w.IsNil())
		}
		if !looseEqual(g, w) {
			t.Errorf("%T.%s = %#v, want %#v", got, name, g.Interface(), w.Interface())
		}
	}
}

func looseEqual(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !looseEqual(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !looseEqual(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return a.Interface() == b.Interface()
	}
}

// expectedMessage maps a vector's documented fields onto the message struct, type by type.
// Every key in `fields` must be used.
func expectedMessage(t *testing.T, v *vector) Message {
	t.Helper()
	f := parseFields(t, v.Fields)
	var m Message
	switch v.Type {
	case "HandshakeRequest":
		m = HandshakeRequest{Version: f.int("version"), ConnectionType: ConnectionType(f.int("connectionType")),
			Target: f.str("target"), MigrationLevel: f.int("migrationLevel"), Ext: f.ext(),
			AllowStatefulReconnect: f.bool("allowStatefulReconnects"), Fields: v.ArrayLength}
	case "HandshakeResponse":
		m = HandshakeResponse{ErrorMessage: f.str("errorMessage"), Ext: f.ext(), ConnectionID: f.str("connectionId")}
	case "Ping":
		m = Ping{Values: f.strs("messages")}
	case "OpenConnection":
		m = OpenConnection{ConnectionID: f.str("connectionId"), Claims: f.claims("claims"), Headers: f.headers("headers"),
			QueryString: f.str("queryString"), Ext: f.ext()}
	case "CloseConnection":
		m = CloseConnection{ConnectionID: f.str("connectionId"), ErrorMessage: f.str("errorMessage"),
			Headers: f.headers("headers"), Ext: f.ext()}
	case "ConnectionData":
		m = ConnectionData{ConnectionID: f.str("connectionId"), Payload: f.bytes("payload"), Ext: f.ext()}
	case "MultiConnectionData":
		m = MultiConnectionData{ConnectionIDs: f.strs("connectionList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "UserData":
		m = UserData{UserID: f.str("userId"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "MultiUserData":
		m = MultiUserData{UserIDs: f.strs("userList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "BroadcastData":
		m = BroadcastData{ExcludedConnections: f.strs("excludedList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "JoinGroup":
		m = JoinGroup{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), Ext: f.ext()}
	case "LeaveGroup":
		m = LeaveGroup{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), Ext: f.ext()}
	case "GroupBroadcastData":
		m = GroupBroadcastData{Group: f.str("groupName"), ExcludedConnections: f.strs("excludedList"),
			Payloads: f.payloads("payloads"), Ext: f.ext(), ExcludedUsers: f.strs("excludedUserList"),
			CallerUserID: f.str("callerUserId")}
	case "MultiGroupBroadcastData":
		m = MultiGroupBroadcastData{Groups: f.strs("groupList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "ServiceError":
		m = ServiceError{ErrorMessage: f.str("errorMessage")}
	case "UserJoinGroup":
		m = UserJoinGroup{UserID: f.str("userId"), Group: f.str("groupName"), Ext: f.ext()}
	case "UserLeaveGroup":
		m = UserLeaveGroup{UserID: f.str("userId"), Group: f.str("groupName"), Ext: f.ext()}
	case "JoinGroupWithAck":
		m = JoinGroupWithAck{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "LeaveGroupWithAck":
		m = LeaveGroupWithAck{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "Ack":
		m = Ack{AckID: f.int("ackId"), Status: AckStatus(f.int("status")), Message: f.str("message"), Ext: f.ext(),
			Payload: f.bytes("payload")}
	case "CheckUserInGroupWithAck":
		m = CheckUserInGroupWithAck{UserID: f.str("userId"), Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "ServiceEvent":
		m = ServiceEvent{ObjectType: f.int("objectType"), ID: f.str("id"), Kind: f.int("kind"), Message: f.str("message"), Ext: f.ext()}
	case "CheckGroupExistenceWithAck":
		m = CheckGroupExistenceWithAck{Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "CheckConnectionExistenceWithAck":
		m = CheckConnectionExistenceWithAck{ConnectionID: f.str("connectionId"), AckID: f.int("ackId"), Ext: f.ext()}
	case "CheckUserExistenceWithAck":
		m = CheckUserExistenceWithAck{UserID: f.str("userId"), AckID: f.int("ackId"), Ext: f.ext()}
	case "UserJoinGroupWithAck":
		m = UserJoinGroupWithAck{UserID: f.str("userId"), Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "UserLeaveGroupWithAck":
		m = UserLeaveGroupWithAck{UserID: f.str("userId"), Group: f.str("groupName"), AckID: f.int("ackId"), Ext: f.ext()}
	case "AccessKeyRequest":
		m = AccessKeyRequest{Token: f.str("token"), KeyID: f.str("kid"), Ext: f.ext()}
	case "AccessKeyResponse":
		m = AccessKeyResponse{KeyID: f.str("kid"), AccessKey: f.str("accessKey"), ErrorType: f.str("errorType"),
			ErrorMessage: f.str("errorMessage"), Ext: f.ext()}
	case "CloseConnectionWithAck":
		m = CloseConnectionWithAck{ConnectionID: f.str("connectionId"), Reason: f.str("reason"), AckID: f.int("ackId"), Ext: f.ext()}
	case "CloseConnectionsWithAck":
		m = CloseConnectionsWithAck{Reason: f.str("reason"), AckID: f.int("ackId"), ExcludedConnections: f.strs("excludedList"), Ext: f.ext()}
	case "CloseUserConnectionsWithAck":
		m = CloseUserConnectionsWithAck{UserID: f.str("userId"), Reason: f.str("reason"), AckID: f.int("ackId"),
			ExcludedConnections: f.strs("excludedList"), Ext: f.ext()}
	case "CloseGroupConnectionsWithAck":
		m = CloseGroupConnectionsWithAck{Group: f.str("groupName"), Reason: f.str("reason"), AckID: f.int("ackId"),
			ExcludedConnections: f.strs("excludedList"), Ext: f.ext()}
	case "ClientInvocation":
		m = ClientInvocation{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case "ClientCompletion":
		m = ClientCompletion{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Protocol: f.str("protocol"), Payload: f.bytes("payload"), Ext: f.ext()}
	case "ErrorCompletion":
		m = ErrorCompletion{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Error: f.str("error"), Ext: f.ext()}
	case "ServiceMapping":
		m = ServiceMapping{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			InstanceID: f.str("instanceId"), Ext: f.ext()}
	case "ConnectionReconnect":
		m = ConnectionReconnect{ConnectionID: f.str("connectionId"), Ext: f.ext()}
	case "ConnectionFlowControl":
		m = ConnectionFlowControl{ConnectionID: f.str("connectionId"), Target: FlowControlTarget(f.int("connectionType")),
			Op: FlowControlOp(f.int("operation")), Ext: f.ext()}
	case "GroupMemberQuery":
		m = GroupMemberQuery{Ext: f.ext(), Group: f.str("groupName"), AckID: f.int("ackId"), Max: f.int("max"),
			ContinuationToken: f.str("continuationToken")}
	default:
		t.Fatalf("no mapping for vector type %q", v.Type)
	}
	f.done()
	return m
}

// jsonFields is a JSON object kept in document order (payloads and headers are ordered maps).
type jsonFields struct {
	t    *testing.T
	kv   []jsonKV
	used map[string]bool
}

type jsonKV struct {
	key string
	val json.RawMessage
}

func parseFields(t *testing.T, raw json.RawMessage) *jsonFields {
	t.Helper()
	kv, err := orderedObject(raw)
	if err != nil {
		t.Fatalf("fields: %v", err)
	}
	return &jsonFields{t: t, kv: kv, used: map[string]bool{}}
}

func orderedObject(raw json.RawMessage) ([]jsonKV, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want object, got %v (%v)", tok, err)
	}
	var kv []jsonKV
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		kv = append(kv, jsonKV{tok.(string), val})
	}
	return kv, nil
}

// get unmarshals key into dst; a missing key or null leaves dst zero.
func (f *jsonFields) get(key string, dst any) bool {
	f.t.Helper()
	for _, e := range f.kv {
		if e.key == key {
			f.used[key] = true
			if string(e.val) == "null" {
				return false
			}
			if err := json.Unmarshal(e.val, dst); err != nil {
				f.t.Fatalf("field %s: %v", key, err)
			}
			return true
		}
	}
	return false
}

func (f *jsonFields) raw(key string) json.RawMessage {
	var r json.RawMessage
	f.get(key, &r)
	return r
}

func (f *jsonFields) str(key string) string {
	var s string
	f.get(key, &s)
	return s
}

func (f *jsonFields) int(key string) int {
	var n int
	f.get(key, &n)
	return n
}

func (f *jsonFields) bool(key string) bool {
	var b bool
	f.get(key, &b)
	return b
}

// bytes returns nil for a missing or null key, a non-nil slice otherwise.
func (f *jsonFields) bytes(key string) []byte {
	var s string
	if !f.get(key, &s) {
		return nil
	}
	return f.b64(s)
}

func (f *jsonFields) b64(s string) []byte {
	f.t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		f.t.Fatalf("base64 %q: %v", s, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func (f *jsonFields) strs(key string) []string {
	var ps []*string
	f.get(key, &ps)
	var out []string
	for _, p := range ps {
		if p == nil {
			out = append(out, "")
		} else {
			out = append(out, *p)
		}
	}
	return out
}

func (f *jsonFields) claims(key string) []Claim {
	var pairs [][2]string
	f.get(key, &pairs)
	var out []Claim
	for _, p := range pairs {
		out = append(out, Claim{Type: p[0], Value: p[1]})
	}
	return out
}

func (f *jsonFields) object(key string) []jsonKV {
	f.t.Helper()
	raw := f.raw(key)
	if raw == nil {
		return nil
	}
	kv, err := orderedObject(raw)
	if err != nil {
		f.t.Fatalf("field %s: %v", key, err)
	}
	return kv
}

func (f *jsonFields) payloads(key string) Payloads {
	var out Payloads
	for _, e := range f.object(key) {
		var s string
		if err := json.Unmarshal(e.val, &s); err != nil {
			f.t.Fatalf("payload %s: %v", e.key, err)
		}
		out = append(out, Payload{Protocol: e.key, Data: f.b64(s)})
	}
	return out
}

func (f *jsonFields) headers(key string) Headers {
	var out Headers
	for _, e := range f.object(key) {
		var vals []string
		if err := json.Unmarshal(e.val, &vals); err != nil {
			f.t.Fatalf("header %s: %v", e.key, err)
		}
		out = append(out, Header{Name: e.key, Values: vals})
	}
	return out
}

func (f *jsonFields) ext() Ext {
	f.t.Helper()
	var e Ext
	for _, kv := range f.object("extensions") {
		var err error
		switch kv.key {
		case "tracingId":
			e.HasTracingID = true
			err = json.Unmarshal(kv.val, &e.TracingID)
		case "ttl":
			e.HasTTL = true
			err = json.Unmarshal(kv.val, &e.TTL)
		case "protocol":
			err = json.Unmarshal(kv.val, &e.Protocol)
		case "filter":
			err = json.Unmarshal(kv.val, &e.Filter)
		case "dataMessageType":
			err = json.Unmarshal(kv.val, &e.DataMessageType)
		case "isPartial":
			err = json.Unmarshal(kv.val, &e.IsPartial)
		default:
			f.t.Fatalf("unknown extension %q", kv.key)
		}
		if err != nil {
			f.t.Fatalf("extension %s: %v", kv.key, err)
		}
	}
	return e
}

// done fails the test if the mapping ignored a documented field.
func (f *jsonFields) done() {
	f.t.Helper()
	for _, e := range f.kv {
		if !f.used[e.key] {
			f.t.Errorf("field %q not mapped", e.key)
		}
	}
}
