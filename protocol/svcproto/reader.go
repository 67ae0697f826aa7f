package svcproto

import (
	"fmt"

	"github.com/signalrd/signalrd/protocol"
)

// Reader decodes a stream of length-prefixed service messages that arrives in arbitrary pieces
// (the SDK batches several messages per WebSocket message and splits large ones across several).
// Feed it with Write and drain it with Next until protocol.ErrIncomplete. The zero value is ready
// to use. A Reader belongs to one goroutine.
type Reader struct {
	// Max is the largest accepted message body in bytes; <= 0 means unlimited. A larger frame makes
	// Next fail with an error wrapping protocol.ErrTooLarge as soon as its prefix is read.
	Max int
	// ZeroCopy makes []byte fields of returned messages alias the Reader's buffer: no copy, but
	// they are only valid until the next Write. By default each message that carries binary data
	// gets its own copy of its body, so payloads may be retained or handed to other goroutines.
	ZeroCopy bool

	s protocol.Splitter
}

// Write appends stream bytes. p is copied; it may be reused after Write returns.
func (r *Reader) Write(p []byte) { r.s.Write(p) }

// Next returns the next whole message. It returns protocol.ErrIncomplete (unwrapped) when no whole
// message is buffered; write more and call again. Messages with unknown type ids are skipped.
//
// A malformed body returns an error wrapping ErrMalformed; its frame is consumed, so the caller
// may log it and continue as the SDK does. An error wrapping protocol.ErrTooLarge or
// protocol.ErrBadLength means the stream cannot be resynchronised: close the connection.
func (r *Reader) Next() (Message, error) {
	r.s.Format, r.s.Max = protocol.Binary, r.Max
	for {
		body, _, err := r.s.Next()
		if err == protocol.ErrIncomplete {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("svcproto: read frame: %w", err)
		}
		if !r.ZeroCopy && carriesBytes(peekType(body)) {
			body = append([]byte(nil), body...)
		}
		m, err := Decode(body)
		if err != nil {
			return nil, err
		}
		if m != nil {
			return m, nil
		}
	}
}

// Buffered is the number of bytes held that do not yet form a whole message.
func (r *Reader) Buffered() int { return r.s.Buffered() }

// peekType reads the type id of a body without decoding it; 0 if it cannot.
func peekType(body []byte) MessageType {
	d := decoder{b: body}
	d.arrayLen()
	id := d.int32()
	if d.err != nil || id < 1 || id > int32(maxKnownType) {
		return 0
	}
	return MessageType(id)
}

// carriesBytes reports whether decoded messages of type t can hold slices aliasing the body.
func carriesBytes(t MessageType) bool {
	switch t {
	case TypeConnectionData, TypeMultiConnectionData, TypeUserData, TypeMultiUserData,
		TypeBroadcastData, TypeGroupBroadcastData, TypeMultiGroupBroadcastData, TypeAck,
		TypeClientInvocation, TypeClientCompletion:
		return true
	}
	return false
}
