package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// REST message bodies (§6.3): a JSON PayloadMessage {"target","arguments"} converted once per
// protocol, or (application/octet-stream) a MessagePack map protocol -> fully framed messages
// that are delivered verbatim.

var (
	errPayloadMissing = errors.New("server: REST payload missing")
	errPayloadInvalid = errors.New("server: invalid REST payload")
)

// payloadMessage is a parsed PayloadMessage. Arguments are valid, compact JSON values.
type payloadMessage struct {
	Target    string
	Arguments []json.RawMessage
}

// parsePayloadJSON parses a PayloadMessage. Member names are matched case-insensitively (the
// Management SDK writes "Target"/"Arguments"); arguments may be absent or null.
func parsePayloadJSON(b []byte) (payloadMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 || bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return payloadMessage{}, errPayloadMissing
	}
	var raw struct {
		Target    *string           `json:"target"`
		Arguments []json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return payloadMessage{}, fmt.Errorf("%w: the body is not a JSON PayloadMessage {\"target\",\"arguments\"}: %v", errPayloadInvalid, err)
	}
	switch {
	case raw.Target == nil:
		//lint:ignore ST1005 the official ASP.NET validation text
		return payloadMessage{}, fmt.Errorf("%w: The Target field is required.", errPayloadInvalid)
	case *raw.Target == "":
		//lint:ignore ST1005 the official ASP.NET validation text
		return payloadMessage{}, fmt.Errorf("%w: The field Target must be a string with a minimum length of '1'.", errPayloadInvalid)
	}
	args := make([]json.RawMessage, len(raw.Arguments))
	var buf bytes.Buffer
	for i, a := range raw.Arguments {
		buf.Reset()
		if err := json.Compact(&buf, a); err != nil {
			return payloadMessage{}, fmt.Errorf("%w: argument %d: %v", errPayloadInvalid, i, err)
		}
		args[i] = bytes.Clone(buf.Bytes())
	}
	return payloadMessage{Target: *raw.Target, Arguments: args}, nil
}

// invocationPayloads encodes one Invocation (no invocation id) for JSON and MessagePack clients,
// once per request; every recipient's outbox then shares these slices.
func invocationPayloads(p payloadMessage) (svcproto.Payloads, error) {
	jargs := make([]hubproto.Raw, len(p.Arguments))
	margs := make([]hubproto.Raw, len(p.Arguments))
	for i, a := range p.Arguments {
		jargs[i] = hubproto.Raw(a)
		m, err := hubproto.JSONToMessagePack(hubproto.Raw(a))
		if err != nil {
			return nil, fmt.Errorf("%w: argument %d: %v", errPayloadInvalid, i, err)
		}
		margs[i] = m
	}
	j, err := hubproto.JSON().Append(nil, &hubproto.Invocation{Target: p.Target, Arguments: jargs})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPayloadInvalid, err)
	}
	m, err := hubproto.MessagePack().Append(nil, &hubproto.Invocation{Target: p.Target, Arguments: margs})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPayloadInvalid, err)
	}
	return protocolPayloads(j, m), nil
}

// protocolPayloads maps the JSON frame and the MessagePack frame (also Blazor's "blazorpack",
// which is MessagePack on the wire) to the protocols clients negotiate.
func protocolPayloads(jsonFrame, msgpackFrame []byte) svcproto.Payloads {
	return svcproto.Payloads{
		{Protocol: hubproto.ProtocolJSON, Data: jsonFrame},
		{Protocol: hubproto.ProtocolMessagePack, Data: msgpackFrame},
		{Protocol: hubproto.ProtocolBlazorPack, Data: msgpackFrame},
	}
}

// parsePayloadMap parses the octet-stream body the Management SDK sends when non-default hub
// protocols are configured: a MessagePack map whose keys are protocol names and whose values are
// bin blobs of whole framed hub messages. Blobs of known protocols must be whole frames. A
// "messagepack" blob also serves "blazorpack" clients unless the map has its own.
func parsePayloadMap(b []byte) (svcproto.Payloads, error) {
	if len(b) == 0 {
		return nil, errPayloadMissing
	}
	c := mpConv{src: b}
	n, err := c.mapLen()
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("%w: the body must be a non-empty MessagePack map of protocol name to framed messages", errPayloadInvalid)
	}
	var out svcproto.Payloads
	for i := 0; i < n; i++ {
		name, err := c.strOrBin(false)
		if err != nil || len(name) == 0 {
			return nil, fmt.Errorf("%w: entry %d: the key must be a protocol name", errPayloadInvalid, i)
		}
		data, err := c.strOrBin(true)
		if err != nil || len(data) == 0 {
			return nil, fmt.Errorf("%w: entry %q: the value must be a non-empty bin of framed messages", errPayloadInvalid, name)
		}
		if _, dup := out.Get(string(name)); dup {
			return nil, fmt.Errorf("%w: protocol %q appears twice", errPayloadInvalid, name)
		}
		if codec, ok := hubproto.CodecFor(string(name)); ok && !wholeFrames(codec, data) {
			return nil, fmt.Errorf("%w: entry %q is not a sequence of whole %s frames", errPayloadInvalid, name, name)
		}
		// The blobs alias the request body, which nothing else holds on to.
		out = append(out, svcproto.Payload{Protocol: strings.ToLower(string(name)), Data: data})
	}
	if c.pos != len(b) {
		return nil, fmt.Errorf("%w: trailing bytes after the MessagePack map", errPayloadInvalid)
	}
	if m, ok := out.Get(hubproto.ProtocolMessagePack); ok {
		if _, ok := out.Get(hubproto.ProtocolBlazorPack); !ok {
			out = append(out, svcproto.Payload{Protocol: hubproto.ProtocolBlazorPack, Data: m})
		}
	}
	return out, nil
}

// wholeFrames reports whether data is one or more complete frames of codec.
func wholeFrames(codec hubproto.Codec, data []byte) bool {
	for len(data) > 0 {
		_, _, rest, err := codec.Cut(data, len(data))
		if err != nil || len(rest) >= len(data) {
			return false
		}
		data = rest
	}
	return true
}

// readPayloads reads a send body (JSON or octet-stream) and returns the per-protocol frames,
// answering 400/413/415 itself.
func (q *restReq) readPayloads() (svcproto.Payloads, bool) {
	mt := q.mediaType()
	if mt != "" && mt != "application/json" && mt != "text/json" && mt != "application/octet-stream" {
		q.fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type '"+mt+"' is not supported: use application/json or application/octet-stream.", "")
		return nil, false
	}
	b, ok := q.readBody()
	if !ok {
		return nil, false
	}
	if mt == "application/octet-stream" {
		p, err := parsePayloadMap(b)
		if err != nil {
			q.invalid(payloadErrorText(err), "payload")
			return nil, false
		}
		return p, true
	}
	msg, err := parsePayloadJSON(b)
	if err != nil {
		q.invalid(payloadErrorText(err), "payload")
		return nil, false
	}
	p, err := invocationPayloads(msg)
	if err != nil {
		q.invalid(payloadErrorText(err), "payload")
		return nil, false
	}
	return p, true
}

// readPayloadMessage reads a JSON PayloadMessage body (for :invoke, which needs the arguments
// themselves), answering errors itself.
func (q *restReq) readPayloadMessage() (payloadMessage, bool) {
	mt := q.mediaType()
	if mt != "" && mt != "application/json" && mt != "text/json" {
		q.fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type '"+mt+"' is not supported here: use application/json.", "")
		return payloadMessage{}, false
	}
	b, ok := q.readBody()
	if !ok {
		return payloadMessage{}, false
	}
	msg, err := parsePayloadJSON(b)
	if err != nil {
		q.invalid(payloadErrorText(err), "payload")
		return payloadMessage{}, false
	}
	return msg, true
}

// payloadErrorText is the client-facing text of a payload error, without the package prefix.
func payloadErrorText(err error) string {
	if errors.Is(err, errPayloadMissing) {
		return textMessageRequired
	}
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), errPayloadInvalid.Error()), ": ")
}
