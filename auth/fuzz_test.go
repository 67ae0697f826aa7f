package auth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func FuzzParseConnectionString(f *testing.F) {
	for _, s := range []string{
		"Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;",
		"endpoint=https://aaa;AuthType=azure.app;clientId=1;tenantId=2;clientSecret=3",
		"Endpoint=https://h/p?x=1#f;AccessKey=k;ServerEndpoint=http://[::1]:80/a;ClientEndpoint=https://c/?q",
		"Endpoint=http://a;AccessKey=b;accesskey=c",
		"Endpoint=http://a:99999;AccessKey=b;Port=0",
		";;=;==;Endpoint==;",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseConnectionString(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "auth: parse connection string: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if cs.Endpoint == nil || (cs.Endpoint.Scheme != "http" && cs.Endpoint.Scheme != "https") {
			t.Fatalf("accepted endpoint %v", cs.Endpoint)
		}
		if cs.Port < 0 || cs.Port > 65535 {
			t.Fatalf("port %d", cs.Port)
		}
		base := cs.AudienceBase()
		if !strings.HasPrefix(base, cs.Endpoint.Scheme+"://") || !strings.HasSuffix(base, "/") {
			t.Fatalf("AudienceBase %q", base)
		}
		_ = cs.ServerURL("hub", "cid")
		_ = cs.ServerURLWithTarget("hub", "cid", "t")
		_ = cs.ClientURL("hub")
		_ = cs.ServerAudience("hub")
		_ = cs.ClientAudience("hub")
	})
}

func FuzzVerify(f *testing.F) {
	good, err := IssueToken(primaryKey, IssueOptions{
		Audience: clientAud, Now: fixedClock,
		Claims: ClientClaims("u", []Claim{{"role", "a"}, {"role", "b"}}, ClientClaimOptions{ServerName: "s", Sticky: StickyRequired}),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.")
	v := &Verifier{Keys: []string{primaryKey, secondaryKey}, Now: fixedClock}
	f.Fuzz(func(t *testing.T, token string) {
		for _, kind := range []Kind{KindClient, KindServer, KindREST, 0} {
			tok, err := v.Verify(token, kind, "chat")
			if err != nil {
				if tok != nil {
					t.Fatal("token with error")
				}
				continue
			}
			checkVerified(t, tok)
		}
	})
}

// FuzzVerifyPayload signs arbitrary payload bytes with a configured key so the fuzzer reaches
// the claim decoder and the audience rules behind the signature check.
func FuzzVerifyPayload(f *testing.F) {
	for _, p := range []string{
		`{"exp":1700003600,"aud":"http://localhost/client/?hub=chat"}`,
		`{"a":[1,[2],{"b":null}],"exp":1.7e9,"nbf":-1,"aud":["x","http://h:1/CLIENT?hub=CHAT"]}`,
		`{"exp":1700003600,"aud":"http://localhost/api/hubs/chat?application=a"}`,
		`{"exp":1e999}`,
		`{"exp":1700003600,"aud":"%zz"}`,
		`{}`,
		`[]`,
		``,
	} {
		f.Add([]byte(p), "chat")
	}
	v := &Verifier{Keys: []string{primaryKey}, Now: fixedClock, Skew: time.Minute}
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, payload []byte, hubID string) {
		signing := head + "." + enc.EncodeToString(payload)
		sig, err := jwt.SigningMethodHS256.Sign(signing, []byte(primaryKey))
		if err != nil {
			t.Fatal(err)
		}
		token := signing + "." + enc.EncodeToString(sig)
		for _, kind := range []Kind{KindClient, KindServer, KindREST} {
			tok, err := v.Verify(token, kind, hubID)
			if err != nil {
				continue
			}
			checkVerified(t, tok)
		}
	})
}

func checkVerified(t *testing.T, tok *Token) {
	t.Helper()
	if tok.Expires.IsZero() || tok.Audience == "" || tok.KeyIndex < 0 {
		t.Fatalf("verified token missing fields: %+v", tok)
	}
	if _, ok := tok.Claim("exp"); !ok {
		t.Fatal("exp claim missing from Claims")
	}
	if got := OpenConnectionClaims(tok); len(got) < len(tok.Claims) {
		t.Fatal("OpenConnectionClaims dropped claims")
	}
	_, _ = tok.Sticky()
	_ = tok.HandshakeTimeout()
	_ = tok.Transports()
	_, _ = tok.AuthExpiry()
	_, _ = tok.MaxPollInterval()
}
