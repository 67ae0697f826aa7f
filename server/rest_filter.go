package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The OData filter subset of :execute (client-and-rest §6.6), modelled on Azure Web PubSub's:
// identifiers userId, connectionId (strings) and groups (collection); and, or, not; eq, ne, gt,
// ge, lt, le; in with a parenthesised list or groups; true, false, null, integer and 'string'
// literals ('' escapes a quote); parentheses; functions startswith, endswith, contains, length,
// indexof, tolower, toupper, trim, substring, concat. Keywords, function and identifier names are
// case-insensitive; string comparisons are ordinal. Precedence, highest first: not, comparisons
// and in, and, or. Expressions are type-checked when parsed, so a bad filter is a 400 before
// anything runs. docs/rest.md documents the subset.

// errFilter wraps every filter syntax or type error.
var errFilter = errors.New("server: invalid filter")

// Bounds on what one filter may cost.
const (
	filterMaxLen   = 16 << 10
	filterMaxDepth = 64
	filterMaxNodes = 1000
)

type ftype uint8

const (
	ftBool ftype = iota + 1
	ftInt
	ftString
	ftCollection
	ftNull // the null literal: comparable with any scalar
)

func (t ftype) String() string {
	switch t {
	case ftBool:
		return "bool"
	case ftInt:
		return "int"
	case ftString:
		return "string"
	case ftCollection:
		return "collection"
	case ftNull:
		return "null"
	}
	return "?"
}

type fop uint8

const (
	opLit fop = iota + 1
	opUserID
	opConnID
	opGroups
	opAnd
	opOr
	opNot
	opEq
	opNe
	opGt
	opGe
	opLt
	opLe
	opInList
	opInGroups
	opFunc
)

// fnode is one node of a checked expression tree.
type fnode struct {
	op   fop
	typ  ftype
	lit  fval
	fn   string
	args []*fnode
}

// fval is a runtime value; null marks a null string or int (an anonymous user's userId).
type fval struct {
	null bool
	b    bool
	i    int64
	s    string
}

// filterSubject is what a filter sees of one connection.
type filterSubject struct {
	connID, userID string
	inGroup        func(group string) bool
}

// odataFilter is a parsed, type-checked filter. It is immutable and safe for concurrent use.
type odataFilter struct{ root *fnode }

// parseODataFilter parses and type-checks a filter; the error wraps errFilter.
func parseODataFilter(src string) (*odataFilter, error) {
	if len(src) > filterMaxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errFilter, filterMaxLen)
	}
	p := &fparser{src: src}
	if err := p.lex(); err != nil {
		return nil, err
	}
	n, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, p.errAt(p.toks[p.pos], "unexpected %s", p.toks[p.pos].text)
	}
	if n.typ != ftBool {
		return nil, fmt.Errorf("%w: the filter is of type %s, expected a bool expression", errFilter, n.typ)
	}
	return &odataFilter{root: n}, nil
}

// match evaluates the filter for one connection.
func (f *odataFilter) match(s filterSubject) bool { return eval(f.root, &s).b }

func eval(n *fnode, s *filterSubject) fval {
	switch n.op {
	case opLit:
		return n.lit
	case opUserID:
		if s.userID == "" {
			return fval{null: true}
		}
		return fval{s: s.userID}
	case opConnID:
		return fval{s: s.connID}
	case opAnd:
		return fval{b: eval(n.args[0], s).b && eval(n.args[1], s).b}
	case opOr:
		return fval{b: eval(n.args[0], s).b || eval(n.args[1], s).b}
	case opNot:
		return fval{b: !eval(n.args[0], s).b}
	case opEq, opNe, opGt, opGe, opLt, opLe:
		return fval{b: compare(n.op, n.args[0].typ, eval(n.args[0], s), eval(n.args[1], s))}
	case opInList:
		l := eval(n.args[0], s)
		for _, e := range n.args[1:] {
			if compare(opEq, n.args[0].typ, l, eval(e, s)) {
				return fval{b: true}
			}
		}
		return fval{b: false}
	case opInGroups:
		l := eval(n.args[0], s)
		return fval{b: !l.null && s.inGroup != nil && s.inGroup(l.s)}
	case opFunc:
		return call(n, s)
	}
	return fval{null: true}
}

// compare applies a comparison. null equals only null; ordering with null is false. typ is the
// left operand's static type (the right one is the same or null).
func compare(op fop, typ ftype, a, b fval) bool {
	if a.null || b.null {
		switch op {
		case opEq:
			return a.null && b.null
		case opNe:
			return a.null != b.null
		}
		return false
	}
	var c int
	switch typ {
	case ftString:
		c = strings.Compare(a.s, b.s)
	case ftInt:
		c = cmpInt(a.i, b.i)
	case ftBool:
		c = cmpInt(b2i(a.b), b2i(b.b))
	}
	switch op {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opGt:
		return c > 0
	case opGe:
		return c >= 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	}
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// call evaluates a function; a null string argument yields null (false for predicates).
func call(n *fnode, s *filterSubject) fval {
	args := make([]fval, len(n.args))
	for i, a := range n.args {
		args[i] = eval(a, s)
	}
	switch n.fn {
	case "startswith", "endswith", "contains":
		if args[0].null || args[1].null {
			return fval{b: false}
		}
		switch n.fn {
		case "startswith":
			return fval{b: strings.HasPrefix(args[0].s, args[1].s)}
		case "endswith":
			return fval{b: strings.HasSuffix(args[0].s, args[1].s)}
		}
		return fval{b: strings.Contains(args[0].s, args[1].s)}
	}
	for _, a := range args {
		if a.null {
			return fval{null: true}
		}
	}
	switch n.fn {
	case "length":
		return fval{i: int64(utf8.RuneCountInString(args[0].s))}
	case "indexof":
		i := strings.Index(args[0].s, args[1].s)
		if i < 0 {
			return fval{i: -1}
		}
		return fval{i: int64(utf8.RuneCountInString(args[0].s[:i]))}
	case "tolower":
		return fval{s: strings.ToLower(args[0].s)}
	case "toupper":
		return fval{s: strings.ToUpper(args[0].s)}
	case "trim":
		return fval{s: strings.TrimSpace(args[0].s)}
	case "concat":
		return fval{s: args[0].s + args[1].s}
	case "substring":
		r := []rune(args[0].s)
		start := clamp(args[1].i, 0, int64(len(r)))
		end := int64(len(r))
		if len(args) == 3 {
			end = clamp(start+clamp(args[2].i, 0, int64(len(r))), start, int64(len(r)))
		}
		return fval{s: string(r[start:end])}
	}
	return fval{null: true}
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

// Lexer.

type ftokKind uint8

const (
	tkWord ftokKind = iota + 1
	tkString
	tkInt
	tkLParen
	tkRParen
	tkComma
)

type ftok struct {
	kind ftokKind
	pos  int
	text string // the source text (words as written)
	s    string // unquoted string literal
	i    int64
}

type fparser struct {
	src   string
	toks  []ftok
	pos   int
	nodes int
}

func (p *fparser) errAt(t ftok, format string, args ...any) error {
	return fmt.Errorf("%w: %s at position %d", errFilter, fmt.Sprintf(format, args...), t.pos)
}

func (p *fparser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			p.toks = append(p.toks, ftok{kind: tkLParen, pos: i, text: "("})
			i++
		case c == ')':
			p.toks = append(p.toks, ftok{kind: tkRParen, pos: i, text: ")"})
			i++
		case c == ',':
			p.toks = append(p.toks, ftok{kind: tkComma, pos: i, text: ","})
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return fmt.Errorf("%w: unterminated string literal at position %d", errFilter, i)
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			if !utf8.ValidString(b.String()) {
				return fmt.Errorf("%w: string literal at position %d is not valid UTF-8", errFilter, i)
			}
			p.toks = append(p.toks, ftok{kind: tkString, pos: i, text: s[i : j+1], s: b.String()})
			i = j + 1
		case c == '+' || c == '-' || (c >= '0' && c <= '9'):
			j := i
			if c == '+' || c == '-' {
				j++
			}
			k := j
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			if k == j {
				return fmt.Errorf("%w: unexpected %q at position %d", errFilter, c, i)
			}
			n, err := strconv.ParseInt(s[i:k], 10, 64)
			if err != nil {
				return fmt.Errorf("%w: integer %s at position %d is out of range", errFilter, s[i:k], i)
			}
			p.toks = append(p.toks, ftok{kind: tkInt, pos: i, text: s[i:k], i: n})
			i = k
		case isWordByte(c):
			j := i
			for j < len(s) && (isWordByte(s[j]) || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			p.toks = append(p.toks, ftok{kind: tkWord, pos: i, text: s[i:j]})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fmt.Errorf("%w: unexpected %q at position %d", errFilter, r, i)
		}
	}
	if len(p.toks) == 0 {
		return fmt.Errorf("%w: empty filter", errFilter)
	}
	return nil
}

func isWordByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

// Parser: recursive descent over the precedence levels.

func (p *fparser) peek() (ftok, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return ftok{}, false
}

// peekWord reports whether the next token is the keyword w.
func (p *fparser) peekWord(w string) bool {
	t, ok := p.peek()
	return ok && t.kind == tkWord && strings.EqualFold(t.text, w)
}

func (p *fparser) expect(k ftokKind, what string) (ftok, error) {
	t, ok := p.peek()
	if !ok {
		return ftok{}, fmt.Errorf("%w: expected %s at the end of the filter", errFilter, what)
	}
	if t.kind != k {
		return ftok{}, p.errAt(t, "expected %s, found %s", what, t.text)
	}
	p.pos++
	return t, nil
}

func (p *fparser) node(n *fnode) (*fnode, error) {
	p.nodes++
	if p.nodes > filterMaxNodes {
		return nil, fmt.Errorf("%w: more than %d terms", errFilter, filterMaxNodes)
	}
	return n, nil
}

func (p *fparser) nest(depth int) error {
	if depth > filterMaxDepth {
		return fmt.Errorf("%w: nested deeper than %d levels", errFilter, filterMaxDepth)
	}
	return nil
}

func (p *fparser) parseOr(depth int) (*fnode, error) {
	return p.parseBinary(depth, "or", opOr, p.parseAnd)
}

func (p *fparser) parseAnd(depth int) (*fnode, error) {
	return p.parseBinary(depth, "and", opAnd, p.parseComparison)
}

// Depth counts parentheses, function calls and 'not' nesting: the levels that recurse.
func (p *fparser) parseBinary(depth int, word string, op fop, next func(int) (*fnode, error)) (*fnode, error) {
	l, err := next(depth)
	if err != nil {
		return nil, err
	}
	for p.peekWord(word) {
		t := p.toks[p.pos]
		p.pos++
		r, err := next(depth)
		if err != nil {
			return nil, err
		}
		if l.typ != ftBool || r.typ != ftBool {
			return nil, p.errAt(t, "'%s' needs bool operands, found %s and %s", word, l.typ, r.typ)
		}
		if l, err = p.node(&fnode{op: op, typ: ftBool, args: []*fnode{l, r}}); err != nil {
			return nil, err
		}
	}
	return l, nil
}

var comparisonOps = map[string]fop{"eq": opEq, "ne": opNe, "gt": opGt, "ge": opGe, "lt": opLt, "le": opLe}

func (p *fparser) parseComparison(depth int) (*fnode, error) {
	l, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	t, ok := p.peek()
	if !ok || t.kind != tkWord {
		return l, nil
	}
	word := strings.ToLower(t.text)
	if word == "in" {
		p.pos++
		return p.parseIn(depth, l, t)
	}
	op, ok := comparisonOps[word]
	if !ok {
		return l, nil
	}
	p.pos++
	r, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	if err := p.checkComparable(t, op, l.typ, r.typ); err != nil {
		return nil, err
	}
	if l.typ == ftNull { // keep the non-null operand's type on the left for compare
		l, r = r, l
		op = mirror(op)
	}
	return p.node(&fnode{op: op, typ: ftBool, args: []*fnode{l, r}})
}

// mirror swaps the operands of an ordering comparison.
func mirror(op fop) fop {
	switch op {
	case opGt:
		return opLt
	case opGe:
		return opLe
	case opLt:
		return opGt
	case opLe:
		return opGe
	}
	return op
}

func (p *fparser) checkComparable(t ftok, op fop, a, b ftype) error {
	if a == ftCollection || b == ftCollection {
		return p.errAt(t, "'%s' cannot compare a collection (use 'in groups' or length(groups))", t.text)
	}
	if a != b && a != ftNull && b != ftNull {
		return p.errAt(t, "'%s' compares %s with %s", t.text, a, b)
	}
	if op != opEq && op != opNe {
		typ := a
		if typ == ftNull {
			typ = b
		}
		if typ != ftInt && typ != ftString && typ != ftNull {
			return p.errAt(t, "'%s' cannot order %s values", t.text, typ)
		}
	}
	return nil
}

func (p *fparser) parseIn(depth int, l *fnode, in ftok) (*fnode, error) {
	if l.typ == ftCollection {
		return nil, p.errAt(in, "the left operand of 'in' must be a single value")
	}
	t, ok := p.peek()
	if !ok {
		return nil, fmt.Errorf("%w: expected a list or groups after 'in'", errFilter)
	}
	if t.kind != tkLParen {
		r, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		if r.typ != ftCollection {
			return nil, p.errAt(t, "'in' needs a parenthesised list or groups")
		}
		return p.inGroups(in, l)
	}
	p.pos++
	items, err := p.parseList(depth)
	if err != nil {
		return nil, err
	}
	if len(items) == 1 && items[0].typ == ftCollection { // 'g' in (groups)
		return p.inGroups(in, l)
	}
	args := []*fnode{l}
	for _, e := range items {
		if err := p.checkComparable(in, opEq, l.typ, e.typ); err != nil {
			return nil, err
		}
		args = append(args, e)
	}
	if l.typ == ftNull {
		for _, e := range items {
			if e.typ != ftNull {
				l.typ = e.typ // compare needs a concrete type; null on the left equals only nulls
				break
			}
		}
	}
	return p.node(&fnode{op: opInList, typ: ftBool, args: args})
}

func (p *fparser) inGroups(in ftok, l *fnode) (*fnode, error) {
	if l.typ != ftString && l.typ != ftNull {
		return nil, p.errAt(in, "'in groups' needs a string on the left, found %s", l.typ)
	}
	return p.node(&fnode{op: opInGroups, typ: ftBool, args: []*fnode{l}})
}

func (p *fparser) next(what string) (ftok, error) {
	t, ok := p.peek()
	if !ok {
		return ftok{}, fmt.Errorf("%w: expected %s at the end of the filter", errFilter, what)
	}
	p.pos++
	return t, nil
}

func (p *fparser) parseUnary(depth int) (*fnode, error) {
	if err := p.nest(depth); err != nil {
		return nil, err
	}
	if p.peekWord("not") {
		t := p.toks[p.pos]
		p.pos++
		e, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		if e.typ != ftBool {
			return nil, p.errAt(t, "'not' needs a bool operand, found %s (parenthesise comparisons: not (a eq b))", e.typ)
		}
		return p.node(&fnode{op: opNot, typ: ftBool, args: []*fnode{e}})
	}
	return p.parsePrimary(depth)
}

// filterFuncs maps function names to their parameter types and result type.
var filterFuncs = map[string]struct {
	params   []ftype
	optional int // trailing optional parameters
	result   ftype
}{
	"startswith": {[]ftype{ftString, ftString}, 0, ftBool},
	"endswith":   {[]ftype{ftString, ftString}, 0, ftBool},
	"contains":   {[]ftype{ftString, ftString}, 0, ftBool},
	"indexof":    {[]ftype{ftString, ftString}, 0, ftInt},
	"concat":     {[]ftype{ftString, ftString}, 0, ftString},
	"tolower":    {[]ftype{ftString}, 0, ftString},
	"toupper":    {[]ftype{ftString}, 0, ftString},
	"trim":       {[]ftype{ftString}, 0, ftString},
	"substring":  {[]ftype{ftString, ftInt, ftInt}, 1, ftString},
	"length":     {[]ftype{ftString}, 0, ftInt}, // length(groups) is rejected below
}

func (p *fparser) parsePrimary(depth int) (*fnode, error) {
	t, err := p.next("a value")
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case tkString:
		return p.node(&fnode{op: opLit, typ: ftString, lit: fval{s: t.s}})
	case tkInt:
		return p.node(&fnode{op: opLit, typ: ftInt, lit: fval{i: t.i}})
	case tkLParen:
		e, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tkRParen, "')'"); err != nil {
			return nil, err
		}
		return e, nil
	case tkWord:
	default:
		return nil, p.errAt(t, "unexpected %s", t.text)
	}
	name := strings.ToLower(t.text)
	switch name {
	case "true", "false":
		return p.node(&fnode{op: opLit, typ: ftBool, lit: fval{b: name == "true"}})
	case "null":
		return p.node(&fnode{op: opLit, typ: ftNull, lit: fval{null: true}})
	case "userid":
		return p.node(&fnode{op: opUserID, typ: ftString})
	case "connectionid":
		return p.node(&fnode{op: opConnID, typ: ftString})
	case "groups":
		return p.node(&fnode{op: opGroups, typ: ftCollection})
	}
	sig, ok := filterFuncs[name]
	if !ok {
		return nil, p.errAt(t, "unknown identifier or function '%s' (identifiers: userId, connectionId, groups)", t.text)
	}
	if _, err := p.expect(tkLParen, "'(' after "+t.text); err != nil {
		return nil, err
	}
	var args []*fnode
	if nt, ok := p.peek(); !ok || nt.kind != tkRParen {
		var err error
		if args, err = p.parseList(depth); err != nil {
			return nil, err
		}
	} else {
		p.pos++
	}
	if len(args) > len(sig.params) || len(args) < len(sig.params)-sig.optional {
		return nil, p.errAt(t, "%s takes %d argument(s), found %d", name, len(sig.params)-sig.optional, len(args))
	}
	for i, a := range args {
		if name == "length" && a.typ == ftCollection {
			return nil, p.errAt(t, "length(groups) is not supported")
		}
		if a.typ != sig.params[i] && a.typ != ftNull {
			return nil, p.errAt(t, "argument %d of %s must be %s, found %s", i+1, name, sig.params[i], a.typ)
		}
	}
	return p.node(&fnode{op: opFunc, typ: sig.result, fn: name, args: args})
}

// parseList parses `expr (',' expr)* ')'` after an opening parenthesis (a value list or a
// function's arguments).
func (p *fparser) parseList(depth int) ([]*fnode, error) {
	var items []*fnode
	for {
		e, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
		sep, err := p.next("',' or ')'")
		if err != nil {
			return nil, err
		}
		if sep.kind == tkRParen {
			return items, nil
		}
		if sep.kind != tkComma {
			return nil, p.errAt(sep, "expected ',' or ')', found %s", sep.text)
		}
	}
}
