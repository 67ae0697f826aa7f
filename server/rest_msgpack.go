package server

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// msgpackToJSON converts exactly one MessagePack object (a MessagePack client's :invoke result)
// to JSON, appending to dst. Mapping: nil, bool, integers and strings directly; floats as JSON
// numbers (NaN and infinities, which JSON cannot hold, as null); bin as a base64 string (how
// Json.NET writes byte[]); the timestamp extension (-1) as an RFC 3339 string and other
// extensions as base64 of their data; maps as objects, non-string keys written as their JSON
// text inside a string.
func msgpackToJSON(dst, src []byte) ([]byte, error) {
	c := mpConv{src: src}
	out, err := c.value(dst, 0)
	if err != nil {
		return nil, err
	}
	if c.pos != len(src) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMsgpack, len(src)-c.pos)
	}
	return out, nil
}

var errMsgpack = errors.New("server: invalid MessagePack value")

const mpMaxDepth = 1000

type mpConv struct {
	src []byte
	pos int
}

func (c *mpConv) take(n int) ([]byte, error) {
	if n < 0 || n > len(c.src)-c.pos {
		return nil, fmt.Errorf("%w: truncated", errMsgpack)
	}
	b := c.src[c.pos : c.pos+n]
	c.pos += n
	return b, nil
}

// uint reads an n-byte big-endian unsigned integer (n = 1, 2, 4, 8).
func (c *mpConv) uint(n int) (uint64, error) {
	b, err := c.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// mapLen reads a map header.
func (c *mpConv) mapLen() (int, error) {
	b, err := c.take(1)
	if err != nil {
		return 0, err
	}
	switch t := b[0]; {
	case t >= 0x80 && t <= 0x8f:
		return int(t & 0x0f), nil
	case t == 0xde || t == 0xdf:
		n, err := c.uint(2 << (t - 0xde))
		return lenInt(n), err
	}
	return 0, fmt.Errorf("%w: not a map", errMsgpack)
}

// strOrBin reads a str, or with bin also a bin, returning its bytes (aliasing the input).
func (c *mpConv) strOrBin(bin bool) ([]byte, error) {
	b, err := c.take(1)
	if err != nil {
		return nil, err
	}
	var n uint64
	switch t := b[0]; {
	case t >= 0xa0 && t <= 0xbf:
		n = uint64(t & 0x1f)
	case t >= 0xd9 && t <= 0xdb:
		n, err = c.uint(1 << (t - 0xd9))
	case bin && t >= 0xc4 && t <= 0xc6:
		n, err = c.uint(1 << (t - 0xc4))
	default:
		return nil, fmt.Errorf("%w: type byte 0x%02x where a string was expected", errMsgpack, t)
	}
	if err != nil {
		return nil, err
	}
	return c.take(lenInt(n))
}

func (c *mpConv) value(dst []byte, depth int) ([]byte, error) {
	if depth > mpMaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errMsgpack, mpMaxDepth)
	}
	b, err := c.take(1)
	if err != nil {
		return nil, err
	}
	t := b[0]
	switch {
	case t <= 0x7f:
		return strconv.AppendUint(dst, uint64(t), 10), nil
	case t >= 0xe0:
		return strconv.AppendInt(dst, int64(int8(t)), 10), nil
	case t >= 0x80 && t <= 0x8f:
		return c.object(dst, int(t&0x0f), depth)
	case t >= 0x90 && t <= 0x9f:
		return c.array(dst, int(t&0x0f), depth)
	case t >= 0xa0 && t <= 0xbf:
		return c.str(dst, int(t&0x1f))
	}
	switch t {
	case 0xc0:
		return append(dst, "null"...), nil
	case 0xc2:
		return append(dst, "false"...), nil
	case 0xc3:
		return append(dst, "true"...), nil
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		n, err := c.uint(1 << (t - 0xc4))
		if err != nil {
			return nil, err
		}
		data, err := c.take(lenInt(n))
		if err != nil {
			return nil, err
		}
		return appendBase64String(dst, data), nil
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32
		n, err := c.uint(1 << (t - 0xc7))
		if err != nil {
			return nil, err
		}
		return c.ext(dst, lenInt(n))
	case 0xca:
		u, err := c.uint(4)
		if err != nil {
			return nil, err
		}
		return appendJSONFloat(dst, float64(math.Float32frombits(uint32(u))), 32), nil
	case 0xcb:
		u, err := c.uint(8)
		if err != nil {
			return nil, err
		}
		return appendJSONFloat(dst, math.Float64frombits(u), 64), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := c.uint(1 << (t - 0xcc))
		if err != nil {
			return nil, err
		}
		return strconv.AppendUint(dst, u, 10), nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (t - 0xd0)
		u, err := c.uint(n)
		if err != nil {
			return nil, err
		}
		shift := 64 - 8*n // sign-extend
		return strconv.AppendInt(dst, int64(u<<shift)>>shift, 10), nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16
		return c.ext(dst, 1<<(t-0xd4))
	case 0xd9, 0xda, 0xdb:
		n, err := c.uint(1 << (t - 0xd9))
		if err != nil {
			return nil, err
		}
		return c.str(dst, lenInt(n))
	case 0xdc, 0xdd:
		n, err := c.uint(2 << (t - 0xdc))
		if err != nil {
			return nil, err
		}
		return c.array(dst, lenInt(n), depth)
	case 0xde, 0xdf:
		n, err := c.uint(2 << (t - 0xde))
		if err != nil {
			return nil, err
		}
		return c.object(dst, lenInt(n), depth)
	}
	return nil, fmt.Errorf("%w: type byte 0x%02x", errMsgpack, t)
}

// lenInt turns a decoded length into an int; lengths beyond the input fail in take.
func lenInt(n uint64) int {
	if n > math.MaxInt32 {
		return -1
	}
	return int(n)
}

func (c *mpConv) str(dst []byte, n int) ([]byte, error) {
	b, err := c.take(n)
	if err != nil {
		return nil, err
	}
	return appendJSONString(dst, string(b)), nil
}

func (c *mpConv) array(dst []byte, n, depth int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: truncated", errMsgpack)
	}
	dst = append(dst, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = c.value(dst, depth+1); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func (c *mpConv) object(dst []byte, n, depth int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: truncated", errMsgpack)
	}
	dst = append(dst, '{')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		var err error
		if dst, err = c.value(dst, depth+1); err != nil {
			return nil, err
		}
		if dst[start] != '"' { // a non-string key becomes the string of its JSON text
			key := string(dst[start:])
			dst = appendJSONString(dst[:start], key)
		}
		dst = append(dst, ':')
		if dst, err = c.value(dst, depth+1); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

func (c *mpConv) ext(dst []byte, n int) ([]byte, error) {
	tb, err := c.take(1)
	if err != nil {
		return nil, err
	}
	data, err := c.take(n)
	if err != nil {
		return nil, err
	}
	if int8(tb[0]) == -1 { // timestamp
		var ts time.Time
		switch n {
		case 4:
			ts = time.Unix(int64(binary.BigEndian.Uint32(data)), 0)
		case 8:
			v := binary.BigEndian.Uint64(data)
			ts = time.Unix(int64(v&0x3ffffffff), int64(v>>34))
		case 12:
			ts = time.Unix(int64(binary.BigEndian.Uint64(data[4:])), int64(binary.BigEndian.Uint32(data[:4])))
		default:
			return appendBase64String(dst, data), nil
		}
		return appendJSONString(dst, ts.UTC().Format(time.RFC3339Nano)), nil
	}
	return appendBase64String(dst, data), nil
}

func appendBase64String(dst, data []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, '"')
}

// appendJSONFloat writes a float like encoding/json does; JSON has no NaN or infinities.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	return strconv.AppendFloat(dst, f, format, -1, bits)
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
