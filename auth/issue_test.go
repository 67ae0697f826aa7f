package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"hash"
	"reflect"
	"strings"
	"testing"
	"time"
)

func decodeSeg(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("segment %q: %v", s, err)
	}
	return string(b)
}

// TestIssueTokenGolden pins the exact header and payload bytes and checks the signature with an
// independent HMAC computation.
func TestIssueTokenGolden(t *testing.T) {
	t.Parallel()
	cs := mustParse(t, "Endpoint=http://localhost:8080;AccessKey="+primaryKey+";Version=1.0;")
	tests := []struct {
		name          string
		opts          IssueOptions
		header, body  string
		newHash       func() hash.Hash
		verifyKind    Kind
		verifyHubID   string
		wantUserID    string
		wantClaimsLen int
	}{
		{
			name:   "server token",
			opts:   IssueOptions{Audience: cs.ServerAudience("chat"), Claims: ServerClaims("host_0123456789abcdef0123456789abcdef"), KeyID: "-1234567"},
			header: `{"alg":"HS256","typ":"JWT","kid":"-1234567"}`,
			body: `{"nameid":"host_0123456789abcdef0123456789abcdef","nbf":1700000000,"exp":1700003600,"iat":1700000000,` +
				`"iss":"azure-signalr","aud":"http://localhost/server/?hub=chat"}`,
			newHash: sha256.New, verifyKind: KindServer, verifyHubID: "chat",
			wantUserID: "host_0123456789abcdef0123456789abcdef", wantClaimsLen: 6,
		},
		{
			name: "client token HS512 with claims",
			opts: IssueOptions{
				Audience:  cs.ClientAudience("app_chat"),
				Algorithm: "HS512",
				Lifetime:  30 * time.Minute,
				KeyID:     "42",
				Claims: ClientClaims("alice", []Claim{
					{ClaimTypeNameIdentifier, "alice-id"},
					{DefaultRoleClaimType, "admin"},
					{"role", "user"},
					{"exp", "user-exp"},
					{"sub", "s1"},
					{"sub", "s2"},
					{"html", `<a href="x">&</a>`},
				}, ClientClaimOptions{ServerName: "srv1", Sticky: StickyRequired, HandshakeTimeout: 20 * time.Second}),
			},
			header: `{"alg":"HS512","typ":"JWT","kid":"42"}`,
			body: `{"asrs.s.uid":"alice","asrs.s.sn":"srv1","asrs.s.ssticky":"Required","asrs.s.cht":"20",` +
				`"nameid":"alice-id","role":["admin","user"],"asrs.u.exp":"user-exp","sub":"s1","asrs.u.sub":"s2",` +
				`"html":"<a href=\"x\">&</a>",` +
				`"nbf":1700000000,"exp":1700001800,"iat":1700000000,"iss":"azure-signalr","aud":"http://localhost/client/?hub=app_chat"}`,
			newHash: sha512.New, verifyKind: KindClient, verifyHubID: "APP_CHAT",
			wantUserID: "alice", wantClaimsLen: 16,
		},
		{
			name: "custom aud claim merges into array, custom exp replaced in place",
			opts: IssueOptions{Audience: "http://localhost/client/?hub=chat", KeyID: "1", Issuer: "me",
				Claims: []Claim{{"aud", "http://other/"}, {"exp", "0"}, {"x", "y"}}},
			header: `{"alg":"HS256","typ":"JWT","kid":"1"}`,
			body: `{"aud":["http://other/","http://localhost/client/?hub=chat"],"exp":1700003600,"x":"y",` +
				`"nbf":1700000000,"iat":1700000000,"iss":"me"}`,
			newHash: sha256.New, verifyKind: KindClient, verifyHubID: "chat", wantClaimsLen: 7,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := issue(t, primaryKey, tt.opts)
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q has %d parts", tok, len(parts))
			}
			if got := decodeSeg(t, parts[0]); got != tt.header {
				t.Errorf("header =\n%s\nwant\n%s", got, tt.header)
			}
			if got := decodeSeg(t, parts[1]); got != tt.body {
				t.Errorf("payload =\n%s\nwant\n%s", got, tt.body)
			}
			mac := hmac.New(tt.newHash, []byte(primaryKey))
			mac.Write([]byte(parts[0] + "." + parts[1]))
			if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
				t.Errorf("signature = %s, want %s", parts[2], want)
			}
			got, err := testVerifier().Verify(tok, tt.verifyKind, tt.verifyHubID)
			if err != nil {
				t.Fatalf("round trip Verify: %v", err)
			}
			if got.UserID != tt.wantUserID || len(got.Claims) != tt.wantClaimsLen {
				t.Errorf("UserID = %q (want %q), %d claims (want %d): %q", got.UserID, tt.wantUserID, len(got.Claims), tt.wantClaimsLen, got.Claims)
			}
		})
	}
}

func TestIssueTokenRoundTripClaims(t *testing.T) {
	t.Parallel()
	claims := []Claim{{ClaimUserID, "u1"}, {"role", "a"}, {"k", "v"}, {"role", "b"}}
	tok := issue(t, secondaryKey, IssueOptions{Audience: "https://res.example/server/?hub=h", Lifetime: 2 * time.Hour})
	got, err := testVerifier().Verify(tok, KindServer, "h")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expires.Equal(fixedNow.Add(2*time.Hour)) || got.KeyIndex != 1 {
		t.Errorf("Expires = %v, KeyIndex = %d", got.Expires, got.KeyIndex)
	}
	tok = issue(t, primaryKey, IssueOptions{Audience: clientAud, Claims: claims})
	got, err = testVerifier().Verify(tok, KindClient, "chat")
	if err != nil {
		t.Fatal(err)
	}
	// Repeated types are grouped at the first occurrence, as the .NET payload dictionary does.
	want := []Claim{{ClaimUserID, "u1"}, {"role", "a"}, {"role", "b"}, {"k", "v"}}
	if !reflect.DeepEqual(got.Claims[:4], want) {
		t.Errorf("claims = %q, want prefix %q", got.Claims, want)
	}
}

func TestIssueTokenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		opts IssueOptions
	}{
		{"empty key", "", IssueOptions{}},
		{"RS256", "k", IssueOptions{Algorithm: "RS256"}},
		{"HS384 not issued by the SDK", "k", IssueOptions{Algorithm: "HS384"}},
		{"negative lifetime", "k", IssueOptions{Lifetime: -time.Second}},
		{"sub-second lifetime", "k", IssueOptions{Lifetime: time.Millisecond, Now: fixedClock}},
	}
	for _, tt := range tests {
		if _, err := IssueToken(tt.key, tt.opts); !errors.Is(err, ErrIssue) {
			t.Errorf("%s: err = %v, want ErrIssue", tt.name, err)
		}
	}
}

func TestIssueTokenDefaults(t *testing.T) {
	t.Parallel()
	tok, err := IssueToken(primaryKey, IssueOptions{Audience: clientAud})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	wantHeader := `{"alg":"HS256","typ":"JWT","kid":"` + DefaultKeyID(primaryKey) + `"}`
	if got := decodeSeg(t, parts[0]); got != wantHeader {
		t.Errorf("header = %s, want %s", got, wantHeader)
	}
	got, err := (&Verifier{Keys: []string{primaryKey}}).Verify(tok, KindClient, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Expires.Sub(got.IssuedAt); d != DefaultTokenLifetime {
		t.Errorf("lifetime = %v, want %v", d, DefaultTokenLifetime)
	}
	if v, _ := got.Claim("iss"); v != TokenIssuer {
		t.Errorf("iss = %q", v)
	}
}

func TestDefaultKeyID(t *testing.T) {
	t.Parallel()
	a, b := DefaultKeyID(primaryKey), DefaultKeyID(secondaryKey)
	if a == b || a != DefaultKeyID(primaryKey) {
		t.Errorf("DefaultKeyID not stable/distinct: %s %s", a, b)
	}
	for _, id := range []string{a, b} {
		for i, r := range id {
			if !(r >= '0' && r <= '9' || (i == 0 && r == '-')) {
				t.Errorf("kid %q is not a decimal int", id)
			}
		}
	}
}

func TestJSONString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"<>&", `"<>&"`},
		{"\n\r\t\b\f\x01\x1f", `"\n\r\t\b\f\u0001\u001f"`},
		{"é中😀", `"é中😀"`},
		{"\u0085\u2028\u2029", `"\u0085\u2028\u2029"`},
		{"bad\xffutf8", "\"bad\ufffdutf8\""},
	}
	for _, tt := range tests {
		if got := jsonString(tt.in); got != tt.want {
			t.Errorf("jsonString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func BenchmarkIssueToken(b *testing.B) {
	claims := ClientClaims("user-1", []Claim{{"role", "admin"}}, ClientClaimOptions{})
	o := IssueOptions{Audience: clientAud, Claims: claims, Now: fixedClock}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := IssueToken(primaryKey, o); err != nil {
			b.Fatal(err)
		}
	}
}
