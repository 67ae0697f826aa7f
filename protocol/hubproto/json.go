package hubproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/signalrd/signalrd/protocol"
)

// jsonCodec is the JSON hub protocol: one JSON object per message, each followed by 0x1E.
type jsonCodec struct{}

// JSON returns the JSON hub protocol codec.
func JSON() Codec { return jsonCodec{} }

func (jsonCodec) Name() string            { return ProtocolJSON }
func (jsonCodec) Format() protocol.Format { return protocol.Text }

func (jsonCodec) Cut(b []byte, max int) (msg, frame, rest []byte, err error) {
	return protocol.CutText(b, max)
}

// Marshal encodes v with encoding/json.
func (jsonCodec) Marshal(v any) (Raw, error) {
	if r, ok := v.(Raw); ok {
		return r, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("hubproto: json marshal argument: %w", err)
	}
	return b, nil
}

// Unmarshal decodes r with encoding/json.
func (jsonCodec) Unmarshal(r Raw, v any) error {
	if err := json.Unmarshal(r, v); err != nil {
		return fmt.Errorf("hubproto: json unmarshal argument: %w", err)
	}
	return nil
}

// Append writes members in the order ASP.NET Core's JsonHubProtocol does (type, headers,
// invocationId, ...); readers accept any order.
func (jsonCodec) Append(dst []byte, msg Message) ([]byte, error) {
	var f flat
	if err := flatten(msg, &f); err != nil {
		return dst, err
	}
	n := len(dst)
	switch f.t {
	case TypePing:
		return append(dst, "{\"type\":6}\x1e"...), nil
	case TypeClose:
		dst = append(dst, `{"type":7`...)
		if f.err != "" {
			dst = append(dst, `,"error":`...)
			dst = appendJSONString(dst, f.err)
		}
		if f.allowReconnect {
			dst = append(dst, `,"allowReconnect":true`...)
		}
		return append(dst, '}', protocol.RecordSeparator), nil
	case TypeAck, TypeSequence:
		dst = append(dst, `{"type":`...)
		dst = append(dst, '0'+byte(f.t))
		dst = append(dst, `,"sequenceId":`...)
		dst = strconv.AppendInt(dst, f.seq, 10)
		return append(dst, '}', protocol.RecordSeparator), nil
	}

	dst = append(dst, `{"type":`...)
	dst = append(dst, '0'+byte(f.t)) // all known types are single digits
	if len(f.headers) > 0 {
		dst = append(dst, `,"headers":{`...)
		for i, k := range sortedKeys(f.headers) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSONString(dst, f.headers[k])
		}
		dst = append(dst, '}')
	}
	if f.id != "" {
		dst = append(dst, `,"invocationId":`...)
		dst = appendJSONString(dst, f.id)
	}
	var err error
	switch f.t {
	case TypeInvocation, TypeStreamInvocation:
		dst = append(dst, `,"target":`...)
		dst = appendJSONString(dst, f.target)
		dst = append(dst, `,"arguments":[`...)
		for i, a := range f.args {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSONRaw(dst, a); err != nil {
				return dst[:n], err
			}
		}
		dst = append(dst, ']')
		if len(f.streamIDs) > 0 {
			dst = append(dst, `,"streamIds":[`...)
			for i, id := range f.streamIDs {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, id)
			}
			dst = append(dst, ']')
		}
	case TypeStreamItem:
		dst = append(dst, `,"item":`...)
		dst, err = appendJSONRaw(dst, f.raw)
	case TypeCompletion:
		switch {
		case f.err != "":
			dst = append(dst, `,"error":`...)
			dst = appendJSONString(dst, f.err)
		case f.hasResult:
			dst = append(dst, `,"result":`...)
			dst, err = appendJSONRaw(dst, f.raw)
		}
	}
	if err != nil {
		return dst[:n], err
	}
	return append(dst, '}', protocol.RecordSeparator), nil
}

// appendJSONRaw writes an already encoded value verbatim. It is not validated (that would cost a
// full parse per send), but a 0x1E inside it would break the framing of every later message, so
// that one byte is rejected; valid JSON never contains it unescaped.
func appendJSONRaw(dst []byte, r Raw) ([]byte, error) {
	if len(r) == 0 {
		return append(dst, "null"...), nil
	}
	if bytes.IndexByte(r, protocol.RecordSeparator) >= 0 {
		return dst, fmt.Errorf("%w: encode json: raw value contains the record separator", ErrMalformed)
	}
	return append(dst, r...), nil
}

// jsonFields holds the value spans of the members Decode understands; e == 0 means absent (a
// value can never start at offset 0 because the object's brace is there).
type jsonFields struct {
	typ, invocationID, target, arguments, streamIDs, headers,
	item, result, err, allowReconnect, sequenceID span
}

type span struct{ s, e int }

func (s span) ok() bool { return s.e > 0 }

func (jsonCodec) Decode(msg []byte) (Message, error) {
	if !jsonValid(msg) {
		return nil, fmt.Errorf("%w: decode json: invalid JSON", ErrMalformed)
	}
	var f jsonFields
	if err := scanJSONFields(msg, &f); err != nil {
		return nil, err
	}
	t, err := jsonType(msg, f.typ)
	if err != nil {
		return nil, err
	}
	d := jsonDecoder{msg: msg}
	switch t {
	case TypeInvocation, TypeStreamInvocation:
		m := Invocation{Stream: t == TypeStreamInvocation}
		if m.Headers, err = d.headers(f.headers); err != nil {
			return nil, err
		}
		if m.InvocationID, err = d.str(f.invocationID, "invocationId", t == TypeStreamInvocation); err != nil {
			return nil, err
		}
		if m.Target, err = d.str(f.target, "target", true); err != nil {
			return nil, err
		}
		if m.Arguments, err = d.arguments(f.arguments); err != nil {
			return nil, err
		}
		if m.StreamIDs, err = d.streamIDs(f.streamIDs); err != nil {
			return nil, err
		}
		return m, nil
	case TypeStreamItem:
		m := StreamItem{}
		if m.Headers, err = d.headers(f.headers); err != nil {
			return nil, err
		}
		if m.InvocationID, err = d.str(f.invocationID, "invocationId", true); err != nil {
			return nil, err
		}
		if !f.item.ok() {
			return nil, errDecode("json", t, "missing item")
		}
		m.Item = d.raw(f.item)
		return m, nil
	case TypeCompletion:
		m := Completion{}
		if m.Headers, err = d.headers(f.headers); err != nil {
			return nil, err
		}
		if m.InvocationID, err = d.str(f.invocationID, "invocationId", true); err != nil {
			return nil, err
		}
		if m.Error, err = d.str(f.err, "error", false); err != nil {
			return nil, err
		}
		if f.result.ok() {
			// ASP.NET Core rejects both; a null error does not count.
			if f.err.ok() && !d.isNull(f.err) {
				return nil, errDecode("json", t, "both result and error")
			}
			m.HasResult, m.Result = true, d.raw(f.result)
		}
		return m, nil
	case TypeCancelInvocation:
		m := CancelInvocation{}
		if m.Headers, err = d.headers(f.headers); err != nil {
			return nil, err
		}
		if m.InvocationID, err = d.str(f.invocationID, "invocationId", true); err != nil {
			return nil, err
		}
		return m, nil
	case TypePing:
		return Ping{}, nil
	case TypeClose:
		m := Close{}
		if m.Error, err = d.str(f.err, "error", false); err != nil {
			return nil, err
		}
		if f.allowReconnect.ok() {
			switch string(d.tok(f.allowReconnect)) {
			case "true":
				m.AllowReconnect = true
			case "false", "null":
			default:
				return nil, errDecode("json", t, "allowReconnect is not a boolean")
			}
		}
		return m, nil
	default: // TypeAck, TypeSequence
		if !f.sequenceID.ok() {
			return nil, errDecode("json", t, "missing sequenceId")
		}
		id, ok := parseJSONInt(d.tok(f.sequenceID))
		if !ok {
			return nil, errDecode("json", t, "sequenceId is not an integer")
		}
		if t == TypeAck {
			return Ack{SequenceID: id}, nil
		}
		return Sequence{SequenceID: id}, nil
	}
}

// scanJSONFields records the spans of known members. Later duplicates win, as with JSON.parse
// in the JS client and ASP.NET Core's reader.
func scanJSONFields(msg []byte, f *jsonFields) error {
	it, ok := newObjIter(msg)
	if !ok {
		return fmt.Errorf("%w: decode json: not an object", ErrMalformed)
	}
	for {
		m, done, ok := it.next()
		if !ok {
			return fmt.Errorf("%w: decode json: bad object", ErrMalformed)
		}
		if done {
			return nil
		}
		key := m.key
		if m.escaped {
			key = appendUnescaped(nil, key)
		}
		sp := span{m.vs, m.ve}
		switch string(key) {
		case "type":
			f.typ = sp
		case "invocationId":
			f.invocationID = sp
		case "target":
			f.target = sp
		case "arguments":
			f.arguments = sp
		case "streamIds":
			f.streamIDs = sp
		case "headers":
			f.headers = sp
		case "item":
			f.item = sp
		case "result":
			f.result = sp
		case "error":
			f.err = sp
		case "allowReconnect":
			f.allowReconnect = sp
		case "sequenceId":
			f.sequenceID = sp
		}
	}
}

// jsonType interprets the "type" member: missing or non-integral is malformed, an integer outside
// the known types is ErrUnknownType.
func jsonType(msg []byte, sp span) (MessageType, error) {
	if !sp.ok() {
		return 0, fmt.Errorf("%w: json: missing type", ErrMalformed)
	}
	n, ok := parseJSONInt(msg[sp.s:sp.e])
	if !ok {
		return 0, fmt.Errorf("%w: json: type is not an integer", ErrMalformed)
	}
	if n < int64(TypeInvocation) || n > int64(TypeSequence) {
		return 0, ErrUnknownType // bare sentinel: no allocation per skipped message
	}
	return MessageType(n), nil
}

// PeekType scans the top-level members for "type" (the last one wins, as in Decode) without
// validating or decoding anything else.
func (jsonCodec) PeekType(msg []byte) (MessageType, error) {
	it, ok := newObjIter(msg)
	if !ok {
		return 0, fmt.Errorf("%w: peek json: not an object", ErrMalformed)
	}
	var typ span
	for {
		m, done, ok := it.next()
		if !ok {
			return 0, fmt.Errorf("%w: peek json: bad object", ErrMalformed)
		}
		if done {
			break
		}
		if m.is("type") {
			typ = span{m.vs, m.ve}
		}
	}
	return jsonType(msg, typ)
}

// jsonDecoder turns value spans of one validated message into Go values. Raw values share one
// copy of the message so they never alias the caller's (reused) read buffer.
type jsonDecoder struct {
	msg, own []byte
}

func (d *jsonDecoder) tok(sp span) []byte { return d.msg[sp.s:sp.e] }

func (d *jsonDecoder) isNull(sp span) bool { return string(d.tok(sp)) == "null" }

func (d *jsonDecoder) raw(sp span) Raw {
	if d.own == nil {
		d.own = bytes.Clone(d.msg)
	}
	return Raw(d.own[sp.s:sp.e:sp.e])
}

// str decodes an optional string member; null counts as absent. required rejects absent and "".
func (d *jsonDecoder) str(sp span, name string, required bool) (string, error) {
	var s string
	if sp.ok() && !d.isNull(sp) {
		v, ok := jsonStringValue(d.tok(sp))
		if !ok {
			return "", fmt.Errorf("%w: decode json: %s is not a string", ErrMalformed, name)
		}
		s = v
	}
	if required && s == "" {
		return "", fmt.Errorf("%w: decode json: missing or empty %s", ErrMalformed, name)
	}
	return s, nil
}

// arguments splits the arguments array into raw values; absent or null means none.
func (d *jsonDecoder) arguments(sp span) ([]Raw, error) {
	if !sp.ok() || d.isNull(sp) {
		return nil, nil
	}
	var out []Raw
	err := d.eachElement(sp, "arguments", func(vs, ve int) error {
		if out == nil {
			out = make([]Raw, 0, 4)
		}
		out = append(out, d.raw(span{vs, ve}))
		return nil
	})
	return out, err
}

func (d *jsonDecoder) streamIDs(sp span) ([]string, error) {
	if !sp.ok() || d.isNull(sp) {
		return nil, nil
	}
	var out []string
	err := d.eachElement(sp, "streamIds", func(vs, ve int) error {
		s, ok := jsonStringValue(d.msg[vs:ve])
		if !ok {
			return fmt.Errorf("%w: decode json: streamIds element is not a string", ErrMalformed)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// eachElement calls fn with the span of every element of the array at sp (already validated).
func (d *jsonDecoder) eachElement(sp span, name string, fn func(vs, ve int) error) error {
	b := d.msg[:sp.e]
	i := sp.s
	if b[i] != '[' {
		return fmt.Errorf("%w: decode json: %s is not an array", ErrMalformed, name)
	}
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for i < len(b) {
		ve, ok := skipJSONValue(b, i)
		if !ok {
			break
		}
		if err := fn(i, ve); err != nil {
			return err
		}
		i = skipJSONSpace(b, ve)
		if i < len(b) && b[i] == ']' {
			return nil
		}
		if i >= len(b) || b[i] != ',' {
			break
		}
		i = skipJSONSpace(b, i+1)
	}
	return fmt.Errorf("%w: decode json: bad %s array", ErrMalformed, name)
}

// headers decodes the headers object (string values only); absent, null or empty yield nil.
func (d *jsonDecoder) headers(sp span) (map[string]string, error) {
	if !sp.ok() || d.isNull(sp) {
		return nil, nil
	}
	it, ok := newObjIter(d.tok(sp))
	if !ok {
		return nil, fmt.Errorf("%w: decode json: headers is not an object", ErrMalformed)
	}
	var h map[string]string
	for {
		m, done, ok := it.next()
		if !ok {
			return nil, fmt.Errorf("%w: decode json: bad headers object", ErrMalformed)
		}
		if done {
			return h, nil
		}
		v, ok := jsonStringValue(it.b[m.vs:m.ve])
		if !ok {
			return nil, fmt.Errorf("%w: decode json: header value is not a string", ErrMalformed)
		}
		var k string
		if !m.escaped && utf8.Valid(m.key) {
			k = string(m.key)
		} else {
			k = string(appendUnescaped(nil, m.key))
		}
		if h == nil {
			h = make(map[string]string, 2)
		}
		h[k] = v
	}
}
