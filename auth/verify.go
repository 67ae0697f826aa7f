package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Kind says which endpoint a token is presented to; it selects the audience rule.
type Kind int

const (
	// KindClient: aud path /client/ with ?hub=.
	KindClient Kind = iota + 1
	// KindServer: aud path /server/ with ?hub=.
	KindServer
	// KindREST: aud path /api/... (v1, v1-preview or 2022-06-01+ hubs paths, health, auth).
	KindREST
)

func (k Kind) String() string {
	switch k {
	case KindClient:
		return "client"
	case KindServer:
		return "server"
	case KindREST:
		return "rest"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// DefaultSkew is the clock skew allowed on exp and nbf when Verifier.Skew is zero.
const DefaultSkew = 5 * time.Minute

// MaxTokenLength bounds what Verify parses. The SDK refuses to issue tokens over 4096 chars; the
// margin leaves room for third-party issuers while capping work per request.
const MaxTokenLength = 64 << 10

// Token is a verified access token.
type Token struct {
	// Claims holds every payload claim in payload order, duplicates kept. A JSON array yields one
	// claim per element; non-string values are their compact JSON text (numbers as written, true,
	// false, objects); null becomes "" as in System.IdentityModel. aud/exp/iat/nbf/iss included.
	Claims []Claim
	// Audience is the aud value that satisfied the audience rule.
	Audience string
	// Expires, NotBefore and IssuedAt are zero when absent.
	Expires, NotBefore, IssuedAt time.Time
	// UserID is asrs.s.uid, else nameid, else sub, else the long NameIdentifier claim.
	UserID string
	// KeyIndex is the index in Verifier.Keys of the key that verified the signature.
	KeyIndex int
	// Algorithm is the header alg (HS256, HS384 or HS512); KeyID the header kid (informational).
	Algorithm, KeyID string
}

// Verifier checks access tokens signed with the configured access keys.
// It is safe for concurrent use once its fields are set.
type Verifier struct {
	// Keys are the access keys (HMAC key = UTF-8 bytes), tried in order; empty keys are skipped
	// because an empty HMAC key is forgeable. The header kid is ignored: the .NET SDK sets it to
	// a per-process randomized string hash.
	Keys []string
	// Skew is the clock skew for exp and nbf; zero means DefaultSkew, negative means none.
	Skew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// StrictAudience replaces the lenient audience rule with an exact one (see Verify).
	StrictAudience bool
	// AudienceHost, when StrictAudience is set and it is non-empty, must equal the aud host
	// (case-insensitive).
	AudienceHost string
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Verify checks token for kind and hubID and returns its claims.
//
// Signature: HS256, HS384 or HS512 with one of v.Keys ("none", RSA, EC… are rejected). Lifetime:
// exp is required and must be after now-Skew; nbf, if present, must be before now+Skew; iat is
// not checked. Audience (lenient, default): aud (a string, or any element of an array) is parsed
// as a URL; scheme, host, port and fragment are ignored.
//   - KindClient / KindServer: the path must be /client/ or /server/ (case-insensitive, trailing
//     slash optional) and the hub query value must equal hubID case-insensitively.
//   - KindREST: the path must start with /api/ and, when hubID != "", name the hub in the
//     segment after "hubs" (or v1-preview's "hub"), case-insensitively; an application=app query
//     (2022-06-01+) makes the hub "app_hub", so pass HubID(application, hub). Other query
//     parameters are ignored.
//
// With StrictAudience the aud must be what the SDKs write, byte for byte apart from the host:
// http(s), no port, userinfo or fragment, path exactly /client/ or /server/ with the query exactly
// "hub="+hubID, or an /api/ path naming hubID exactly with no query keys other than api-version and
// application; AudienceHost, if set, pins the host.
//
// For client and server tokens an empty hubID skips the hub comparison. Every error wraps
// ErrInvalidToken and, where it applies, ErrSignature, ErrExpired, ErrNotYetValid or ErrAudience.
func (v *Verifier) Verify(token string, kind Kind, hubID string) (*Token, error) {
	if kind < KindClient || kind > KindREST {
		return nil, tokenErr(nil, "unknown token kind "+kind.String())
	}
	if len(token) > MaxTokenLength {
		return nil, tokenErr(nil, "token longer than "+strconv.Itoa(MaxTokenLength)+" bytes")
	}
	headSeg, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, tokenErr(nil, "malformed token: want three segments")
	}
	paySeg, sigSeg, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sigSeg, '.') >= 0 {
		return nil, tokenErr(nil, "malformed token: want three segments")
	}

	headJSON, err := base64.RawURLEncoding.DecodeString(headSeg)
	if err != nil {
		return nil, tokenErrCause(nil, "malformed header encoding", err)
	}
	var hdr jwtHeader
	if err := json.Unmarshal(headJSON, &hdr); err != nil {
		return nil, tokenErrCause(nil, "malformed header", err)
	}
	var method *jwt.SigningMethodHMAC
	switch hdr.Alg {
	case "HS256":
		method = jwt.SigningMethodHS256
	case "HS384":
		method = jwt.SigningMethodHS384
	case "HS512":
		method = jwt.SigningMethodHS512
	default:
		return nil, tokenErr(ErrSignature, "unsupported alg "+strconv.Quote(hdr.Alg))
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigSeg)
	if err != nil {
		return nil, tokenErrCause(ErrSignature, "malformed signature encoding", err)
	}

	// The signature is checked before the payload is parsed: nothing unauthenticated is
	// interpreted beyond the header.
	signing := token[:len(headSeg)+1+len(paySeg)]
	keyIndex := -1
	for i, k := range v.Keys {
		if k == "" {
			continue
		}
		if method.Verify(signing, sig, []byte(k)) == nil {
			keyIndex = i
			break
		}
	}
	if keyIndex < 0 {
		return nil, tokenErr(ErrSignature, "signature matches no configured key")
	}

	payJSON, err := base64.RawURLEncoding.DecodeString(paySeg)
	if err != nil {
		return nil, tokenErrCause(nil, "malformed payload encoding", err)
	}
	p, err := parsePayload(payJSON)
	if err != nil {
		return nil, tokenErrCause(nil, "malformed payload", err)
	}

	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	skew := v.Skew
	switch {
	case skew == 0:
		skew = DefaultSkew
	case skew < 0:
		skew = 0
	}
	if !p.hasExp {
		return nil, tokenErr(nil, "missing exp claim")
	}
	if !now.Before(p.exp.Add(skew)) {
		return nil, tokenErr(ErrExpired, "token expired at "+p.exp.UTC().Format(time.RFC3339))
	}
	if p.hasNbf && now.Add(skew).Before(p.nbf) {
		return nil, tokenErr(ErrNotYetValid, "token not valid before "+p.nbf.UTC().Format(time.RFC3339))
	}

	aud := ""
	for _, a := range p.aud {
		if v.audienceOK(a, kind, hubID) {
			aud = a
			break
		}
	}
	if aud == "" {
		if len(p.aud) == 0 {
			return nil, tokenErr(ErrAudience, "missing aud claim")
		}
		return nil, tokenErr(ErrAudience, "aud does not match a "+kind.String()+" audience for hub "+strconv.Quote(hubID))
	}

	t := &Token{
		Claims:    p.claims,
		Audience:  aud,
		Expires:   p.exp,
		UserID:    userIDOf(p.claims),
		KeyIndex:  keyIndex,
		Algorithm: hdr.Alg,
		KeyID:     hdr.Kid,
	}
	if p.hasNbf {
		t.NotBefore = p.nbf
	}
	if p.hasIat {
		t.IssuedAt = p.iat
	}
	return t, nil
}

func (v *Verifier) audienceOK(aud string, kind Kind, hubID string) bool {
	u, err := url.Parse(aud)
	if err != nil {
		return false
	}
	if v.StrictAudience {
		return v.strictAudienceOK(u, kind, hubID)
	}
	switch kind {
	case KindClient, KindServer:
		want := "/client"
		if kind == KindServer {
			want = "/server"
		}
		if !strings.EqualFold(strings.TrimSuffix(u.Path, "/"), want) {
			return false
		}
		if hubID == "" {
			return true
		}
		hubs := u.Query()["hub"]
		return len(hubs) == 1 && strings.EqualFold(hubs[0], hubID)
	case KindREST:
		return restAudienceOK(u, hubID, false)
	}
	return false
}

func (v *Verifier) strictAudienceOK(u *url.URL, kind Kind, hubID string) bool {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Port() != "" || u.User != nil || u.Fragment != "" || u.Hostname() == "" {
		return false
	}
	if v.AudienceHost != "" && !strings.EqualFold(u.Hostname(), v.AudienceHost) {
		return false
	}
	switch kind {
	case KindClient, KindServer:
		want := "/client/"
		if kind == KindServer {
			want = "/server/"
		}
		return u.Path == want && hubID != "" && u.RawQuery == "hub="+hubID
	case KindREST:
		for k := range u.Query() {
			if k != "api-version" && k != "application" {
				return false
			}
		}
		return restAudienceOK(u, hubID, true)
	}
	return false
}

// restAudienceOK checks /api/{hubs|v1/hubs|v1-preview/hub}/{hub}/... against hubID.
func restAudienceOK(u *url.URL, hubID string, strict bool) bool {
	eq := strings.EqualFold
	if strict {
		eq = func(a, b string) bool { return a == b }
	}
	segs := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(segs) < 2 || !eq(segs[0], "api") {
		return false
	}
	if hubID == "" {
		return true
	}
	i := 1
	if !eq(segs[i], "hubs") && !eq(segs[i], "hub") {
		i = 2 // version segment such as v1 or v1-preview
	}
	if i+1 >= len(segs) || (!eq(segs[i], "hubs") && !eq(segs[i], "hub")) {
		return false
	}
	hub := segs[i+1]
	if eq(hub, hubID) {
		return true
	}
	if app := u.Query().Get("application"); app != "" {
		return eq(app+"_"+hub, hubID)
	}
	return false
}

type payload struct {
	claims                 []Claim
	aud                    []string
	exp, nbf, iat          time.Time
	hasExp, hasNbf, hasIat bool
}

// parsePayload walks the payload object in order so claim order and duplicate names survive (a
// map would lose both). json.Valid vouches for the syntax first, which lets the walk below be a
// simple allocation-light scanner instead of encoding/json's token API.
func parsePayload(data []byte) (payload, error) {
	var p payload
	if !json.Valid(data) {
		return p, errors.New("payload is not valid JSON")
	}
	i := skipWS(data, 0)
	if data[i] != '{' {
		return p, errors.New("payload is not a JSON object")
	}
	i = skipWS(data, i+1)
	var seenExp, seenNbf, seenIat, seenAud bool
	for data[i] != '}' {
		keyEnd := stringEnd(data, i)
		name, err := unquote(data[i:keyEnd])
		if err != nil {
			return p, err
		}
		i = skipWS(data, keyEnd) + 1 // ':'
		i = skipWS(data, i)
		valEnd := valueEnd(data, i)
		raw := data[i:valEnd]
		i = skipWS(data, valEnd)
		if data[i] == ',' {
			i = skipWS(data, i+1)
		}

		var seen *bool
		switch name {
		case "exp":
			seen = &seenExp
		case "nbf":
			seen = &seenNbf
		case "iat":
			seen = &seenIat
		case "aud":
			seen = &seenAud
		}
		if seen != nil {
			// A second exp/nbf/aud would make the token mean different things to different
			// parsers; refuse instead of picking one.
			if *seen {
				return p, errors.New("duplicate " + name + " claim")
			}
			*seen = true
		}
		switch name {
		case "exp":
			if p.exp, err = numericDate(raw); err != nil {
				return p, err
			}
			p.hasExp = true
		case "nbf":
			if p.nbf, err = numericDate(raw); err != nil {
				return p, err
			}
			p.hasNbf = true
		case "iat":
			// iat is informational (the service does not validate it); ignore odd values.
			if t, err := numericDate(raw); err == nil {
				p.iat, p.hasIat = t, true
			}
		case "aud":
			if raw[0] != '"' && raw[0] != '[' {
				return p, errors.New("aud is not a string or array")
			}
		}

		start := len(p.claims)
		if raw[0] == '[' {
			j := skipWS(raw, 1)
			for raw[j] != ']' {
				e := valueEnd(raw, j)
				val, err := claimValue(raw[j:e])
				if err != nil {
					return p, err
				}
				p.claims = append(p.claims, Claim{name, val})
				j = skipWS(raw, e)
				if raw[j] == ',' {
					j = skipWS(raw, j+1)
				}
			}
		} else {
			val, err := claimValue(raw)
			if err != nil {
				return p, err
			}
			p.claims = append(p.claims, Claim{name, val})
		}
		if name == "aud" {
			for _, c := range p.claims[start:] {
				p.aud = append(p.aud, c.Value)
			}
		}
	}
	return p, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string literal starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the (valid) JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// unquote decodes a JSON string literal; the common escape-free, valid-UTF-8 case is one copy.
func unquote(lit []byte) (string, error) {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body), nil
	}
	var s string
	err := json.Unmarshal(lit, &s)
	return s, err
}

// claimValue renders one JSON value as a claim value: strings unquoted, null as "", anything
// else as its compact JSON text.
func claimValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("empty claim value")
	}
	switch raw[0] {
	case '"':
		return unquote(raw)
	case 'n':
		return "", nil
	case '{', '[':
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", err
		}
		return b.String(), nil
	}
	return string(raw), nil
}

// maxNumericDate keeps float→int64 conversions defined (about year 5138).
const maxNumericDate = 1e11

func numericDate(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, errors.New("date claim is not a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) {
		return time.Time{}, errors.New("date claim is not a number")
	}
	f = max(-maxNumericDate, min(f, maxNumericDate))
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
