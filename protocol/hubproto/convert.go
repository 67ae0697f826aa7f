package hubproto

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxConvertDepth bounds container nesting (encoding/json's own limit).
const maxConvertDepth = 10000

// JSONToMessagePack converts one JSON value to MessagePack, for REST callers whose JSON
// arguments go to MessagePack clients. Mapping: integral numbers become the shortest int (uint64
// above MaxInt64), other numbers float64; strings, booleans and null map directly; arrays become
// arrays and objects maps with their member order kept. A duplicated object key keeps only its
// last value, as JSON.parse and Json.NET do (MessagePack-CSharp would reject a duplicate map key).
// byte[] cannot be recovered: base64 strings stay strings.
func JSONToMessagePack(r Raw) (Raw, error) {
	if !jsonValid(r) {
		return nil, fmt.Errorf("%w: json to messagepack: invalid JSON", ErrMalformed)
	}
	c := converter{src: r}
	if _, err := c.parse(skipJSONSpace(r, 0), 0); err != nil {
		return nil, err
	}
	return c.emit(make([]byte, 0, len(r))), nil
}

// The conversion runs in two passes because MessagePack containers start with their element
// count: parse records a flat pre-order list of events (containers with their final counts,
// scalars as source spans), emit writes them out. Both passes are linear in the input.
type converter struct {
	src     []byte
	events  []cvEvent
	scratch []byte
}

type cvKind uint8

const (
	evNull cvKind = iota
	evTrue
	evFalse
	evNumber
	evString    // plain string: the bytes between the quotes are the UTF-8 value
	evStringEsc // string needing unescaping
	evArray
	evMap
	evSkip // a dropped duplicate member: skip n events including this one
)

type cvEvent struct {
	kind cvKind
	n    int // element/pair count, or events to skip
	s, e int // source span of scalars (strings include the quotes)
}

// cvMember remembers an object member for duplicate detection.
type cvMember struct {
	key        []byte // canonical (unescaped) key
	start, end int    // its events
}

func (c *converter) parse(i, depth int) (int, error) {
	if i >= len(c.src) {
		return 0, c.bad()
	}
	switch b := c.src[i]; b {
	case '{', '[':
		if depth >= maxConvertDepth {
			return 0, fmt.Errorf("%w: json to messagepack: nesting deeper than %d", ErrMalformed, maxConvertDepth)
		}
		if b == '[' {
			return c.parseArray(i, depth)
		}
		return c.parseObject(i, depth)
	case '"':
		end, esc, ok := scanJSONString(c.src, i)
		if !ok {
			return 0, c.bad()
		}
		k := evString
		if esc || !utf8.Valid(c.src[i+1:end-1]) {
			k = evStringEsc
		}
		c.events = append(c.events, cvEvent{kind: k, s: i, e: end})
		return end, nil
	}
	end, ok := skipJSONValue(c.src, i)
	if !ok {
		return 0, c.bad()
	}
	switch tok := c.src[i:end]; string(tok) {
	case "null":
		c.events = append(c.events, cvEvent{kind: evNull})
	case "true":
		c.events = append(c.events, cvEvent{kind: evTrue})
	case "false":
		c.events = append(c.events, cvEvent{kind: evFalse})
	default:
		c.events = append(c.events, cvEvent{kind: evNumber, s: i, e: end})
	}
	return end, nil
}

func (c *converter) parseArray(i, depth int) (int, error) {
	idx := len(c.events)
	c.events = append(c.events, cvEvent{kind: evArray})
	i = skipJSONSpace(c.src, i+1)
	n := 0
	if i < len(c.src) && c.src[i] == ']' {
		return i + 1, nil
	}
	for {
		end, err := c.parse(i, depth+1)
		if err != nil {
			return 0, err
		}
		n++
		i = skipJSONSpace(c.src, end)
		if i >= len(c.src) {
			return 0, c.bad()
		}
		if c.src[i] == ']' {
			c.events[idx].n = n
			return i + 1, nil
		}
		if c.src[i] != ',' {
			return 0, c.bad()
		}
		i = skipJSONSpace(c.src, i+1)
	}
}

func (c *converter) parseObject(i, depth int) (int, error) {
	idx := len(c.events)
	c.events = append(c.events, cvEvent{kind: evMap})
	it := objIter{b: c.src, i: i + 1, first: true}
	var members []cvMember
	var index map[string]int // key -> position in members, built for large objects
	n := 0
	for {
		m, done, ok := it.next()
		if !ok {
			return 0, c.bad()
		}
		if done {
			c.events[idx].n = n
			return it.i, nil
		}
		key, kind := m.key, evString
		if m.escaped || !utf8.Valid(key) {
			key, kind = appendUnescaped(nil, key), evStringEsc
		}
		start := len(c.events)
		// The key is emitted as a string event from its source span (quotes included).
		c.events = append(c.events, cvEvent{kind: kind, s: m.ks, e: m.ks + len(m.key) + 2})
		if _, err := c.parse(m.vs, depth+1); err != nil {
			return 0, err
		}
		cur := cvMember{key: key, start: start, end: len(c.events)}

		prev := -1
		if index != nil {
			if p, ok := index[string(key)]; ok {
				prev = p
			}
		} else {
			for p := range members {
				if bytes.Equal(members[p].key, key) {
					prev = p
					break
				}
			}
		}
		if prev >= 0 {
			old := members[prev]
			c.events[old.start] = cvEvent{kind: evSkip, n: old.end - old.start}
			members[prev] = cur
			continue
		}
		members = append(members, cur)
		n++
		if index == nil && len(members) > 16 {
			index = make(map[string]int, 2*len(members))
			for p, mm := range members {
				index[string(mm.key)] = p
			}
		} else if index != nil {
			index[string(key)] = len(members) - 1
		}
	}
}

func (c *converter) bad() error {
	return fmt.Errorf("%w: json to messagepack: bad JSON structure", ErrMalformed)
}

func (c *converter) emit(dst []byte) []byte {
	for k := 0; k < len(c.events); k++ {
		e := c.events[k]
		switch e.kind {
		case evSkip:
			k += e.n - 1
		case evNull:
			dst = append(dst, mpNil)
		case evTrue:
			dst = append(dst, mpTrue)
		case evFalse:
			dst = append(dst, mpFalse)
		case evArray:
			dst = mpAppendArrayHeader(dst, e.n)
		case evMap:
			dst = mpAppendMapHeader(dst, e.n)
		case evString:
			raw := c.src[e.s+1 : e.e-1]
			dst = append(mpAppendStrHeader(dst, len(raw)), raw...)
		case evStringEsc:
			c.scratch = appendUnescaped(c.scratch[:0], c.src[e.s+1:e.e-1])
			dst = append(mpAppendStrHeader(dst, len(c.scratch)), c.scratch...)
		case evNumber:
			dst = mpAppendJSONNumber(dst, c.src[e.s:e.e])
		}
	}
	return dst
}

// mpAppendJSONNumber writes a (validated) JSON number: the shortest integer when the value is
// integral and fits 64 bits, float64 otherwise.
func mpAppendJSONNumber(dst []byte, tok []byte) []byte {
	if !bytes.ContainsAny(tok, ".eE") {
		if n, ok := parseDecimalInt(tok); ok {
			return mpAppendInt(dst, n)
		}
		s := string(tok)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return mpAppendInt(dst, n)
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return mpAppendUint(dst, u)
		}
	}
	f, _ := strconv.ParseFloat(string(tok), 64) // out of range yields ±Inf, like JSON.parse
	switch {
	case f != math.Trunc(f) || math.IsInf(f, 0):
	case f >= -(1<<63) && f < 1<<63:
		return mpAppendInt(dst, int64(f))
	case f >= 0 && f < 1<<64:
		return mpAppendUint(dst, uint64(f))
	}
	return mpAppendFloat64(dst, f)
}
