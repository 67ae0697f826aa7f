package svcproto

import (
	"errors"
	"math"
)

// MessagePack primitives, hand-written for the hot path: append-style encoding into the caller's
// buffer and a bounds-checked decoder over a byte slice that can alias binary data.
// Encodings match MessagePack-CSharp's writer: smallest integer form (non-negative values as
// fixint/uint8/16/32/64), shortest str form (fixstr, str8, str16, str32), bin8/16/32.

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	default:
		return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	default:
		return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 0x80:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return append(b, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
			byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return append(b, 0xd3, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
			byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// appendInt32Fixed writes v as int32 (d2) regardless of its magnitude, as the SDK does for
// ConnectionFlowControl (writer.WriteInt32).
func appendInt32Fixed(b []byte, v int32) []byte {
	return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

// appendNilStr writes "" as nil, for fields that are nullable in the SDK.
func appendNilStr(b []byte, s string) []byte {
	if s == "" {
		return append(b, 0xc0)
	}
	return appendStr(b, s)
}

func appendBin(b []byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func appendStrArray(b []byte, a []string) []byte {
	b = appendArrayLen(b, len(a))
	for _, s := range a {
		b = appendStr(b, s)
	}
	return b
}

func appendPayloads(b []byte, p Payloads) []byte {
	b = appendMapLen(b, len(p))
	for i := range p {
		b = appendStr(b, p[i].Protocol)
		b = appendBin(b, p[i].Data)
	}
	return b
}

func appendHeaders(b []byte, h Headers) []byte {
	b = appendMapLen(b, len(h))
	for i := range h {
		b = appendStr(b, h[i].Name)
		b = appendStrArray(b, h[i].Values)
	}
	return b
}

func appendClaims(b []byte, c []Claim) []byte {
	b = appendMapLen(b, len(c))
	for i := range c {
		b = appendStr(b, c[i].Type)
		b = appendStr(b, c[i].Value)
	}
	return b
}

// Decoder errors; Decode wraps them in ErrMalformed with the message type and offset.
var (
	errShort    = errors.New("unexpected end of data")
	errCode     = errors.New("unexpected MessagePack type")
	errRange    = errors.New("integer out of range")
	errTooLong  = errors.New("collection longer than the remaining data")
	errBadValue = errors.New("unsupported value")
)

// decoder reads MessagePack values from b. The first error sticks: later reads return zero values,
// so the per-type decoders can read all fields and check d.err once.
type decoder struct {
	b   []byte
	i   int
	err error
	at  int // offset of the value that failed
}

func (d *decoder) fail(err error, at int) {
	if d.err == nil {
		d.err, d.at = err, at
	}
}

// need reports whether n more bytes are available, failing otherwise.
func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || n > len(d.b)-d.i {
		d.fail(errShort, d.i)
		return false
	}
	return true
}

// length reads a size-byte big-endian length prefix and checks that per*length more bytes are
// present, comparing before any int conversion so 32-bit platforms cannot overflow.
func (d *decoder) length(size int, per uint64, at int) (int, bool) {
	if !d.need(size) {
		return 0, false
	}
	u := d.uintN(size)
	if u*per > uint64(len(d.b)-d.i) { // u < 2^32 and per <= 2: no overflow
		d.fail(errTooLong, at)
		return 0, false
	}
	return int(u), true
}

// uintN reads an n-byte big-endian unsigned integer at d.i (bounds already checked).
func (d *decoder) uintN(n int) uint64 {
	var v uint64
	for _, c := range d.b[d.i : d.i+n] {
		v = v<<8 | uint64(c)
	}
	d.i += n
	return v
}

// rawInt reads any MessagePack integer. For negative values neg is true and u holds the
// two's-complement bits of the int64.
func (d *decoder) rawInt() (u uint64, neg bool) {
	if !d.need(1) {
		return 0, false
	}
	at := d.i
	c := d.b[d.i]
	d.i++
	switch {
	case c <= 0x7f:
		return uint64(c), false
	case c >= 0xe0:
		return uint64(int64(int8(c))), true
	}
	var size int
	signed := false
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		size = 1 << (c - 0xcc)
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size, signed = 1<<(c-0xd0), true
	default:
		d.i = at
		d.fail(errCode, at)
		return 0, false
	}
	if !d.need(size) {
		return 0, false
	}
	v := d.uintN(size)
	if !signed {
		return v, false
	}
	shift := 64 - 8*size // sign-extend
	s := int64(v<<shift) >> shift
	return uint64(s), s < 0
}

// int32 reads any integer encoding whose value fits in int32 (MessagePack-CSharp ReadInt32).
func (d *decoder) int32() int32 {
	at := d.i
	u, neg := d.rawInt()
	v := int64(u)
	if (!neg && u > math.MaxInt32) || (neg && v < math.MinInt32) {
		d.fail(errRange, at)
		return 0
	}
	return int32(v)
}

// uint64 reads any non-negative integer encoding (MessagePack-CSharp ReadUInt64).
func (d *decoder) uint64() uint64 {
	at := d.i
	u, neg := d.rawInt()
	if neg {
		d.fail(errRange, at)
		return 0
	}
	return u
}

func (d *decoder) bool() bool {
	if !d.need(1) {
		return false
	}
	switch d.b[d.i] {
	case 0xc2:
		d.i++
		return false
	case 0xc3:
		d.i++
		return true
	}
	d.fail(errCode, d.i)
	return false
}

// strLen reads a str header (fixstr, str8/16/32) and checks the data is present; isNil reports nil.
func (d *decoder) strLen() (n int, isNil bool) {
	if !d.need(1) {
		return 0, false
	}
	at := d.i
	c := d.b[d.i]
	d.i++
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xc0:
		return 0, true
	case c == 0xd9 || c == 0xda || c == 0xdb:
		var ok bool
		if n, ok = d.length(1<<(c-0xd9), 1, at); !ok {
			return 0, false
		}
	default:
		d.i = at
		d.fail(errCode, at)
		return 0, false
	}
	if !d.need(n) {
		return 0, false
	}
	return n, false
}

// str reads a string; nil reads as "".
func (d *decoder) str() string {
	n, _ := d.strLen()
	if d.err != nil || n == 0 {
		return ""
	}
	s := string(d.b[d.i : d.i+n])
	d.i += n
	return s
}

// internStr is str for hub-protocol names: the common ones are returned without allocating.
func (d *decoder) internStr() string {
	n, _ := d.strLen()
	if d.err != nil || n == 0 {
		return ""
	}
	p := d.b[d.i : d.i+n]
	d.i += n
	switch string(p) { // no allocation: the conversion is only compared
	case "json":
		return "json"
	case "messagepack":
		return "messagepack"
	case "blazorpack":
		return "blazorpack"
	}
	return string(p)
}

// bin reads binary data, aliasing d.b. It accepts bin8/16/32, and str headers as
// MessagePack-CSharp's ReadBytes does for old-spec data. nil reads as (nil, true); anything else
// returns a non-nil slice, empty for zero length.
func (d *decoder) bin() (p []byte, isNil bool) {
	if !d.need(1) {
		return nil, false
	}
	at := d.i
	c := d.b[d.i]
	var n int
	switch c {
	case 0xc4, 0xc5, 0xc6:
		d.i++
		var ok bool
		if n, ok = d.length(1<<(c-0xc4), 1, at); !ok {
			return nil, false
		}
	default:
		var isNil bool
		if n, isNil = d.strLen(); isNil || d.err != nil {
			return nil, isNil
		}
	}
	p = d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return p, false
}

// bytes reads a required binary field; nil reads as empty (the SDK's ReadBytes ?? Array.Empty).
func (d *decoder) bytes() []byte {
	p, _ := d.bin()
	if p == nil && d.err == nil {
		return []byte{}
	}
	return p
}

// collLen reads an array (isMap false) or map header. nil reads as empty. The length is checked
// against the remaining data (every element takes at least one byte) before anyone allocates.
func (d *decoder) collLen(isMap bool) int {
	if !d.need(1) {
		return 0
	}
	at := d.i
	c := d.b[d.i]
	d.i++
	fix, c16, c32 := byte(0x90), byte(0xdc), byte(0xdd)
	if isMap {
		fix, c16, c32 = 0x80, 0xde, 0xdf
	}
	per := uint64(1)
	if isMap {
		per = 2
	}
	switch {
	case c&0xf0 == fix:
		n := int(c & 0x0f)
		if uint64(n)*per > uint64(len(d.b)-d.i) {
			d.fail(errTooLong, at)
			return 0
		}
		return n
	case c == 0xc0:
		return 0
	case c == c16 || c == c32:
		size := 2
		if c == c32 {
			size = 4
		}
		n, _ := d.length(size, per, at)
		return n
	default:
		d.i = at
		d.fail(errCode, at)
		return 0
	}
}

func (d *decoder) arrayLen() int { return d.collLen(false) }
func (d *decoder) mapLen() int   { return d.collLen(true) }

// strArray reads an array of strings; empty reads as nil.
func (d *decoder) strArray() []string {
	n := d.arrayLen()
	if n == 0 {
		return nil
	}
	a := make([]string, n)
	for i := range a {
		a[i] = d.str()
	}
	if d.err != nil {
		return nil
	}
	return a
}

// payloads reads a map str → bin in wire order; empty reads as nil.
func (d *decoder) payloads() Payloads {
	n := d.mapLen()
	if n == 0 {
		return nil
	}
	p := make(Payloads, n)
	for i := range p {
		p[i].Protocol = d.internStr()
		p[i].Data = d.bytes()
	}
	if d.err != nil {
		return nil
	}
	return p
}

// headers reads a map str → [str] in wire order; empty reads as nil.
func (d *decoder) headers() Headers {
	n := d.mapLen()
	if n == 0 {
		return nil
	}
	h := make(Headers, n)
	for i := range h {
		h[i].Name = d.str()
		h[i].Values = d.strArray()
	}
	if d.err != nil {
		return nil
	}
	return h
}

// claims reads a map str → str in wire order, keeping duplicate types; empty reads as nil.
func (d *decoder) claims() []Claim {
	n := d.mapLen()
	if n == 0 {
		return nil
	}
	c := make([]Claim, n)
	for i := range c {
		c[i].Type = d.str()
		c[i].Value = d.str()
	}
	if d.err != nil {
		return nil
	}
	return c
}

// skip steps over one complete value of any type. It is iterative (pending counts the values
// still to skip), so nesting depth cannot exhaust the stack.
func (d *decoder) skip() {
	for pending := 1; pending > 0 && d.err == nil; pending-- {
		if !d.need(1) {
			return
		}
		at := d.i
		c := d.b[d.i]
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			d.i++
		case c&0xf0 == 0x80 || c&0xf0 == 0x90 || c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf:
			isMap := c&0xf0 == 0x80 || c == 0xde || c == 0xdf
			n := d.collLen(isMap)
			if isMap {
				n *= 2
			}
			pending += n // bounded by the remaining length, checked in collLen
		case c >= 0xa0 && c <= 0xbf, c == 0xd9, c == 0xda, c == 0xdb:
			if n, _ := d.strLen(); d.err == nil {
				d.i += n
			}
		case c == 0xc4 || c == 0xc5 || c == 0xc6:
			d.bin()
		case c >= 0xcc && c <= 0xd3:
			d.rawInt()
		case c == 0xca: // float32
			d.i++
			if d.need(4) {
				d.i += 4
			}
		case c == 0xcb: // float64
			d.i++
			if d.need(8) {
				d.i += 8
			}
		case c >= 0xd4 && c <= 0xd8: // fixext 1/2/4/8/16: type byte + data
			d.i++
			if n := 1 + 1<<(c-0xd4); d.need(n) {
				d.i += n
			}
		case c == 0xc7 || c == 0xc8 || c == 0xc9: // ext 8/16/32: length, type byte, data
			d.i++
			if n, ok := d.length(1<<(c-0xc7), 1, at); ok && d.need(n+1) {
				d.i += n + 1
			}
		default: // 0xc1 is never used
			d.fail(errBadValue, at)
		}
	}
}
