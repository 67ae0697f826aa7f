package hubproto

import (
	"bytes"
	"encoding/binary"
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
	if !bytes.ContainsAny(tok, ".eE") {
		n, err := strconv.ParseInt(string(tok), 10, 64)
		if err != nil {
			return 0, false
		}
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

// maxJSONDepth is encoding/json's nesting limit; deeper input is rejected as invalid.
const maxJSONDepth = 10000

// jsonValid reports whether b is exactly one JSON value with optional surrounding whitespace.
// It accepts exactly what json.Valid accepts (including invalid UTF-8 inside strings, which
// decoders turn into U+FFFD) but runs several times faster, which matters because every inbound
// JSON hub message is validated.
func jsonValid(b []byte) bool {
	end, ok := validJSONValue(b, skipJSONSpace(b, 0))
	return ok && skipJSONSpace(b, end) == len(b)
}

// validJSONValue returns the end of the valid value starting at b[i]. Containers are tracked on
// an explicit stack instead of recursion.
func validJSONValue(b []byte, i int) (int, bool) {
	var stackBuf [64]byte
	stack := stackBuf[:0] // '{' or '[' per open container
	var ok bool
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return 0, false
			}
			i = skipJSONSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' = '{'+2, ']' = '['+2
				i++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if i, ok = validMemberKey(b, i); !ok {
					return 0, false
				}
			}
			continue
		case '"':
			if i, ok = validJSONString(b, i); !ok {
				return 0, false
			}
		case 't':
			if i, ok = literal(b, i, "true"); !ok {
				return 0, false
			}
		case 'f':
			if i, ok = literal(b, i, "false"); !ok {
				return 0, false
			}
		case 'n':
			if i, ok = literal(b, i, "null"); !ok {
				return 0, false
			}
		default:
			if i, ok = validJSONNumber(b, i); !ok {
				return 0, false
			}
		}
		// A value ended at i: close containers or move to the next element.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipJSONSpace(b, i)
			if i >= len(b) {
				return 0, false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return 0, false
			}
			i = skipJSONSpace(b, i+1)
			if top == '{' {
				if i, ok = validMemberKey(b, i); !ok {
					return 0, false
				}
			}
			break
		}
	}
}

// validMemberKey checks `"key" :` at b[i] and returns the start of the member value.
func validMemberKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	i, ok := validJSONString(b, i)
	if !ok {
		return 0, false
	}
	i = skipJSONSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	return skipJSONSpace(b, i+1), true
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// validJSONString checks the string at b[i] (a quote): no raw control characters, only the
// escapes JSON defines.
func validJSONString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		// Skip eight ordinary bytes at a time; string payloads dominate message size.
		for i+8 <= len(b) && !hasStringSpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			i++
			if i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, ok := hex4(b[i+1:]); !ok {
					return 0, false
				}
				i += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// hasStringSpecial reports whether any of the eight bytes in x is a control character, a quote
// or a backslash (the bit tricks report "any byte below n" / "any zero byte" exactly).
func hasStringSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((x-ones*0x20)&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0
}

// validJSONNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func validJSONNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return 0, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
