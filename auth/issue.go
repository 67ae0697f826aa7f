package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenLifetime is ServiceOptions.AccessTokenLifetime's default.
const DefaultTokenLifetime = time.Hour

// TokenIssuer is the iss the SDK writes since PR #2075 (Constants.AsrsTokenIssuer).
const TokenIssuer = "azure-signalr"

// IssueOptions describe one token.
type IssueOptions struct {
	// Audience becomes aud; empty omits it (as the SDK does for a null audience).
	Audience string
	// Lifetime is exp-now; zero means DefaultTokenLifetime, negative is an error.
	Lifetime time.Duration
	// Algorithm is "HS256" (default when empty) or "HS512", the two the SDK can sign with.
	Algorithm string
	// Claims are the custom claims, written first in this order. Long .NET claim types are
	// shortened with the outbound map (ClaimTypeNameIdentifier → "nameid", …); repeated types
	// become one JSON array at the position of the first.
	Claims []Claim
	// Now returns the issue time; nil means time.Now.
	Now func() time.Time
	// KeyID is the header kid; empty means a decimal int32 derived from the key, standing in for
	// .NET's accessKey.GetHashCode() (which is randomized per process and ignored by services).
	KeyID string
	// Issuer is iss; empty means TokenIssuer.
	Issuer string
}

// IssueToken signs a JWT the way the .NET SDK's SignalRJwtSecurityTokenHandler does: header
// {"alg","typ":"JWT","kid"} and payload {custom claims…, "nbf", "exp", "iat", "iss", "aud"} in
// that order, times in whole Unix seconds, HMAC key = UTF-8 bytes of accessKey.
func IssueToken(accessKey string, o IssueOptions) (string, error) {
	if accessKey == "" {
		return "", issueErr("empty access key")
	}
	var method *jwt.SigningMethodHMAC
	switch o.Algorithm {
	case "", "HS256":
		method = jwt.SigningMethodHS256
	case "HS512":
		method = jwt.SigningMethodHS512
	default:
		return "", issueErr("unsupported algorithm " + strconv.Quote(o.Algorithm))
	}
	lifetime := o.Lifetime
	switch {
	case lifetime == 0:
		lifetime = DefaultTokenLifetime
	case lifetime < 0:
		return "", issueErr("lifetime must be positive")
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	nbf, exp := epochSeconds(now), epochSeconds(now.Add(lifetime))
	if nbf >= exp {
		// JwtPayload refuses exp <= nbf (IDX12401); a sub-second lifetime can round to that.
		return "", issueErr("exp must be after nbf")
	}
	kid := o.KeyID
	if kid == "" {
		kid = DefaultKeyID(accessKey)
	}
	iss := o.Issuer
	if iss == "" {
		iss = TokenIssuer
	}

	var p orderedPayload
	for _, c := range o.Claims {
		typ := c.Type
		if short, ok := outboundClaimMap[typ]; ok {
			typ = short
		}
		p.add(typ, jsonString(c.Value))
	}
	// Registered claims are assigned (replacing a same-named custom claim in place, as the .NET
	// dictionary indexer does); aud is appended like a claim and so merges into an array.
	p.set("nbf", strconv.FormatInt(nbf, 10))
	p.set("exp", strconv.FormatInt(exp, 10))
	p.set("iat", strconv.FormatInt(nbf, 10))
	p.set("iss", jsonString(iss))
	if o.Audience != "" {
		p.add("aud", jsonString(o.Audience))
	}

	header := `{"alg":` + jsonString(method.Alg()) + `,"typ":"JWT","kid":` + jsonString(kid) + `}`
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(p.json())
	sig, err := method.Sign(signing, []byte(accessKey))
	if err != nil {
		return "", &opError{op: "issue token", detail: "sign", kinds: []error{ErrIssue}, cause: err}
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// DefaultKeyID is the kid IssueToken writes when none is given: a signed 32-bit decimal like
// .NET's string.GetHashCode(), derived from SHA-256 of the key so it is stable across processes
// and reveals nothing an HMAC signature does not.
func DefaultKeyID(accessKey string) string {
	sum := sha256.Sum256([]byte(accessKey))
	return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(sum[:4]))), 10)
}

// epochSeconds is EpochTime.GetIntDate: whole seconds, truncated, never negative.
func epochSeconds(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return s
}

// orderedPayload is an insertion-ordered JSON object whose values are pre-encoded JSON.
type orderedPayload struct {
	keys []string
	vals [][]string // one element: scalar; more: array
}

func (p *orderedPayload) index(k string) int {
	for i, key := range p.keys {
		if key == k {
			return i
		}
	}
	return -1
}

func (p *orderedPayload) add(k, v string) {
	if i := p.index(k); i >= 0 {
		p.vals[i] = append(p.vals[i], v)
		return
	}
	p.keys = append(p.keys, k)
	p.vals = append(p.vals, []string{v})
}

func (p *orderedPayload) set(k, v string) {
	if i := p.index(k); i >= 0 {
		p.vals[i] = []string{v}
		return
	}
	p.keys = append(p.keys, k)
	p.vals = append(p.vals, []string{v})
}

func (p *orderedPayload) json() []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range p.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(k))
		b.WriteByte(':')
		vs := p.vals[i]
		if len(vs) == 1 {
			b.WriteString(vs[0])
			continue
		}
		b.WriteByte('[')
		for j, v := range vs {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(v)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// jsonString quotes s the way Newtonsoft.Json does by default: only '"', '\\', control
// characters and U+0085/U+2028/U+2029 are escaped; '<', '>', '&' and non-ASCII stay literal
// (unlike encoding/json). Invalid UTF-8 becomes U+FFFD.
func jsonString(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				b.WriteString(`\"`)
			case c == '\\':
				b.WriteString(`\\`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\f':
				b.WriteString(`\f`)
			case c < 0x20:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xF])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString("\ufffd")
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			b.WriteString(`\u`)
			b.WriteString(strconv.FormatInt(int64(r)+0x10000, 16)[1:])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}
