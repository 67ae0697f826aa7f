package hubproto

import (
	"bytes"
	"fmt"
	"math"

	"github.com/signalrd/signalrd/protocol"
	"github.com/vmihailenco/msgpack/v5"
)

// msgpackCodec is the MessagePack hub protocol: VarInt length prefix, then one MessagePack array
// per message. name distinguishes "messagepack" from "blazorpack"; the wire format is the same.
type msgpackCodec struct{ name string }

// MessagePack returns the MessagePack hub protocol codec.
func MessagePack() Codec { return msgpackCodec{name: ProtocolMessagePack} }

func (c msgpackCodec) Name() string          { return c.name }
func (msgpackCodec) Format() protocol.Format { return protocol.Binary }

func (msgpackCodec) Cut(b []byte, max int) (msg, frame, rest []byte, err error) {
	return protocol.CutBinary(b, max)
}

// Completion result kinds.
const (
	resultError   = 1
	resultVoid    = 2
	resultNonVoid = 3
)

// Marshal encodes v with compact integers (like MessagePack-CSharp) and falls back to `json`
// struct tags so one Go type serves both codecs.
func (msgpackCodec) Marshal(v any) (Raw, error) {
	if r, ok := v.(Raw); ok {
		return r, nil
	}
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseCompactInts(true)
	enc.SetSortMapKeys(true)
	enc.SetCustomStructTag("json")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("hubproto: messagepack marshal argument: %w", err)
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes exactly one MessagePack value into v.
func (msgpackCodec) Unmarshal(r Raw, v any) error {
	rd := bytes.NewReader(r)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(rd)
	dec.SetCustomStructTag("json")
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("hubproto: messagepack unmarshal argument: %w", err)
	}
	if rd.Len() != 0 {
		return fmt.Errorf("hubproto: messagepack unmarshal argument: %d trailing bytes", rd.Len())
	}
	return nil
}

// Append writes the layouts ASP.NET Core's MessagePackHubProtocol writes: Invocation and
// StreamInvocation always with 6 elements (empty stream id array), Close always with 3.
func (msgpackCodec) Append(dst []byte, msg Message) ([]byte, error) {
	var f flat
	if err := flatten(msg, &f); err != nil {
		return dst, err
	}
	// Reserve the length prefix for an upper bound of the body so the body rarely has to move.
	n := len(dst)
	reserved := protocol.VarintLen(mpBound(&f))
	dst = append(dst, make([]byte, reserved)...)
	switch f.t {
	case TypeInvocation, TypeStreamInvocation:
		dst = append(dst, 0x96, byte(f.t))
		dst = mpAppendHeaders(dst, f.headers)
		if f.id == "" {
			dst = append(dst, mpNil)
		} else {
			dst = mpAppendString(dst, f.id)
		}
		dst = mpAppendString(dst, f.target)
		dst = mpAppendArrayHeader(dst, len(f.args))
		for _, a := range f.args {
			dst = mpAppendRaw(dst, a)
		}
		dst = mpAppendArrayHeader(dst, len(f.streamIDs))
		for _, id := range f.streamIDs {
			dst = mpAppendString(dst, id)
		}
	case TypeStreamItem:
		dst = append(dst, 0x94, byte(TypeStreamItem))
		dst = mpAppendHeaders(dst, f.headers)
		dst = mpAppendString(dst, f.id)
		dst = mpAppendRaw(dst, f.raw)
	case TypeCompletion:
		kind := resultVoid
		switch {
		case f.err != "":
			kind = resultError
		case f.hasResult:
			kind = resultNonVoid
		}
		if kind == resultVoid {
			dst = append(dst, 0x94)
		} else {
			dst = append(dst, 0x95)
		}
		dst = append(dst, byte(TypeCompletion))
		dst = mpAppendHeaders(dst, f.headers)
		dst = mpAppendString(dst, f.id)
		dst = append(dst, byte(kind))
		switch kind {
		case resultError:
			dst = mpAppendString(dst, f.err)
		case resultNonVoid:
			dst = mpAppendRaw(dst, f.raw)
		}
	case TypeCancelInvocation:
		dst = append(dst, 0x93, byte(TypeCancelInvocation))
		dst = mpAppendHeaders(dst, f.headers)
		dst = mpAppendString(dst, f.id)
	case TypePing:
		dst = append(dst, 0x91, byte(TypePing))
	case TypeClose:
		dst = append(dst, 0x93, byte(TypeClose))
		if f.err == "" {
			dst = append(dst, mpNil)
		} else {
			dst = mpAppendString(dst, f.err)
		}
		dst = mpAppendBool(dst, f.allowReconnect)
	case TypeAck, TypeSequence:
		dst = append(dst, 0x92, byte(f.t))
		dst = mpAppendInt(dst, f.seq)
	}
	return fixLengthPrefix(dst, n, reserved)
}

// mpBound is an upper bound of the encoded body size (every string header counted at its
// widest).
func mpBound(f *flat) int {
	size := 16 + 5*4 + len(f.id) + len(f.target) + len(f.err) + len(f.raw)
	for k, v := range f.headers {
		size += 10 + len(k) + len(v)
	}
	for _, a := range f.args {
		size += 1 + len(a)
	}
	for _, id := range f.streamIDs {
		size += 5 + len(id)
	}
	return size
}

// fixLengthPrefix writes the VarInt length of the body that follows the reserved bytes at
// dst[n:], moving the body when the actual prefix is shorter or longer than reserved.
func fixLengthPrefix(dst []byte, n, reserved int) ([]byte, error) {
	body := n + reserved
	size := len(dst) - body
	if size > math.MaxInt32 {
		return dst[:n], fmt.Errorf("%w: encode messagepack: %d byte message", protocol.ErrTooLarge, size)
	}
	switch l := protocol.VarintLen(size); {
	case l > reserved:
		dst = append(dst, make([]byte, l-reserved)...)
		copy(dst[n+l:], dst[body:body+size])
	case l < reserved:
		copy(dst[n+l:], dst[body:])
		dst = dst[:n+l+size]
	}
	protocol.AppendVarint(dst[n:n], size) // overwrites the reserved bytes in place
	return dst, nil
}

func mpAppendHeaders(dst []byte, h map[string]string) []byte {
	dst = mpAppendMapHeader(dst, len(h))
	if len(h) == 0 {
		return dst
	}
	for _, k := range sortedKeys(h) {
		dst = mpAppendString(dst, k)
		dst = mpAppendString(dst, h[k])
	}
	return dst
}

// mpAppendRaw writes an encoded value verbatim (not validated: a bad value only spoils its own
// length-prefixed message); empty means nil.
func mpAppendRaw(dst []byte, r Raw) []byte {
	if len(r) == 0 {
		return append(dst, mpNil)
	}
	return append(dst, r...)
}

// minElements is the shortest array each known type may have (ASP.NET Core and the JS client
// accept these lengths and ignore extra trailing elements).
func minElements(t MessageType) int {
	switch t {
	case TypeInvocation, TypeStreamInvocation:
		return 5
	case TypeStreamItem, TypeCompletion:
		return 4
	case TypeCancelInvocation:
		return 3
	case TypeClose, TypeAck, TypeSequence:
		return 2
	}
	return 1
}

// mpType reads the array header and type of a message.
func mpType(r *mpReader) (MessageType, int, error) {
	n, ok := r.arrayHeader()
	if !ok || n < 1 {
		return 0, 0, fmt.Errorf("%w: messagepack: not a non-empty array", ErrMalformed)
	}
	t, ok := r.int()
	if !ok {
		return 0, 0, fmt.Errorf("%w: messagepack: type is not an integer", ErrMalformed)
	}
	if t < int64(TypeInvocation) || t > int64(TypeSequence) {
		return 0, 0, ErrUnknownType // bare sentinel: no allocation per skipped message
	}
	return MessageType(t), n, nil
}

func (msgpackCodec) PeekType(msg []byte) (MessageType, error) {
	r := mpReader{b: msg}
	t, _, err := mpType(&r)
	return t, err
}

func (msgpackCodec) Decode(msg []byte) (Message, error) {
	r := mpReader{b: msg}
	t, n, err := mpType(&r)
	if err != nil {
		return nil, err
	}
	if n < minElements(t) {
		return nil, errDecode("messagepack", t, fmt.Sprintf("%d elements", n))
	}
	d := mpDecoder{r: r, t: t}
	m, used := d.message(n)
	if d.err != nil {
		return nil, d.err
	}
	// Extra trailing elements are skipped (but must be well formed); bytes after the array are not
	// part of any message.
	for ; used < n; used++ {
		if _, _, ok := d.r.skip(); !ok {
			return nil, errDecode("messagepack", t, "bad trailing element")
		}
	}
	if d.r.i != len(msg) {
		return nil, errDecode("messagepack", t, "bytes after the message array")
	}
	return m, nil
}

// mpDecoder decodes one message body after its type; the first error sticks.
type mpDecoder struct {
	r   mpReader
	t   MessageType
	own []byte // copy of the message that Raw values point into
	err error
}

func (d *mpDecoder) fail(what string) {
	if d.err == nil {
		d.err = errDecode("messagepack", d.t, what)
	}
}

// message decodes the elements after the type and returns how many elements it consumed.
func (d *mpDecoder) message(n int) (Message, int) {
	switch d.t {
	case TypeInvocation, TypeStreamInvocation:
		m := Invocation{Stream: d.t == TypeStreamInvocation}
		m.Headers = d.headers()
		m.InvocationID = d.str("invocationId", m.Stream)
		m.Target = d.str("target", true)
		m.Arguments = d.arguments()
		if n < 6 {
			return m, 5
		}
		m.StreamIDs = d.streamIDs()
		return m, 6
	case TypeStreamItem:
		m := StreamItem{Headers: d.headers()}
		m.InvocationID = d.str("invocationId", true)
		m.Item = d.raw("item")
		return m, 4
	case TypeCompletion:
		m := Completion{Headers: d.headers()}
		m.InvocationID = d.str("invocationId", true)
		kind, ok := d.r.int()
		if !ok {
			d.fail("result kind is not an integer")
			return nil, 0
		}
		switch kind {
		case resultVoid:
			return m, 4
		case resultError, resultNonVoid:
			if n < 5 {
				d.fail("missing result")
				return nil, 0
			}
			if kind == resultError {
				m.Error = d.str("error", false)
			} else {
				m.HasResult, m.Result = true, d.raw("result")
			}
			return m, 5
		}
		d.fail("invalid result kind")
		return nil, 0
	case TypeCancelInvocation:
		m := CancelInvocation{Headers: d.headers()}
		m.InvocationID = d.str("invocationId", true)
		return m, 3
	case TypePing:
		return Ping{}, 1
	case TypeClose:
		m := Close{Error: d.str("error", false)}
		if n < 3 {
			return m, 2
		}
		v, ok := d.r.bool()
		if !ok {
			d.fail("allowReconnect is not a boolean")
		}
		m.AllowReconnect = v
		return m, 3
	default: // TypeAck, TypeSequence
		id, ok := d.r.int()
		if !ok {
			d.fail("sequenceId is not an integer")
		}
		if d.t == TypeAck {
			return Ack{SequenceID: id}, 2
		}
		return Sequence{SequenceID: id}, 2
	}
}

// str reads a str or nil; required rejects nil and "". For the Invocation id, "" means none, as
// in ASP.NET Core.
func (d *mpDecoder) str(name string, required bool) string {
	if d.err != nil {
		return ""
	}
	s, ok := d.r.strOrNil()
	switch {
	case !ok:
		d.fail(name + " is not a string")
	case required && s == "":
		d.fail("missing or empty " + name)
	}
	return s
}

func (d *mpDecoder) raw(name string) Raw {
	if d.err != nil {
		return nil
	}
	s, e, ok := d.r.skip()
	if !ok {
		d.fail("bad " + name)
		return nil
	}
	if d.own == nil {
		d.own = bytes.Clone(d.r.b)
	}
	return Raw(d.own[s:e:e])
}

func (d *mpDecoder) arguments() []Raw {
	if d.err != nil {
		return nil
	}
	n, ok := d.r.arrayHeader()
	if !ok {
		d.fail("arguments is not an array")
		return nil
	}
	if n == 0 {
		return nil
	}
	args := make([]Raw, 0, n)
	for range n {
		a := d.raw("argument")
		if d.err != nil {
			return nil
		}
		args = append(args, a)
	}
	return args
}

func (d *mpDecoder) streamIDs() []string {
	if d.err != nil {
		return nil
	}
	n, ok := d.r.arrayHeader()
	if !ok {
		d.fail("streamIds is not an array")
		return nil
	}
	var ids []string
	for range n {
		b, ok := d.r.strBytes()
		if !ok {
			d.fail("stream id is not a string")
			return nil
		}
		ids = append(ids, string(b))
	}
	return ids
}

// headers reads the string-to-string map; nil or empty yields nil.
func (d *mpDecoder) headers() map[string]string {
	if d.err != nil {
		return nil
	}
	n, ok := d.r.mapHeader()
	if !ok {
		d.fail("headers is not a map")
		return nil
	}
	if n == 0 {
		return nil
	}
	h := make(map[string]string, n)
	for range n {
		k, ok1 := d.r.strBytes()
		v, ok2 := d.r.strBytes()
		if !ok1 || !ok2 {
			d.fail("header is not a string pair")
			return nil
		}
		h[string(k)] = string(v)
	}
	return h
}
