package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
)

// aclProbe is one request of each type, sent without a token: 403 means the ACL stopped it, 401
// means it got past the ACL to authentication (so a 403 proves the ACL runs first).
type aclProbe struct {
	name, method, path string
	header             http.Header
	typ                string // request type; "" for the anonymous health probe
}

func aclProbes() []aclProbe {
	return []aclProbe{
		{"negotiate", http.MethodPost, "/client/negotiate?hub=chat&negotiateVersion=1", nil, server.RequestClientConnection},
		{"client transport", http.MethodGet, "/client/?hub=chat&id=abc", nil, server.RequestClientConnection},
		{"server upgrade", http.MethodGet, "/server/?hub=chat", upgradeHeaders(), server.RequestServerConnection},
		{"rest broadcast", http.MethodPost, "/api/hubs/chat/:send?api-version=2022-06-01", http.Header{"Content-Type": {"application/json"}}, server.RequestRESTAPI},
		{"rest v1 group", http.MethodGet, "/api/v1/hubs/chat/groups/g1", nil, server.RequestRESTAPI},
		{"health", http.MethodGet, "/api/health", nil, ""},
		{"health v1 head", http.MethodHead, "/api/v1/health", nil, ""},
	}
}

func aclBool(v bool) *bool { return &v }

func TestNetworkACL(t *testing.T) {
	t.Parallel()
	loopback := []string{"127.0.0.1/32"}
	for _, tc := range []struct {
		name   string
		acl    server.NetworkACL
		denied []string // request types answered 403
	}{
		{"zero value admits all", server.NetworkACL{}, nil},
		{"public on explicitly", server.NetworkACL{PublicAccess: aclBool(true)}, nil},
		{"public off denies all", server.NetworkACL{PublicAccess: aclBool(false)},
			[]string{server.RequestClientConnection, server.RequestServerConnection, server.RequestRESTAPI}},
		{"public off, loopback allowed per type", server.NetworkACL{PublicAccess: aclBool(false),
			ClientConnection: server.NetworkRule{Allow: loopback}, ServerConnection: server.NetworkRule{Allow: loopback},
			RESTAPI: server.NetworkRule{Allow: loopback}}, nil},
		{"public off, only clients allowed", server.NetworkACL{PublicAccess: aclBool(false),
			ClientConnection: server.NetworkRule{Allow: []string{"127.0.0.0/8"}}},
			[]string{server.RequestServerConnection, server.RequestRESTAPI}},
		{"public off, bare IPs for servers and REST", server.NetworkACL{PublicAccess: aclBool(false),
			ServerConnection: server.NetworkRule{Allow: []string{"::1", "127.0.0.1"}}, RESTAPI: server.NetworkRule{Allow: []string{"10.0.0.0/8", "127.0.0.1"}}},
			[]string{server.RequestClientConnection}},
		{"public on, servers restricted to another range", server.NetworkACL{
			ServerConnection: server.NetworkRule{Allow: []string{"10.0.0.0/8", "fd00::/8"}}},
			[]string{server.RequestServerConnection}},
		{"public on, REST restricted, trace rule irrelevant here", server.NetworkACL{
			RESTAPI: server.NetworkRule{Allow: []string{"192.0.2.0/24"}}, Trace: server.NetworkRule{Allow: []string{"192.0.2.1"}}},
			[]string{server.RequestRESTAPI}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := servertest.Start(t, server.Config{Instances: []server.InstanceConfig{{Name: "acl", Network: tc.acl}}})
			hc := newHTTPClient(t)
			for _, p := range aclProbes() {
				want := http.StatusUnauthorized
				switch {
				case p.typ == "":
					want = http.StatusOK
				case slices.Contains(tc.denied, p.typ):
					want = http.StatusForbidden
				}
				status, hdr, body := aclDo(t, hc, ts.URL, p, "")
				if status != want {
					t.Errorf("%s: status %d %q, want %d", p.name, status, body, want)
					continue
				}
				if want != http.StatusForbidden {
					continue
				}
				if p.typ == server.RequestRESTAPI {
					var ed struct{ Code, Message string }
					if err := json.Unmarshal([]byte(body), &ed); err != nil || ed.Code != "Error.Request.Forbidden" ||
						hdr.Get("x-ms-error-code") != "Error.Request.Forbidden" || !strings.Contains(ed.Message, "RESTAPI") {
						t.Errorf("%s: REST 403 body %q header %q: %v", p.name, body, hdr.Get("x-ms-error-code"), err)
					}
				} else if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || !strings.Contains(body, p.typ) {
					t.Errorf("%s: 403 %q (%s), want a text body naming %s", p.name, body, hdr.Get("Content-Type"), p.typ)
				}
			}
		})
	}
}

// TestNetworkACLDeniesValidTokens: a valid token does not get a denied request through, and an
// admitted one works normally.
func TestNetworkACLDeniesValidTokens(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Instances: []server.InstanceConfig{{Name: "acl", Network: server.NetworkACL{
		PublicAccess:     aclBool(false),
		ClientConnection: server.NetworkRule{Allow: []string{"127.0.0.1"}},
	}}}})
	hc := newHTTPClient(t)
	neg := aclProbes()[0]
	if status, _, body := aclDo(t, hc, ts.URL, neg, tokenWith(t, ts, "chat", auth.IssueOptions{})); status != http.StatusOK {
		t.Fatalf("admitted negotiate with token: %d %q", status, body)
	}
	rest := aclProbes()[3]
	if status, _, body := aclDo(t, hc, ts.URL, rest, sdkToken(t, ts.Key, "/api/hubs/chat/:send?api-version=2022-06-01")); status != http.StatusForbidden {
		t.Fatalf("denied REST with token: %d %q", status, body)
	}
}

// TestNetworkACLPerInstance: each tenant has its own ACL, picked by Host.
func TestNetworkACLPerInstance(t *testing.T) {
	t.Parallel()
	ts := servertest.Start(t, server.Config{Instances: []server.InstanceConfig{
		{Name: "closed", Hosts: []string{"closed.example"}, PrimaryKey: "keyClosed", Network: server.NetworkACL{PublicAccess: aclBool(false)}},
		{Name: "open", Default: true, PrimaryKey: "keyOpen"},
	}})
	hc := newHTTPClient(t)
	for _, tc := range []struct {
		host string
		want int
	}{{"closed.example", http.StatusForbidden}, {"CLOSED.example:443", http.StatusForbidden}, {"other.example", http.StatusUnauthorized}} {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/client/negotiate?hub=chat", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("host %s: %d, want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
}

func TestNetworkACLValidation(t *testing.T) {
	t.Parallel()
	cfg := server.Config{Instances: []server.InstanceConfig{{Name: "a", Default: true, PrimaryKey: "k", Network: server.NetworkACL{
		ClientConnection: server.NetworkRule{Allow: []string{"10.0.0.0/8", "not-an-ip"}},
		ServerConnection: server.NetworkRule{Allow: []string{"10.0.0.0/33"}},
		RESTAPI:          server.NetworkRule{Allow: []string{"fe80::1%eth0", "::1", "10.1.2.3/8"}},
		Trace:            server.NetworkRule{Allow: []string{""}},
	}}}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid ranges accepted")
	}
	for _, want := range []string{`ClientConnection allow[1]: "not-an-ip"`, `ServerConnection allow[0]: "10.0.0.0/33"`,
		`RESTAPI allow[0]: "fe80::1%eth0"`, `Trace allow[0]: ""`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Count(err.Error(), "\n") != 3 {
		t.Errorf("want exactly four problems:\n%v", err)
	}
	if _, err := server.New(cfg); err == nil {
		t.Fatal("New accepted invalid ranges")
	}
}

// TestNetworkACLBehindProxy: behind a trusted proxy the ACL judges the forwarded client
// address; from anyone else X-Forwarded-For is ignored.
func TestNetworkACLBehindProxy(t *testing.T) {
	t.Parallel()
	network := server.NetworkACL{PublicAccess: aclBool(false), ClientConnection: server.NetworkRule{Allow: []string{"203.0.113.0/24"}}}
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     string
		want    int
	}{
		{"trusted proxy, allowed client", []string{"127.0.0.1"}, "203.0.113.5", http.StatusUnauthorized},
		{"trusted proxy, other client", []string{"127.0.0.1"}, "198.51.100.1", http.StatusForbidden},
		{"trusted proxy, no header", []string{"127.0.0.1"}, "", http.StatusForbidden},
		{"untrusted peer forging the header", nil, "203.0.113.5", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := servertest.Start(t, server.Config{TrustedProxies: tc.trusted, Instances: []server.InstanceConfig{{Name: "acl", Network: network}}})
			p := aclProbes()[0]
			if tc.xff != "" {
				p.header = http.Header{"X-Forwarded-For": {tc.xff}}
			}
			if status, _, body := aclDo(t, newHTTPClient(t), ts.URL, p, ""); status != tc.want {
				t.Fatalf("status %d %q, want %d", status, body, tc.want)
			}
		})
	}
}

// aclDo sends p with an optional bearer token and returns status, headers and body.
func aclDo(t *testing.T, hc *http.Client, base string, p aclProbe, tok string) (int, http.Header, string) {
	t.Helper()
	body := io.Reader(nil)
	if p.method == http.MethodPost {
		body = strings.NewReader(`{"target":"x","arguments":[]}`)
	}
	req, err := http.NewRequest(p.method, base+p.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
