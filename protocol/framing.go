package protocol

import (
	"bytes"
	"errors"
	"fmt"
)

// RecordSeparator terminates every JSON hub message (and the handshake).
const RecordSeparator byte = 0x1E

// MaxVarintLen is the longest VarInt length prefix: 5 bytes, values up to 2^31-1.
const MaxVarintLen = 5

var (
	// ErrIncomplete means more bytes are needed to finish the current message.
	ErrIncomplete = errors.New("protocol: incomplete message")
	// ErrBadLength means a VarInt length prefix is malformed (over 5 bytes or over 2^31-1).
	ErrBadLength = errors.New("protocol: malformed length prefix")
	// ErrTooLarge means a message exceeds the configured maximum size.
	ErrTooLarge = errors.New("protocol: message too large")
)

// AppendVarint appends n as a VarInt: 7 bits per byte, least significant group first.
func AppendVarint(dst []byte, n int) []byte {
	u := uint32(n)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// VarintLen is the number of bytes AppendVarint writes for n.
func VarintLen(n int) int {
	l := 1
	for u := uint32(n); u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

// ReadVarint decodes a length prefix at the start of b. It returns the value and the number of
// prefix bytes, ErrIncomplete when b ends inside the prefix, or ErrBadLength.
func ReadVarint(b []byte) (n int, size int, err error) {
	var v uint64
	for i := 0; i < MaxVarintLen; i++ {
		if i >= len(b) {
			return 0, 0, ErrIncomplete
		}
		c := b[i]
		if i == MaxVarintLen-1 && c > 0x07 {
			return 0, 0, ErrBadLength
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return int(v), i + 1, nil
		}
	}
	return 0, 0, ErrBadLength
}

// AppendFrame appends body with its VarInt length prefix.
func AppendFrame(dst, body []byte) []byte {
	dst = AppendVarint(dst, len(body))
	return append(dst, body...)
}

// CutBinary cuts one length-prefixed message off the front of b. msg excludes the prefix; frame
// includes it (both alias b). max <= 0 means no limit.
func CutBinary(b []byte, max int) (msg, frame, rest []byte, err error) {
	n, size, err := ReadVarint(b)
	if err != nil {
		return nil, nil, b, err
	}
	if max > 0 && n > max {
		return nil, nil, b, fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, max)
	}
	if len(b)-size < n {
		return nil, nil, b, ErrIncomplete
	}
	end := size + n
	return b[size:end:end], b[:end:end], b[end:], nil
}

// CutText cuts one 0x1E-terminated message off the front of b. msg excludes the separator;
// frame includes it. max <= 0 means no limit; an unterminated run longer than max is ErrTooLarge.
func CutText(b []byte, max int) (msg, frame, rest []byte, err error) {
	i := bytes.IndexByte(b, RecordSeparator)
	if i < 0 {
		if max > 0 && len(b) > max {
			return nil, nil, b, fmt.Errorf("%w: over %d bytes without a record separator", ErrTooLarge, max)
		}
		return nil, nil, b, ErrIncomplete
	}
	if max > 0 && i > max {
		return nil, nil, b, fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, i, max)
	}
	return b[:i:i], b[: i+1 : i+1], b[i+1:], nil
}

// Format says how a byte stream is cut into messages.
type Format uint8

const (
	// Text messages end with RecordSeparator (JSON hub protocol, handshakes).
	Text Format = iota
	// Binary messages carry a VarInt length prefix (MessagePack hub protocol, service protocol).
	Binary
)

// maxIdleBuffer is the largest buffer a Splitter keeps once everything in it was consumed.
const maxIdleBuffer = 64 << 10

// Splitter accumulates a byte stream and yields whole messages. Bytes of a message split across
// writes are kept until the rest arrives. The zero value is a Text splitter with no size limit.
type Splitter struct {
	Format Format
	Max    int // maximum message body size; <= 0 means unlimited
	buf    []byte
	off    int
}

// Write appends stream bytes. The slices returned by Next stay valid until the next Write.
func (s *Splitter) Write(p []byte) {
	if s.off > 0 && s.off == len(s.buf) {
		s.buf = s.buf[:0]
		s.off = 0
		if cap(s.buf) > maxIdleBuffer {
			s.buf = nil // do not pin one large message's buffer for the connection's lifetime
		}
	} else if s.off > 0 && s.off > cap(s.buf)/2 {
		n := copy(s.buf, s.buf[s.off:])
		s.buf = s.buf[:n]
		s.off = 0
	}
	s.buf = append(s.buf, p...)
}

// Next returns the next whole message (body without framing) and its frame (with framing).
// It returns ErrIncomplete when no whole message is buffered; any other error is fatal for the stream.
func (s *Splitter) Next() (msg, frame []byte, err error) {
	var rest []byte
	if s.Format == Binary {
		msg, frame, rest, err = CutBinary(s.buf[s.off:], s.Max)
	} else {
		msg, frame, rest, err = CutText(s.buf[s.off:], s.Max)
	}
	if err != nil {
		return nil, nil, err
	}
	s.off = len(s.buf) - len(rest)
	return msg, frame, nil
}

// Buffered is the number of bytes held and not yet returned by Next.
func (s *Splitter) Buffered() int { return len(s.buf) - s.off }

// Rest returns the buffered bytes not yet returned by Next and empties the splitter.
func (s *Splitter) Rest() []byte {
	r := append([]byte(nil), s.buf[s.off:]...)
	s.buf, s.off = s.buf[:0], 0
	if cap(s.buf) > maxIdleBuffer {
		s.buf = nil
	}
	return r
}
