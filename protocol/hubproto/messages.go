package hubproto

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/signalrd/signalrd/protocol"
)

// Protocol names as they appear in the handshake request ("protocol" field).
const (
	ProtocolJSON        = "json"
	ProtocolMessagePack = "messagepack"
	// ProtocolBlazorPack is Blazor Server's name for MessagePack framing and encoding.
	ProtocolBlazorPack = "blazorpack"
)

var (
	// ErrUnknownType means the message carries a type this package does not know. The official
	// clients skip such messages (future protocol versions may add types), so callers may too.
	ErrUnknownType = errors.New("hubproto: unknown message type")
	// ErrMalformed means a message or handshake is not valid for the hub protocol.
	ErrMalformed = errors.New("hubproto: malformed message")
)

// MessageType is the "type" discriminator of a hub message.
type MessageType uint8

// Hub message types (HubProtocol.md).
const (
	TypeInvocation       MessageType = 1
	TypeStreamItem       MessageType = 2
	TypeCompletion       MessageType = 3
	TypeStreamInvocation MessageType = 4
	TypeCancelInvocation MessageType = 5
	TypePing             MessageType = 6
	TypeClose            MessageType = 7
	TypeAck              MessageType = 8
	TypeSequence         MessageType = 9
)

// Trackable reports whether stateful reconnect counts and buffers messages of this type
// (Invocation, StreamItem, Completion, StreamInvocation, CancelInvocation).
func (t MessageType) Trackable() bool { return t >= TypeInvocation && t <= TypeCancelInvocation }

// String returns the message type name, or its number when unknown.
func (t MessageType) String() string {
	switch t {
	case TypeInvocation:
		return "Invocation"
	case TypeStreamItem:
		return "StreamItem"
	case TypeCompletion:
		return "Completion"
	case TypeStreamInvocation:
		return "StreamInvocation"
	case TypeCancelInvocation:
		return "CancelInvocation"
	case TypePing:
		return "Ping"
	case TypeClose:
		return "Close"
	case TypeAck:
		return "Ack"
	case TypeSequence:
		return "Sequence"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one hub message. Decode returns the value types below (Invocation, not
// *Invocation); Append accepts both values and pointers.
type Message interface{ Type() MessageType }

// Raw is one argument, result or stream item already encoded in a codec's format: JSON text for
// the JSON codec, exactly one MessagePack object for the MessagePack codec. An empty Raw is
// written as null (nil). Raw values returned by Decode do not alias the decoded input.
type Raw []byte

// Invocation is an Invocation (type 1) or, when Stream is set, a StreamInvocation (type 4).
type Invocation struct {
	Headers      map[string]string
	InvocationID string // "" = non-blocking (no completion expected); required for StreamInvocation
	Target       string
	Arguments    []Raw
	StreamIDs    []string
	Stream       bool // true => StreamInvocation (type 4)
}

// StreamItem is one item of a stream (type 2).
type StreamItem struct {
	Headers      map[string]string
	InvocationID string
	Item         Raw
}

// Completion ends an invocation (type 3). Error != "" makes it an error completion; otherwise
// HasResult distinguishes a non-void result (Result, possibly null) from a void one.
type Completion struct {
	Headers      map[string]string
	InvocationID string
	Error        string
	HasResult    bool
	Result       Raw
}

// CancelInvocation cancels a streaming invocation (type 5).
type CancelInvocation struct {
	Headers      map[string]string
	InvocationID string
}

// Ping is a keep-alive (type 6).
type Ping struct{}

// Close ends the connection (type 7), optionally with an error; AllowReconnect lets the client's
// automatic reconnect kick in.
type Close struct {
	Error          string
	AllowReconnect bool
}

// Ack acknowledges trackable messages up to SequenceID (type 8, stateful reconnect).
type Ack struct{ SequenceID int64 }

// Sequence announces the id of the next (re)sent trackable message (type 9, stateful reconnect).
type Sequence struct{ SequenceID int64 }

// Type implements Message.
func (m Invocation) Type() MessageType {
	if m.Stream {
		return TypeStreamInvocation
	}
	return TypeInvocation
}

// Type implements Message.
func (StreamItem) Type() MessageType { return TypeStreamItem }

// Type implements Message.
func (Completion) Type() MessageType { return TypeCompletion }

// Type implements Message.
func (CancelInvocation) Type() MessageType { return TypeCancelInvocation }

// Type implements Message.
func (Ping) Type() MessageType { return TypePing }

// Type implements Message.
func (Close) Type() MessageType { return TypeClose }

// Type implements Message.
func (Ack) Type() MessageType { return TypeAck }

// Type implements Message.
func (Sequence) Type() MessageType { return TypeSequence }

// Codec encodes and decodes hub messages in one wire format. Implementations are stateless
// values and safe for concurrent use.
type Codec interface {
	// Name is the protocol name used in the handshake ("json", "messagepack", "blazorpack").
	Name() string
	// Format is the framing: protocol.Text (0x1E-terminated) or protocol.Binary (VarInt prefix).
	Format() protocol.Format
	// Append appends one framed message to dst. On error dst is returned unchanged.
	Append(dst []byte, m Message) ([]byte, error)
	// Cut splits one message off the front of a stream (protocol.CutText / protocol.CutBinary).
	// protocol.ErrIncomplete means more bytes are needed; any other error is fatal for the stream.
	Cut(b []byte, max int) (msg, frame, rest []byte, err error)
	// Decode decodes one unframed message. An unknown type yields (nil, ErrUnknownType).
	Decode(msg []byte) (Message, error)
	// PeekType returns the type of an unframed message without decoding the rest. It does not
	// validate the whole message.
	PeekType(msg []byte) (MessageType, error)
	// Marshal encodes a Go value as an argument in this codec's format. A Raw is returned as is.
	Marshal(v any) (Raw, error)
	// Unmarshal decodes an argument into a Go value.
	Unmarshal(r Raw, v any) error
}

// CodecFor returns the codec for a handshake protocol name, case-insensitively. "blazorpack" is
// the MessagePack codec under that name.
func CodecFor(name string) (Codec, bool) {
	switch {
	case strings.EqualFold(name, ProtocolJSON):
		return JSON(), true
	case strings.EqualFold(name, ProtocolMessagePack):
		return MessagePack(), true
	case strings.EqualFold(name, ProtocolBlazorPack):
		return msgpackCodec{name: ProtocolBlazorPack}, true
	}
	return nil, false
}

// flat is any message spread into one struct, so encoders handle values and pointers alike
// without boxing (the caller's copy lives on the encoder's stack).
type flat struct {
	t               MessageType
	headers         map[string]string
	id, target, err string
	args            []Raw
	streamIDs       []string
	raw             Raw // StreamItem.Item or Completion.Result
	hasResult       bool
	allowReconnect  bool
	seq             int64
}

// flatten copies msg into f and checks what the official clients require of the sender.
func flatten(msg Message, f *flat) error {
	switch m := msg.(type) {
	case Invocation:
		f.setInvocation(&m)
	case *Invocation:
		if m != nil {
			f.setInvocation(m)
		}
	case StreamItem:
		f.setStreamItem(&m)
	case *StreamItem:
		if m != nil {
			f.setStreamItem(m)
		}
	case Completion:
		f.setCompletion(&m)
	case *Completion:
		if m != nil {
			f.setCompletion(m)
		}
	case CancelInvocation:
		f.t, f.headers, f.id = TypeCancelInvocation, m.Headers, m.InvocationID
	case *CancelInvocation:
		if m != nil {
			f.t, f.headers, f.id = TypeCancelInvocation, m.Headers, m.InvocationID
		}
	case Ping:
		f.t = TypePing
	case *Ping:
		if m != nil {
			f.t = TypePing
		}
	case Close:
		f.t, f.err, f.allowReconnect = TypeClose, m.Error, m.AllowReconnect
	case *Close:
		if m != nil {
			f.t, f.err, f.allowReconnect = TypeClose, m.Error, m.AllowReconnect
		}
	case Ack:
		f.t, f.seq = TypeAck, m.SequenceID
	case *Ack:
		if m != nil {
			f.t, f.seq = TypeAck, m.SequenceID
		}
	case Sequence:
		f.t, f.seq = TypeSequence, m.SequenceID
	case *Sequence:
		if m != nil {
			f.t, f.seq = TypeSequence, m.SequenceID
		}
	}
	switch f.t {
	case 0:
		return fmt.Errorf("%w: encode: unsupported message %T", ErrMalformed, msg)
	case TypeInvocation, TypeStreamInvocation:
		if f.target == "" {
			return errEncode(f.t, "empty target")
		}
		if f.t == TypeStreamInvocation && f.id == "" {
			return errEncode(f.t, "empty invocation id")
		}
	case TypeStreamItem, TypeCompletion, TypeCancelInvocation:
		if f.id == "" {
			return errEncode(f.t, "empty invocation id")
		}
	}
	return nil
}

func (f *flat) setInvocation(m *Invocation) {
	f.t, f.headers, f.id, f.target, f.args, f.streamIDs = m.Type(), m.Headers, m.InvocationID, m.Target, m.Arguments, m.StreamIDs
}

func (f *flat) setStreamItem(m *StreamItem) {
	f.t, f.headers, f.id, f.raw = TypeStreamItem, m.Headers, m.InvocationID, m.Item
}

func (f *flat) setCompletion(m *Completion) {
	f.t, f.headers, f.id, f.err, f.hasResult, f.raw = TypeCompletion, m.Headers, m.InvocationID, m.Error, m.HasResult, m.Result
}

func errEncode(t MessageType, what string) error {
	return fmt.Errorf("%w: encode %v: %s", ErrMalformed, t, what)
}

func errDecode(codec string, t MessageType, what string) error {
	return fmt.Errorf("%w: decode %s %v: %s", ErrMalformed, codec, t, what)
}

// sortedKeys makes header order, and so the encoded bytes, deterministic.
func sortedKeys(h map[string]string) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
