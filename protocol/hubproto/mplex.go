package hubproto

import (
	"encoding/binary"
	"math"
)

// Minimal MessagePack reading and writing for the message envelope. The envelope is a handful of
// arrays, ints and strings, so a direct []byte reader is both simpler and cheaper than the
// reflection-based library (which stays in use for Marshal/Unmarshal of arguments). Every read
// is bounds-checked and never panics; skipping is iterative, so nesting depth costs no stack.

// MessagePack format bytes used here.
const (
	mpNil     = 0xc0
	mpFalse   = 0xc2
	mpTrue    = 0xc3
	mpFloat64 = 0xcb
	mpUint8   = 0xcc
	mpUint16  = 0xcd
	mpUint32  = 0xce
	mpUint64  = 0xcf
	mpInt8    = 0xd0
	mpInt16   = 0xd1
	mpInt32   = 0xd2
	mpInt64   = 0xd3
	mpStr8    = 0xd9
	mpStr16   = 0xda
	mpStr32   = 0xdb
	mpArray16 = 0xdc
	mpArray32 = 0xdd
	mpMap16   = 0xde
	mpMap32   = 0xdf
)

func mpAppendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(dst, mpArray16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, mpArray32), uint32(n))
}

func mpAppendMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(dst, mpMap16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, mpMap32), uint32(n))
}

func mpAppendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(dst, mpStr8, byte(n))
	case n <= math.MaxUint16:
		return append(dst, mpStr16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, mpStr32), uint32(n))
}

func mpAppendString(dst []byte, s string) []byte {
	return append(mpAppendStrHeader(dst, len(s)), s...)
}

// mpAppendInt writes n in its shortest form (as MessagePack-CSharp and the JS encoder do).
func mpAppendInt(dst []byte, n int64) []byte {
	if n >= 0 {
		return mpAppendUint(dst, uint64(n))
	}
	switch {
	case n >= -32:
		return append(dst, byte(n))
	case n >= math.MinInt8:
		return append(dst, mpInt8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, mpInt16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, mpInt32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpInt64), uint64(n))
}

func mpAppendUint(dst []byte, u uint64) []byte {
	switch {
	case u <= 0x7f:
		return append(dst, byte(u))
	case u <= math.MaxUint8:
		return append(dst, mpUint8, byte(u))
	case u <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mpUint16), uint16(u))
	case u <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mpUint32), uint32(u))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpUint64), u)
}

func mpAppendFloat64(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, mpFloat64), math.Float64bits(f))
}

func mpAppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, mpTrue)
	}
	return append(dst, mpFalse)
}

// mpReader reads MessagePack values from b starting at i.
type mpReader struct {
	b []byte
	i int
}

func (r *mpReader) remaining() int { return len(r.b) - r.i }

// take returns the next n bytes.
func (r *mpReader) take(n uint64) ([]byte, bool) {
	if n > uint64(r.remaining()) {
		return nil, false
	}
	s := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return s, true
}

// uintN reads a big-endian unsigned integer of size bytes.
func (r *mpReader) uintN(size int) (uint64, bool) {
	p, ok := r.take(uint64(size))
	if !ok {
		return 0, false
	}
	var u uint64
	for _, c := range p {
		u = u<<8 | uint64(c)
	}
	return u, true
}

func (r *mpReader) byte() (byte, bool) {
	if r.i >= len(r.b) {
		return 0, false
	}
	c := r.b[r.i]
	r.i++
	return c, true
}

// tryNil consumes a nil if it is next.
func (r *mpReader) tryNil() bool {
	if r.i < len(r.b) && r.b[r.i] == mpNil {
		r.i++
		return true
	}
	return false
}

// arrayHeader reads an array length. A length that cannot fit in the remaining bytes (every
// element takes at least one) is rejected before anyone allocates for it.
func (r *mpReader) arrayHeader() (int, bool) {
	c, ok := r.byte()
	if !ok {
		return 0, false
	}
	var n uint64
	switch {
	case c&0xf0 == 0x90:
		n = uint64(c & 0x0f)
	case c == mpArray16:
		n, ok = r.uintN(2)
	case c == mpArray32:
		n, ok = r.uintN(4)
	default:
		return 0, false
	}
	if !ok || n > uint64(r.remaining()) {
		return 0, false
	}
	return int(n), true
}

// mapHeader reads a map length (pairs); nil reads as an empty map.
func (r *mpReader) mapHeader() (int, bool) {
	c, ok := r.byte()
	if !ok {
		return 0, false
	}
	var n uint64
	switch {
	case c&0xf0 == 0x80:
		n = uint64(c & 0x0f)
	case c == mpMap16:
		n, ok = r.uintN(2)
	case c == mpMap32:
		n, ok = r.uintN(4)
	case c == mpNil:
		return 0, true
	default:
		return 0, false
	}
	if !ok || n*2 > uint64(r.remaining()) {
		return 0, false
	}
	return int(n), true
}

// int reads any MessagePack integer that fits in an int64.
func (r *mpReader) int() (int64, bool) {
	c, ok := r.byte()
	if !ok {
		return 0, false
	}
	switch {
	case c <= 0x7f:
		return int64(c), true
	case c >= 0xe0:
		return int64(int8(c)), true
	}
	var u uint64
	switch c {
	case mpUint8, mpInt8:
		u, ok = r.uintN(1)
	case mpUint16, mpInt16:
		u, ok = r.uintN(2)
	case mpUint32, mpInt32:
		u, ok = r.uintN(4)
	case mpUint64, mpInt64:
		u, ok = r.uintN(8)
	default:
		return 0, false
	}
	if !ok {
		return 0, false
	}
	switch c {
	case mpInt8:
		return int64(int8(u)), true
	case mpInt16:
		return int64(int16(u)), true
	case mpInt32:
		return int64(int32(u)), true
	case mpInt64:
		return int64(u), true
	case mpUint64:
		if u > math.MaxInt64 {
			return 0, false
		}
	}
	return int64(u), true
}

// strBytes reads a str value (not nil, not bin).
func (r *mpReader) strBytes() ([]byte, bool) {
	c, ok := r.byte()
	if !ok {
		return nil, false
	}
	var n uint64
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == mpStr8:
		n, ok = r.uintN(1)
	case c == mpStr16:
		n, ok = r.uintN(2)
	case c == mpStr32:
		n, ok = r.uintN(4)
	default:
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return r.take(n)
}

// strOrNil reads a str or nil (nil reads as "").
func (r *mpReader) strOrNil() (string, bool) {
	if r.tryNil() {
		return "", true
	}
	b, ok := r.strBytes()
	return string(b), ok
}

func (r *mpReader) bool() (bool, bool) {
	c, ok := r.byte()
	switch {
	case !ok:
		return false, false
	case c == mpTrue:
		return true, true
	case c == mpFalse, c == mpNil:
		return false, true
	}
	return false, false
}

// skip steps over one complete value and returns its span. It keeps a count of values still
// owed instead of recursing, and rejects counts the remaining bytes cannot possibly satisfy.
func (r *mpReader) skip() (start, end int, ok bool) {
	start = r.i
	pending := uint64(1)
	for pending > 0 {
		c, ok := r.byte()
		if !ok {
			return 0, 0, false
		}
		pending--
		var data uint64 // payload bytes following the header
		switch {
		case c <= 0x7f || c >= 0xe0 || c == mpNil || c == mpFalse || c == mpTrue:
		case c&0xf0 == 0x80:
			pending += 2 * uint64(c&0x0f)
		case c&0xf0 == 0x90:
			pending += uint64(c & 0x0f)
		case c&0xe0 == 0xa0:
			data = uint64(c & 0x1f)
		default:
			var size int    // width of the length field
			var extra int64 // fixed payload beyond the length field
			switch c {
			case 0xc4, mpStr8: // bin8, str8
				size = 1
			case 0xc5, mpStr16:
				size = 2
			case 0xc6, mpStr32:
				size = 4
			case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, then type byte
				size, extra = 1<<(c-0xc7), 1
			case 0xca, mpUint32, mpInt32:
				extra = 4
			case mpFloat64, mpUint64, mpInt64:
				extra = 8
			case mpUint8, mpInt8:
				extra = 1
			case mpUint16, mpInt16:
				extra = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16 plus type byte
				extra = 1 + 1<<(c-0xd4)
			case mpArray16, mpArray32, mpMap16, mpMap32:
				w := 2
				if c == mpArray32 || c == mpMap32 {
					w = 4
				}
				n, ok := r.uintN(w)
				if !ok {
					return 0, 0, false
				}
				if c == mpMap16 || c == mpMap32 {
					n *= 2
				}
				pending += n
			default: // 0xc1 is never used
				return 0, 0, false
			}
			if size > 0 {
				n, ok := r.uintN(size)
				if !ok {
					return 0, 0, false
				}
				data = n
			}
			data += uint64(extra)
		}
		if _, ok := r.take(data); !ok {
			return 0, 0, false
		}
		if pending > uint64(r.remaining()) {
			return 0, 0, false
		}
	}
	return start, r.i, true
}
