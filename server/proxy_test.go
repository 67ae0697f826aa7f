package server

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/auth"
)

func newProxyTestServer(t *testing.T, trusted ...string) *Server {
	t.Helper()
	s, err := New(Config{
		TrustedProxies: trusted,
		Instances: []InstanceConfig{
			{Name: "main", Default: true, PrimaryKey: DevAccessKey},
			{Name: "other", Hosts: []string{"other.example"}, PrimaryKey: strings.Repeat("K", 44)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func TestTrustedProxyHeaders(t *testing.T) {
	t.Parallel()
	s := newProxyTestServer(t, "10.0.0.0/8", "192.0.2.7", "::1")
	for _, tc := range []struct {
		name       string
		remote     string
		tls        bool
		xff, xfh   string
		xfp        string
		wantAddr   string
		wantFor    string
		wantHost   string
		wantScheme string
	}{
		{"untrusted ignores everything", "203.0.113.5:4000", false, "1.2.3.4", "other.example", "https",
			"203.0.113.5", "203.0.113.5", "svc.example", "http"},
		{"untrusted tls", "203.0.113.5:4000", true, "", "", "http", "203.0.113.5", "203.0.113.5", "svc.example", "https"},
		{"trusted, no headers", "10.1.2.3:80", false, "", "", "", "10.1.2.3", "10.1.2.3", "svc.example", "http"},
		{"trusted proxy", "10.1.2.3:80", false, "198.51.100.9", "other.example:443, inner", "https, http",
			"198.51.100.9", "198.51.100.9, 10.1.2.3", "other.example:443", "https"},
		{"chain of trusted proxies", "192.0.2.7:1", false, "198.51.100.9, 10.9.9.9", "", "",
			"198.51.100.9", "198.51.100.9, 10.9.9.9, 192.0.2.7", "svc.example", "http"},
		{"forged left entry is not the client", "10.1.2.3:80", false, "6.6.6.6, 198.51.100.9", "", "",
			"198.51.100.9", "6.6.6.6, 198.51.100.9, 10.1.2.3", "svc.example", "http"},
		{"all hops trusted", "10.1.2.3:80", false, "10.4.4.4", "", "", "10.4.4.4", "10.4.4.4, 10.1.2.3", "svc.example", "http"},
		{"garbage hop stops the walk", "10.1.2.3:80", false, "198.51.100.9, unknown, 10.5.5.5", "", "",
			"10.5.5.5", "198.51.100.9, unknown, 10.5.5.5, 10.1.2.3", "svc.example", "http"},
		{"hop with port", "10.1.2.3:80", false, "[2001:db8::1]:5000", "", "", "2001:db8::1", "[2001:db8::1]:5000, 10.1.2.3", "svc.example", "http"},
		{"ipv6 loopback proxy", "[::1]:9", false, "198.51.100.9", "", "HTTPS", "198.51.100.9", "198.51.100.9, ::1", "svc.example", "https"},
		{"proxy says http over tls", "10.1.2.3:80", true, "", "", "http", "10.1.2.3", "10.1.2.3", "svc.example", "http"},
		{"unknown proto ignored", "10.1.2.3:80", true, "", "", "gopher", "10.1.2.3", "10.1.2.3", "svc.example", "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "http://svc.example/client/?hub=chat", nil)
			r.RemoteAddr = tc.remote
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range map[string]string{"X-Forwarded-For": tc.xff, "X-Forwarded-Host": tc.xfh, "X-Forwarded-Proto": tc.xfp} {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			if a, ok := s.clientAddr(r); !ok || a.String() != tc.wantAddr {
				t.Errorf("clientAddr = %v %v, want %s", a, ok, tc.wantAddr)
			}
			if got := s.forwardedFor(r); got != tc.wantFor {
				t.Errorf("forwardedFor = %q, want %q", got, tc.wantFor)
			}
			if got := s.requestHost(r); got != tc.wantHost {
				t.Errorf("requestHost = %q, want %q", got, tc.wantHost)
			}
			if got := s.requestScheme(r); got != tc.wantScheme {
				t.Errorf("requestScheme = %q, want %q", got, tc.wantScheme)
			}
		})
	}
}

// TestForwardedHostPicksInstance: only a trusted proxy's X-Forwarded-Host selects a tenant.
func TestForwardedHostPicksInstance(t *testing.T) {
	t.Parallel()
	s := newProxyTestServer(t, "10.0.0.0/8")
	otherTok, err := auth.IssueToken(strings.Repeat("K", 44), auth.IssueOptions{Audience: "http://other.example/client/?hub=chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote, host, xfh string
		want                    int
	}{
		{"host picks other", "203.0.113.5:1", "other.example", "", http.StatusOK},
		{"untrusted forwarded host ignored", "203.0.113.5:1", "svc.example", "other.example", http.StatusUnauthorized},
		{"trusted forwarded host picks other", "10.0.0.1:1", "svc.example", "other.example", http.StatusOK},
		{"trusted forwarded host picks main", "10.0.0.1:1", "other.example", "svc.example", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "http://"+tc.host+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("Authorization", "Bearer "+otherTok)
			if tc.xfh != "" {
				r.Header.Set("X-Forwarded-Host", tc.xfh)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
		})
	}
}

func TestTrustedProxiesValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		entries []string
		bad     string
	}{
		{[]string{"10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "::ffff:10.0.0.0/104"}, ""},
		{[]string{"10.0.0.0/33"}, "10.0.0.0/33"},
		{[]string{"proxy.example"}, "proxy.example"},
		{[]string{"fe80::1%eth0"}, "fe80::1%eth0"},
	} {
		err := Config{TrustedProxies: tc.entries}.Validate()
		if tc.bad == "" && err != nil {
			t.Errorf("%q: %v", tc.entries, err)
		}
		if tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%q: err = %v, want one naming %q", tc.entries, err, tc.bad)
		}
	}
	p, _ := parseAddrRange("::ffff:10.0.0.0/104")
	if p.String() != "10.0.0.0/8" {
		t.Errorf("mapped prefix = %s", p)
	}
}
