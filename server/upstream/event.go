package upstream

import (
	"bytes"
	"encoding/json"
)

// Content types of upstream request bodies.
const (
	ContentTypeJSON        = "application/json"
	ContentTypeMessagePack = "application/x-msgpack"
)

// Claim is one claim of the connection's user, sent as "type: value" in X-ASRS-User-Claims.
type Claim struct{ Type, Value string }

// Event is one upstream event of a client connection.
type Event struct {
	Hub, Category, Event string // Category "connections" (Event connected|disconnected) or "messages" (Event = invocation target)
	ConnectionID, UserID string
	Claims               []Claim
	Query                string // the client's connect query string, including the leading '?'
	// Body is ConnectedBody(), DisconnectedBody(...) or, for messages, the client's Invocation
	// without framing; ContentType is ContentTypeJSON (the default) or ContentTypeMessagePack.
	Body        []byte
	ContentType string
	// InvocationID is set for messages whose client waits for a completion.
	InvocationID string
	// Protocol is the client's hub protocol ("json", "messagepack", "blazorpack"), used to encode
	// void and error completions. When unknown, ContentType decides.
	Protocol string
}

// Result is the outcome of a dispatched event.
type Result struct {
	// Completion is a framed hub message (in the event's protocol) to write to the client, or
	// nil when none is due (connection events, non-blocking invocations).
	Completion []byte
}

// ConnectedBody is the body of a connected event: {"type":10}, as the emulator sends it.
func ConnectedBody() []byte { return []byte(`{"type":10}`) }

// DisconnectedBody is the body of a disconnected event: {"Type":11} plus "Error" when errText is
// not empty (the emulator writes these two names in PascalCase; the Functions extension reads
// them case-insensitively).
func DisconnectedBody(errText string) []byte {
	if errText == "" {
		return []byte(`{"Type":11}`)
	}
	var b bytes.Buffer
	b.WriteString(`{"Type":11,"Error":`)
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // Newtonsoft writes <, > and & as they are
	_ = enc.Encode(errText)  // a string always encodes
	out := bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
	return append(out, '}')
}
