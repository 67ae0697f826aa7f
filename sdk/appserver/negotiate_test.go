package appserver

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/signalrd/signalrd/auth"
)

type negotiateResponse struct {
	NegotiateVersion    *int   `json:"negotiateVersion"`
	URL                 string `json:"url"`
	AccessToken         string `json:"accessToken"`
	AvailableTransports []any  `json:"availableTransports"`
}

func TestNegotiateHandler(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	opts := testOptions(f)
	s := startServer(t, opts, map[string]*Hub{"Chat": {HandshakeTimeout: 20 * time.Second, EnableDetailedErrors: true}})
	f.accept(t)
	waitReady(t, s)

	h := s.NegotiateHandler("Chat", NegotiateOptions{
		UserID: func(r *http.Request) string { return r.Header.Get("X-User") },
		Claims: func(r *http.Request) []auth.Claim {
			return []auth.Claim{{Type: "role", Value: "admin"}, {Type: "aud", Value: "mine"}, {Type: auth.ClaimTypeNameIdentifier, Value: "n1"}}
		},
		Sticky:          auth.StickyRequired,
		Transports:      auth.TransportWebSockets | auth.TransportLongPolling,
		MaxPollInterval: 5 * time.Second,
	})
	req := httptest.NewRequest(http.MethodPost, "http://app.example/chat/negotiate?negotiateVersion=1&x=a+b", nil)
	req.Header.Set("X-User", "user1")
	req.Header.Set("Origin", "http://page.example")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type = %q", ct)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "http://page.example" || res.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("CORS headers = %v", res.Header)
	}
	// System.Text.Json escapes '&' and '+'.
	if !strings.Contains(string(body), `\u0026asrs.op=`) {
		t.Errorf("body does not escape '&' like System.Text.Json: %s", body)
	}
	if !strings.HasPrefix(string(body), `{"negotiateVersion":0,"url":"`) || !strings.HasSuffix(string(body), `","availableTransports":[]}`) {
		t.Errorf("body shape: %s", body)
	}
	var nr negotiateResponse
	if err := json.Unmarshal(body, &nr); err != nil {
		t.Fatal(err)
	}
	if nr.NegotiateVersion == nil || *nr.NegotiateVersion != 0 || nr.AvailableTransports == nil || len(nr.AvailableTransports) != 0 {
		t.Errorf("response = %s", body)
	}
	urlRE := regexp.MustCompile(`^` + regexp.QuoteMeta(f.srv.URL+"/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&x=a+b&asrs_request_id=") + `([A-Za-z0-9%]+)$`)
	m := urlRE.FindStringSubmatch(nr.URL)
	if m == nil {
		t.Fatalf("url = %q", nr.URL)
	}
	if !strings.HasSuffix(m[1], "%3D") {
		t.Errorf("request id %q is not url-encoded base64 of 8 bytes", m[1])
	}
	if raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(m[1], "%3D", "="), "%2B", "+"), "%2F", "/")); err != nil || len(raw) != 8 {
		t.Errorf("request id %q: %v (%d bytes)", m[1], err, len(raw))
	}

	v := auth.Verifier{Keys: []string{testKey}, StrictAudience: true}
	tok, err := v.Verify(nr.AccessToken, auth.KindClient, "chat")
	if err != nil {
		t.Fatalf("client token: %v", err)
	}
	if want := "http://127.0.0.1/client/?hub=chat"; tok.Audience != want {
		t.Errorf("aud = %q, want %q", tok.Audience, want)
	}
	var got []string
	for _, c := range tok.Claims {
		got = append(got, c.Type+"="+c.Value)
	}
	want := []string{
		"asrs.s.uid=user1",
		"asrs.s.sn=" + opts.ServerID,
		"asrs.s.ssticky=Required",
		"asrs.s.cht=20",
		"asrs.s.derror=True",
		"asrs.s.ttl=5",
		"asrs.s.htt=5",
		"role=admin",
		"asrs.u.aud=mine",
		"nameid=n1",
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("claims = %v\nwant prefix %v", got, want)
	}
	if d := tok.Expires.Sub(tok.NotBefore); d != time.Hour {
		t.Errorf("lifetime = %v", d)
	}
}

func TestNegotiateVariants(t *testing.T) {
	t.Parallel()
	f := newFakeService(t)
	s := startServer(t, testOptions(f), map[string]*Hub{"chat": {}})
	f.accept(t)
	waitReady(t, s)
	h := s.NegotiateHandler("chat", NegotiateOptions{})

	tests := []struct {
		name      string
		method    string
		target    string
		status    int
		urlPrefix string
	}{
		{"no query, no path", http.MethodPost, "http://app/negotiate", 200, f.srv.URL + "/client/?hub=chat&asrs_request_id="},
		{"trailing slash", http.MethodPost, "http://app/a/b/negotiate/", 200, f.srv.URL + "/client/?hub=chat&asrs.op=%2Fa%2Fb&asrs_request_id="},
		{"not negotiate path", http.MethodPost, "http://app/chat?negotiateVersion=1", 200, f.srv.URL + "/client/?hub=chat&negotiateVersion=1&asrs_request_id="},
		{"get", http.MethodGet, "http://app/chat/negotiate", http.StatusMethodNotAllowed, ""},
		{"preflight", http.MethodOptions, "http://app/chat/negotiate", http.StatusNoContent, ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.target, nil)
		req.Header.Set("Origin", "http://page")
		req.Header.Set("Access-Control-Request-Headers", "x-requested-with,x-signalr-user-agent")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, w.Code, tt.status, w.Body)
			continue
		}
		if tt.method == http.MethodOptions {
			if w.Header().Get("Access-Control-Allow-Headers") != "x-requested-with,x-signalr-user-agent" || w.Header().Get("Access-Control-Allow-Origin") != "http://page" {
				t.Errorf("preflight headers = %v", w.Header())
			}
		}
		if tt.urlPrefix == "" {
			continue
		}
		var nr negotiateResponse
		if err := json.Unmarshal(w.Body.Bytes(), &nr); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(nr.URL, tt.urlPrefix) {
			t.Errorf("%s: url = %q, want prefix %q", tt.name, nr.URL, tt.urlPrefix)
		}
		tok, err := (&auth.Verifier{Keys: []string{testKey}}).Verify(nr.AccessToken, auth.KindClient, "chat")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tok.Claim("asrs.s.uid"); ok {
			t.Errorf("%s: asrs.s.uid without a user id", tt.name)
		}
		if _, ok := tok.Claim("asrs.s.sn"); ok {
			t.Errorf("%s: sticky claims with sticky disabled", tt.name)
		}
	}

	// Unknown hub and disconnected hub.
	w := httptest.NewRecorder()
	s.NegotiateHandler("nope", NegotiateOptions{}).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "http://app/nope/negotiate", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("unknown hub: %d", w.Code)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "http://app/chat/negotiate", nil))
	if w.Code != http.StatusInternalServerError || w.Body.String() != textNotConnected {
		t.Errorf("disconnected: %d %q", w.Code, w.Body)
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	t.Parallel()
	s, err := New(Options{ConnectionString: "Endpoint=http://localhost;AccessKey=k"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 1000 {
		id := s.requestID()
		if seen[id] {
			t.Fatalf("duplicate request id %q", id)
		}
		seen[id] = true
	}
}

func TestWebUtilityURLEncode(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/chat", "%2Fchat"},
		{"a b+c=d/e", "a+b%2Bc%3Dd%2Fe"},
		{"-_.!*()~'", "-_.!*()%7E%27"},
		{"é", "%C3%A9"},
		{"AAAAAAAAAAA=", "AAAAAAAAAAA%3D"},
	}
	for _, tt := range tests {
		if got := webUtilityURLEncode(tt.in); got != tt.want {
			t.Errorf("webUtilityURLEncode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDotNetJSONString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://h/client/?hub=chat&asrs.op=%2Fchat", `"http://h/client/?hub=chat\u0026asrs.op=%2Fchat"`},
		{`a"b\c`, `"a\u0022b\\c"`},
		{"<>'+`", `"\u003C\u003E\u0027\u002B\u0060"`},
		{"\n\t\x01", `"\n\t\u0001"`},
		{"é😀", `"\u00E9\uD83D\uDE00"`},
		{"eyJhbGciOiJIUzI1NiJ9.e30.sig-_", `"eyJhbGciOiJIUzI1NiJ9.e30.sig-_"`},
	}
	for _, tt := range tests {
		if got := string(appendDotNetJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("appendDotNetJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzDotNetJSONString checks that the escaper always yields JSON that decodes to the input.
func FuzzDotNetJSONString(f *testing.F) {
	for _, s := range []string{"", "a&b", "é😀", "\x00\x7f", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		var got string
		if err := json.Unmarshal(appendDotNetJSONString(nil, s), &got); err != nil || got != s {
			t.Errorf("round trip of %q = %q, %v", s, got, err)
		}
	})
}

func TestHandshakeClaim(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want time.Duration }{
		{0, 15 * time.Second},
		{500 * time.Millisecond, 15 * time.Second},
		{10 * time.Second, 10 * time.Second},
		{31 * time.Second, 15 * time.Second},
		{30*time.Second + 900*time.Millisecond, 30 * time.Second},
	} {
		if got := handshakeClaim(tt.in); got != tt.want {
			t.Errorf("handshakeClaim(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
