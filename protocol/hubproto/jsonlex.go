package hubproto

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Small JSON lexing helpers shared by the JSON codec, the handshake and the JSON to MessagePack
// converter. They never panic on arbitrary input; callers that need full validation run
// json.Valid first (the scanners below only find value boundaries).

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// scanJSONString returns the index after the closing quote of the string starting at b[i] (a
// quote) and whether it contains a backslash escape. It uses IndexByte (vectorised) because
// strings carry most of the bytes of typical messages.
func scanJSONString(b []byte, i int) (end int, escaped bool, ok bool) {
	j := i + 1
	for {
		if j > len(b) {
			return 0, false, false
		}
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return 0, false, false
		}
		q += j
		// The quote is escaped when an odd number of backslashes precede it.
		bs := 0
		for k := q - 1; k > i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1, escaped || bytes.IndexByte(b[i+1:q], '\\') >= 0, true
		}
		escaped = true
		j = q + 1
	}
}

// skipJSONValue returns the index after the value starting at b[i]. Containers are matched by
// depth only (no recursion, so nesting depth costs no stack).
func skipJSONValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, _, ok := scanJSONString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _, ok := scanJSONString(b, i)
				if !ok {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	case ',', ':', '}', ']':
		return 0, false
	}
	start := i
	for i < len(b) {
		switch c := b[i]; c {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\n', '\r':
			return i, i > start
		}
		i++
	}
	return i, i > start
}

// objIter walks the members of a JSON object.
type objIter struct {
	b     []byte
	i     int
	first bool
}

func newObjIter(b []byte) (objIter, bool) {
	i := skipJSONSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return objIter{}, false
	}
	return objIter{b: b, i: i + 1, first: true}, true
}

// member is one object member: the raw key bytes between the quotes and the value span.
type member struct {
	key     []byte
	ks      int  // offset of the key's opening quote
	escaped bool // key contains a backslash escape
	vs, ve  int  // value is b[vs:ve]
}

// next returns the next member; done is true after the closing brace (it.i then points past it).
func (it *objIter) next() (m member, done bool, ok bool) {
	b := it.b
	i := skipJSONSpace(b, it.i)
	if i >= len(b) {
		return m, false, false
	}
	if b[i] == '}' {
		it.i = i + 1
		return m, true, true
	}
	if !it.first {
		if b[i] != ',' {
			return m, false, false
		}
		i = skipJSONSpace(b, i+1)
	}
	it.first = false
	if i >= len(b) || b[i] != '"' {
		return m, false, false
	}
	kend, esc, ok := scanJSONString(b, i)
	if !ok {
		return m, false, false
	}
	m.key, m.ks, m.escaped = b[i+1:kend-1], i, esc
	i = skipJSONSpace(b, kend)
	if i >= len(b) || b[i] != ':' {
		return m, false, false
	}
	i = skipJSONSpace(b, i+1)
	ve, ok := skipJSONValue(b, i)
	if !ok {
		return m, false, false
	}
	m.vs, m.ve = i, ve
	it.i = ve
	return m, false, true
}

// is reports whether the member's key equals name.
func (m *member) is(name string) bool {
	if !m.escaped {
		return string(m.key) == name
	}
	if len(m.key) < len(name) { // escapes only ever shrink
		return false
	}
	var buf [32]byte
	return string(appendUnescaped(buf[:0], m.key)) == name
}

// jsonStringValue decodes the JSON string token tok (with quotes).
func jsonStringValue(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", false
	}
	end, esc, ok := scanJSONString(tok, 0)
	if !ok || end != len(tok) {
		return "", false
	}
	raw := tok[1 : len(tok)-1]
	if !esc && utf8.Valid(raw) {
		return string(raw), true
	}
	return string(appendUnescaped(make([]byte, 0, len(raw)), raw)), true
}

// appendUnescaped appends the decoded content of a JSON string (raw = bytes between the quotes).
// It matches encoding/json: invalid UTF-8 and unpaired surrogates become U+FFFD. Malformed
// escapes (only possible in unvalidated input) are copied through.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			switch e := raw[i+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(raw[i+2:])
				if !ok {
					dst = append(dst, c)
					i++
					continue
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(-1), false
					if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						r2, ok2 = hex4(raw[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
						dst = utf8.AppendRune(dst, dec)
						i += 6
						continue
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default:
				dst = append(dst, c, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func isJSONNumberStart(c byte) bool { return c == '-' || (c >= '0' && c <= '9') }

// parseJSONInt parses an integral JSON number (1, -3, 2.0, 1e3) into an int64.
func parseJSONInt(tok []byte) (int64, bool) {
	if len(tok) == 0 || !isJSONNumberStart(tok[0]) {
		return 0, false
	}
	if n, ok := parseDecimalInt(tok); ok {
		return n, true
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// parseDecimalInt parses -?[0-9]+ without overflow; anything else (fraction, exponent, too many
// digits) reports false so the caller can fall back to strconv.
func parseDecimalInt(tok []byte) (int64, bool) {
	neg := tok[0] == '-'
	d := tok
	if neg {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 { // 18 digits always fit in int64
		return 0, false
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Like encoding/json it escapes control characters,
// U+2028/U+2029 (JavaScript line terminators) and replaces invalid UTF-8 with U+FFFD; it does
// not HTML-escape.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
