package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	primaryKey   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	secondaryKey = "secondary-key-0123456789"
)

var fixedNow = time.Unix(1_700_000_000, 0)

func fixedClock() time.Time { return fixedNow }

func testVerifier() *Verifier {
	return &Verifier{Keys: []string{primaryKey, secondaryKey}, Now: fixedClock}
}

// rawToken signs header and payload JSON verbatim with golang-jwt's HMAC method for alg.
func rawToken(t testing.TB, key, alg, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m, ok := jwt.GetSigningMethod(alg).(*jwt.SigningMethodHMAC)
	if !ok {
		t.Fatalf("no HMAC method %q", alg)
	}
	sig, err := m.Sign(signing, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func issue(t testing.TB, key string, o IssueOptions) string {
	t.Helper()
	if o.Now == nil {
		o.Now = fixedClock
	}
	tok, err := IssueToken(key, o)
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	return tok
}

const clientAud = "http://localhost/client/?hub=chat"

func TestVerifySignatures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		token     func(t *testing.T) string
		wantIndex int
		wantErr   error
	}{
		{"HS256 primary", func(t *testing.T) string {
			return issue(t, primaryKey, IssueOptions{Audience: clientAud})
		}, 0, nil},
		{"HS512 primary", func(t *testing.T) string {
			return issue(t, primaryKey, IssueOptions{Audience: clientAud, Algorithm: "HS512"})
		}, 0, nil},
		{"HS256 secondary", func(t *testing.T) string {
			return issue(t, secondaryKey, IssueOptions{Audience: clientAud})
		}, 1, nil},
		{"HS512 secondary", func(t *testing.T) string {
			return issue(t, secondaryKey, IssueOptions{Audience: clientAud, Algorithm: "HS512"})
		}, 1, nil},
		{"HS384 accepted", func(t *testing.T) string {
			return rawToken(t, primaryKey, "HS384", `{"alg":"HS384","typ":"JWT"}`, `{"exp":1700003600,"aud":"`+clientAud+`"}`)
		}, 0, nil},
		{"kid ignored", func(t *testing.T) string {
			return issue(t, secondaryKey, IssueOptions{Audience: clientAud, KeyID: "-123456"})
		}, 1, nil},
		{"kid naming another key ignored", func(t *testing.T) string {
			return issue(t, secondaryKey, IssueOptions{Audience: clientAud, KeyID: DefaultKeyID(primaryKey)})
		}, 1, nil},
		{"wrong key", func(t *testing.T) string {
			return issue(t, "some-other-key", IssueOptions{Audience: clientAud})
		}, 0, ErrSignature},
		{"alg none", func(t *testing.T) string {
			enc := base64.RawURLEncoding
			return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
				enc.EncodeToString([]byte(`{"exp":1700003600,"aud":"`+clientAud+`"}`)) + "."
		}, 0, ErrSignature},
		{"alg none with HMAC signature", func(t *testing.T) string {
			tok := rawToken(t, primaryKey, "HS256", `{"alg":"none"}`, `{"exp":1700003600,"aud":"`+clientAud+`"}`)
			return tok
		}, 0, ErrSignature},
		{"alg case matters", func(t *testing.T) string {
			return rawToken(t, primaryKey, "HS256", `{"alg":"hs256"}`, `{"exp":1700003600,"aud":"`+clientAud+`"}`)
		}, 0, ErrSignature},
		{"RS256 rejected", func(t *testing.T) string {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"exp": 1700003600, "aud": clientAud}).SignedString(k)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, 0, ErrSignature},
		{"tampered payload", func(t *testing.T) string {
			tok := issue(t, primaryKey, IssueOptions{Audience: clientAud, Claims: []Claim{{"asrs.s.uid", "alice"}}})
			parts := strings.Split(tok, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"asrs.s.uid":"mallory","exp":1700003600,"aud":"` + clientAud + `"}`))
			return strings.Join(parts, ".")
		}, 0, ErrSignature},
		{"truncated signature", func(t *testing.T) string {
			tok := issue(t, primaryKey, IssueOptions{Audience: clientAud})
			return tok[:len(tok)-2]
		}, 0, ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := testVerifier().Verify(tt.token(t), KindClient, "chat")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify error = %v, want %v wrapped with ErrInvalidToken", err, tt.wantErr)
				}
				if tok != nil {
					t.Error("token returned with error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tok.KeyIndex != tt.wantIndex {
				t.Errorf("KeyIndex = %d, want %d", tok.KeyIndex, tt.wantIndex)
			}
		})
	}
}

func TestVerifyEmptyKeysNeverMatch(t *testing.T) {
	t.Parallel()
	tok := rawToken(t, "", "HS256", `{"alg":"HS256"}`, `{"exp":1700003600,"aud":"`+clientAud+`"}`)
	for _, keys := range [][]string{nil, {""}, {"", ""}} {
		v := &Verifier{Keys: keys, Now: fixedClock}
		if _, err := v.Verify(tok, KindClient, "chat"); !errors.Is(err, ErrSignature) {
			t.Errorf("keys %q: err = %v, want ErrSignature", keys, err)
		}
	}
	v := &Verifier{Keys: []string{"", secondaryKey}, Now: fixedClock}
	got, err := v.Verify(issue(t, secondaryKey, IssueOptions{Audience: clientAud}), KindClient, "chat")
	if err != nil || got.KeyIndex != 1 {
		t.Fatalf("Verify = %+v, %v; want KeyIndex 1", got, err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	t.Parallel()
	enc := base64.RawURLEncoding.EncodeToString
	good := issue(t, primaryKey, IssueOptions{Audience: clientAud})
	tests := []struct {
		name, token string
	}{
		{"empty", ""},
		{"one segment", "abc"},
		{"two segments", "abc.def"},
		{"four segments", good + ".x"},
		{"header not base64", "!!!." + strings.SplitN(good, ".", 2)[1]},
		{"header not json", enc([]byte("nope")) + ".e30.sig"},
		{"header alg not string", enc([]byte(`{"alg":5}`)) + ".e30.sig"},
		{"padded signature", good + "="},
		{"payload not json", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `not json`)},
		{"payload array", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `["exp",1]`)},
		{"payload trailing data", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":1700003600,"aud":"`+clientAud+`"}{}`)},
		{"exp string", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":"1700003600","aud":"`+clientAud+`"}`)},
		{"exp duplicated", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":1,"exp":1700003600,"aud":"`+clientAud+`"}`)},
		{"aud duplicated", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":1700003600,"aud":"x","aud":"`+clientAud+`"}`)},
		{"aud number", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":1700003600,"aud":5}`)},
		{"nbf bool", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"exp":1700003600,"nbf":true,"aud":"`+clientAud+`"}`)},
		{"missing exp", rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, `{"aud":"`+clientAud+`"}`)},
		{"too long", strings.Repeat("a", MaxTokenLength+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := testVerifier().Verify(tt.token, KindClient, "chat")
			if err == nil || tok != nil {
				t.Fatalf("Verify = %v, %v; want error", tok, err)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if !strings.HasPrefix(err.Error(), "auth: verify token: ") {
				t.Errorf("error %q lacks the operation prefix", err)
			}
		})
	}
}

func TestVerifyLifetime(t *testing.T) {
	t.Parallel()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return fixedNow.Add(d) } }
	payload := func(extra string) string {
		return `{` + extra + `"aud":"` + clientAud + `"}`
	}
	tests := []struct {
		name    string
		payload string
		skew    time.Duration
		now     func() time.Time
		wantErr error
	}{
		{"valid", payload(`"exp":1700003600,`), 0, fixedClock, nil},
		{"expired beyond default skew", payload(`"exp":1699999000,`), 0, fixedClock, ErrExpired},
		{"expired within default skew", payload(`"exp":1699999800,`), 0, fixedClock, nil},
		{"expired exactly at exp+skew", payload(`"exp":1699999700,`), 0, fixedClock, ErrExpired},
		{"expired, no skew", payload(`"exp":1699999999,`), -1, fixedClock, ErrExpired},
		{"exp equals now, no skew", payload(`"exp":1700000000,`), -1, fixedClock, ErrExpired},
		{"expired within custom skew", payload(`"exp":1699999000,`), 30 * time.Minute, fixedClock, nil},
		{"fractional exp", payload(`"exp":1700000000.5,`), -1, fixedClock, nil},
		{"exp exponent form", payload(`"exp":1.7000036e9,`), 0, fixedClock, nil},
		{"huge exp clamps", payload(`"exp":1e300,`), 0, fixedClock, nil},
		{"nbf in future", payload(`"exp":1700007200,"nbf":1700003600,`), 0, fixedClock, ErrNotYetValid},
		{"nbf within skew", payload(`"exp":1700007200,"nbf":1700000200,`), 0, fixedClock, nil},
		{"nbf in future, no skew", payload(`"exp":1700007200,"nbf":1700000001,`), -1, fixedClock, ErrNotYetValid},
		{"nbf reached", payload(`"exp":1700007200,"nbf":1700003600,`), 0, at(time.Hour), nil},
		{"iat in future is not checked", payload(`"exp":1700007200,"iat":1800000000,`), 0, fixedClock, nil},
		{"iat garbage is not checked", payload(`"exp":1700007200,"iat":"x",`), 0, fixedClock, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := &Verifier{Keys: []string{primaryKey}, Now: tt.now, Skew: tt.skew}
			_, err := v.Verify(rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, tt.payload), KindClient, "chat")
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyIssuedTokenExpiry(t *testing.T) {
	t.Parallel()
	tok := issue(t, primaryKey, IssueOptions{Audience: clientAud, Lifetime: time.Minute})
	for _, c := range []struct {
		after time.Duration
		skew  time.Duration
		ok    bool
	}{
		{59 * time.Second, -1, true},
		{61 * time.Second, -1, false},
		{5 * time.Minute, 0, true},
		{6*time.Minute + time.Second, 0, false},
	} {
		v := &Verifier{Keys: []string{primaryKey}, Skew: c.skew, Now: func() time.Time { return fixedNow.Add(c.after) }}
		_, err := v.Verify(tok, KindClient, "chat")
		if (err == nil) != c.ok {
			t.Errorf("after %v skew %v: err = %v, want ok=%v", c.after, c.skew, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrExpired) {
			t.Errorf("after %v: err = %v, want ErrExpired", c.after, err)
		}
	}
}

func TestVerifyAudience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		aud   string // raw JSON value of aud
		kind  Kind
		hubID string
		ok    bool
	}{
		{"client exact", `"http://localhost/client/?hub=chat"`, KindClient, "chat", true},
		{"client port differs", `"http://localhost:8080/client/?hub=chat"`, KindClient, "chat", true},
		{"client host differs", `"https://proxy.example.com/client/?hub=chat"`, KindClient, "chat", true},
		{"client scheme differs", `"https://localhost/client/?hub=chat"`, KindClient, "chat", true},
		{"client missing trailing slash", `"http://localhost/client?hub=chat"`, KindClient, "chat", true},
		{"client path case", `"http://localhost/CLIENT/?hub=chat"`, KindClient, "chat", true},
		{"client hub case-insensitive", `"http://localhost/client/?hub=ChatHub"`, KindClient, "chathub", true},
		{"client extra query ignored", `"http://localhost/client/?asrs.op=%2Fchat&hub=chat&x=1"`, KindClient, "chat", true},
		{"client app hub", `"http://localhost/client/?hub=myapp_chat"`, KindClient, "myapp_chat", true},
		{"client different hub", `"http://localhost/client/?hub=other"`, KindClient, "chat", false},
		{"client hub missing", `"http://localhost/client/"`, KindClient, "chat", false},
		{"client hub duplicated", `"http://localhost/client/?hub=chat&hub=other"`, KindClient, "chat", false},
		{"client empty hubID skips hub check", `"http://localhost/client/?hub=whatever"`, KindClient, "", true},
		{"server token used for client", `"http://localhost/server/?hub=chat"`, KindClient, "chat", false},
		{"client token used for server", `"http://localhost/client/?hub=chat"`, KindServer, "chat", false},
		{"server exact", `"http://localhost/server/?hub=chat"`, KindServer, "chat", true},
		{"server port differs", `"http://localhost:8080/server/?hub=chat"`, KindServer, "chat", true},
		{"client path with prefix", `"http://localhost/x/client/?hub=chat"`, KindClient, "chat", false},
		{"client rest path", `"http://localhost/api/hubs/chat"`, KindClient, "chat", false},
		{"aud array one matches", `["http://api.example/resources","https://res.service.signalr.net/client/?hub=chat"]`, KindClient, "chat", true},
		{"aud array none matches", `["http://api.example/resources","x"]`, KindClient, "chat", false},
		{"aud not a URL", `"::::"`, KindClient, "chat", false},
		{"aud empty", `""`, KindClient, "chat", false},
		{"aud empty array", `[]`, KindClient, "chat", false},
		{"rest management sdk", `"http://localhost/api/hubs/chat/users/u1?api-version=2022-06-01"`, KindREST, "chat", true},
		{"rest management sdk application", `"http://localhost/api/hubs/chat/users/u1?application=myapp&api-version=2022-06-01"`, KindREST, "myapp_chat", true},
		{"rest application hub mismatch", `"http://localhost/api/hubs/chat?application=myapp&api-version=2022-06-01"`, KindREST, "otherapp_chat", false},
		{"rest hub case", `"https://res.service.signalr.net/api/hubs/ChatHub/:send?api-version=2022-06-01"`, KindREST, "chathub", true},
		{"rest v1 with port", `"http://localhost:8888/api/v1/hubs/chat/groups/g1"`, KindREST, "chat", true},
		{"rest v1 docs form", `"https://example.service.signalr.net/api/v1/hubs/chat"`, KindREST, "chat", true},
		{"rest v1-preview", `"http://localhost/api/v1-preview/hub/chat/user/u1"`, KindREST, "chat", true},
		{"rest escaped hub", `"http://localhost/api/hubs/a%2Cb/users/u1"`, KindREST, "a,b", true},
		{"rest different hub", `"http://localhost/api/hubs/other/users/u1?api-version=2022-06-01"`, KindREST, "chat", false},
		{"rest hub name in later segment only", `"http://localhost/api/v1/health/hubs/chat"`, KindREST, "chat", false},
		{"rest health no hub", `"http://localhost/api/health?api-version=2022-06-01"`, KindREST, "", true},
		{"rest hub required but path has none", `"http://localhost/api/health?api-version=2022-06-01"`, KindREST, "chat", false},
		{"rest client aud rejected", `"http://localhost/client/?hub=chat"`, KindREST, "chat", false},
		{"rest not api", `"http://localhost/apis/hubs/chat"`, KindREST, "chat", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := rawToken(t, primaryKey, "HS256", `{"alg":"HS256","typ":"JWT"}`, `{"exp":1700003600,"aud":`+tt.aud+`}`)
			got, err := testVerifier().Verify(tok, tt.kind, tt.hubID)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Audience == "" {
					t.Error("Audience empty")
				}
				return
			}
			if !errors.Is(err, ErrAudience) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrAudience", err)
			}
		})
	}
}

func TestVerifyStrictAudience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		aud   string
		kind  Kind
		hubID string
		host  string
		ok    bool
	}{
		{"client exact", "http://localhost/client/?hub=chat", KindClient, "chat", "", true},
		{"client host pinned", "https://res.example/client/?hub=chat", KindClient, "chat", "RES.example", true},
		{"client host differs", "https://other.example/client/?hub=chat", KindClient, "chat", "res.example", false},
		{"client port", "http://localhost:8080/client/?hub=chat", KindClient, "chat", "", false},
		{"client no slash", "http://localhost/client?hub=chat", KindClient, "chat", "", false},
		{"client hub case", "http://localhost/client/?hub=Chat", KindClient, "chat", "", false},
		{"client extra query", "http://localhost/client/?hub=chat&x=1", KindClient, "chat", "", false},
		{"server exact", "http://localhost/server/?hub=chat", KindServer, "chat", "", true},
		{"rest exact", "http://localhost/api/hubs/chat/users/u1?api-version=2022-06-01", KindREST, "chat", "", true},
		{"rest app", "http://localhost/api/hubs/chat?application=app&api-version=2022-06-01", KindREST, "app_chat", "", true},
		{"rest unknown query", "http://localhost/api/hubs/chat?foo=1", KindREST, "chat", "", false},
		{"rest port", "http://localhost:8888/api/v1/hubs/chat", KindREST, "chat", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := &Verifier{Keys: []string{primaryKey}, Now: fixedClock, StrictAudience: true, AudienceHost: tt.host}
			_, err := v.Verify(issue(t, primaryKey, IssueOptions{Audience: tt.aud}), tt.kind, tt.hubID)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrAudience) {
				t.Errorf("error %v does not wrap ErrAudience", err)
			}
		})
	}
}

func TestVerifyUnknownKind(t *testing.T) {
	t.Parallel()
	tok := issue(t, primaryKey, IssueOptions{Audience: clientAud})
	if _, err := testVerifier().Verify(tok, Kind(0), "chat"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify(kind 0) error = %v", err)
	}
}

func TestVerifyClaimsPreserved(t *testing.T) {
	t.Parallel()
	payload := `{"b":"1","a":"2","role":["admin","user"],"b":"3","n":42,"f":-1.5e3,"big":12345678901234567890,` +
		`"t":true,"nul":null,"obj":{"k": [1, 2]},"nested":[[1,2],{"x":"y"},"s"],"empty":[],"esc":"a\u0026<\"\u2028",` +
		`"exp":1700003600,"iat":1700000000,"nbf":1700000000,"iss":"azure-signalr","aud":"` + clientAud + `"}`
	tok, err := testVerifier().Verify(rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`, payload), KindClient, "chat")
	if err != nil {
		t.Fatal(err)
	}
	want := []Claim{
		{"b", "1"}, {"a", "2"}, {"role", "admin"}, {"role", "user"}, {"b", "3"},
		{"n", "42"}, {"f", "-1.5e3"}, {"big", "12345678901234567890"}, {"t", "true"}, {"nul", ""},
		{"obj", `{"k":[1,2]}`}, {"nested", "[1,2]"}, {"nested", `{"x":"y"}`}, {"nested", "s"},
		{"esc", "a&<\"\u2028"},
		{"exp", "1700003600"}, {"iat", "1700000000"}, {"nbf", "1700000000"}, {"iss", "azure-signalr"}, {"aud", clientAud},
	}
	if !reflect.DeepEqual(tok.Claims, want) {
		t.Errorf("Claims =\n%q\nwant\n%q", tok.Claims, want)
	}
	if !tok.Expires.Equal(time.Unix(1700003600, 0)) || !tok.IssuedAt.Equal(fixedNow) || !tok.NotBefore.Equal(fixedNow) {
		t.Errorf("times = %v %v %v", tok.Expires, tok.IssuedAt, tok.NotBefore)
	}
	if tok.Audience != clientAud || tok.Algorithm != "HS256" {
		t.Errorf("Audience/Algorithm = %q/%q", tok.Audience, tok.Algorithm)
	}
	if v, ok := tok.Claim("b"); !ok || v != "1" {
		t.Errorf(`Claim("b") = %q, %v; want first value "1"`, v, ok)
	}
	if _, ok := tok.Claim("missing"); ok {
		t.Error(`Claim("missing") found`)
	}
}

func TestVerifyUserID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		claims string
		want   string
	}{
		{"uid wins", `"sub":"s","nameid":"n","asrs.s.uid":"u",`, "u"},
		{"nameid over sub", `"sub":"s","nameid":"n",`, "n"},
		{"sub", `"sub":"s","unique_name":"x",`, "s"},
		{"long nameidentifier", `"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier":"l",`, "l"},
		{"sub over long", `"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier":"l","sub":"s",`, "s"},
		{"first of duplicates", `"nameid":["n1","n2"],`, "n1"},
		{"present empty uid wins", `"asrs.s.uid":"","nameid":"n",`, ""},
		{"none", `"name":"x",`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := testVerifier().Verify(rawToken(t, primaryKey, "HS256", `{"alg":"HS256"}`,
				`{`+tt.claims+`"exp":1700003600,"aud":"`+clientAud+`"}`), KindClient, "chat")
			if err != nil {
				t.Fatal(err)
			}
			if tok.UserID != tt.want {
				t.Errorf("UserID = %q, want %q", tok.UserID, tt.want)
			}
		})
	}
}

func TestVerifierConcurrent(t *testing.T) {
	t.Parallel()
	v := testVerifier()
	tok := issue(t, secondaryKey, IssueOptions{Audience: clientAud, Claims: []Claim{{ClaimUserID, "u"}}})
	done := make(chan error, 16)
	for range 16 {
		go func() {
			for range 50 {
				if _, err := v.Verify(tok, KindClient, "chat"); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	v := &Verifier{Keys: []string{"wrong-key-first", primaryKey}, Now: fixedClock}
	claims := ClientClaims("user-1", []Claim{{"role", "admin"}, {"email", "a@b.c"}}, ClientClaimOptions{
		ServerName: "srv_0123456789abcdef0123456789abcdef", Sticky: StickyPreferred, Transports: TransportAll,
	})
	tok, err := IssueToken(primaryKey, IssueOptions{Audience: clientAud, Claims: claims, Now: fixedClock})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(tok, KindClient, "chat"); err != nil {
			b.Fatal(err)
		}
	}
}
