package auth

import (
	"reflect"
	"testing"
	"time"
)

func TestClientClaimsOrderAndValues(t *testing.T) {
	t.Parallel()
	aeo := time.Unix(1_700_003_600, 0)
	got := ClientClaims("u1", []Claim{
		{"name", "Alice"},
		{"sub", "first"},
		{"aud", "a"}, {"exp", "e"}, {"iat", "i"}, {"nbf", "n"}, {"iss", "s"},
		{"actort", "x"}, {"acr", "x"}, {"azp", "x"}, {"c_hash", "x"}, {"jti", "x"}, {"nonce", "x"},
		{"sub", "second"},
		{"Sub", "case-sensitive"},
		{"asrs.s.uid", "spoof"},
	}, ClientClaimOptions{
		ServerName: "srv", Sticky: StickyPreferred, DiagnosticClient: true, HandshakeTimeout: 25 * time.Second,
		AuthenticationType: "Cookies", EndpointCount: 2, DetailedErrors: true,
		NameClaimType: "name", RoleClaimType: "role", MaxPollInterval: 5 * time.Second,
		Transports: TransportWebSockets | TransportLongPolling, CloseOnAuthExpiration: true, AuthExpiresOn: aeo,
	})
	want := []Claim{
		{"asrs.s.uid", "u1"},
		{"asrs.s.sn", "srv"}, {"asrs.s.ssticky", "Preferred"},
		{"asrs.s.dc", "true"},
		{"asrs.s.cht", "25"},
		{"asrs.s.aut", "Cookies"},
		{"asrs.s.secn", "2"},
		{"asrs.s.derror", "True"},
		{"asrs.s.nt", "name"}, {"asrs.s.rt", "role"},
		{"asrs.s.ttl", "5"},
		{"asrs.s.htt", "5"},
		{"asrs.s.coae", "true"}, {"asrs.s.aeo", "1700003600"},
		{"name", "Alice"},
		{"sub", "first"},
		{"asrs.u.aud", "a"}, {"asrs.u.exp", "e"}, {"asrs.u.iat", "i"}, {"asrs.u.nbf", "n"}, {"asrs.u.iss", "s"},
		{"asrs.u.actort", "x"}, {"asrs.u.acr", "x"}, {"asrs.u.azp", "x"}, {"asrs.u.c_hash", "x"}, {"asrs.u.jti", "x"}, {"asrs.u.nonce", "x"},
		{"asrs.u.sub", "second"},
		{"Sub", "case-sensitive"},
		{"asrs.s.uid", "spoof"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClientClaims =\n%q\nwant\n%q", got, want)
	}
}

func TestClientClaimsDefaultsOmitted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		uid  string
		opts ClientClaimOptions
		want []Claim
	}{
		{"nothing", "", ClientClaimOptions{}, []Claim{}},
		{"sticky without server", "", ClientClaimOptions{Sticky: StickyRequired}, []Claim{}},
		{"server without sticky", "", ClientClaimOptions{ServerName: "s"}, []Claim{}},
		{"default handshake", "", ClientClaimOptions{HandshakeTimeout: 15 * time.Second}, []Claim{}},
		{"bearer auth type", "", ClientClaimOptions{AuthenticationType: "Bearer"}, []Claim{}},
		{"single endpoint", "", ClientClaimOptions{EndpointCount: 1}, []Claim{}},
		{"default claim types", "", ClientClaimOptions{NameClaimType: DefaultNameClaimType, RoleClaimType: DefaultRoleClaimType}, []Claim{}},
		{"coae without time", "", ClientClaimOptions{CloseOnAuthExpiration: true}, []Claim{}},
		{"uid only", "bob", ClientClaimOptions{}, []Claim{{ClaimUserID, "bob"}}},
	}
	for _, tt := range tests {
		if got := ClientClaims(tt.uid, nil, tt.opts); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ClientClaims = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestServerClaims(t *testing.T) {
	t.Parallel()
	if got := ServerClaims(""); got != nil {
		t.Errorf("ServerClaims(\"\") = %q", got)
	}
	if got, want := ServerClaims("srv"), []Claim{{"nameid", "srv"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServerClaims = %q, want %q", got, want)
	}
}

func TestOpenConnectionClaims(t *testing.T) {
	t.Parallel()
	tok := &Token{Claims: []Claim{
		{"asrs.s.uid", "u"},
		{"sub", "s"},
		{"role", "r1"}, {"role", "r2"},
		{"roles", "r3"},
		{"unique_name", "n"},
		{"email", "e"},
		{"family_name", "f"},
		{"given_name", "g"},
		{"nameid", "id"},
		{"custom", "c"},
		{"aud", "x"},
	}}
	const (
		ns   = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
		role = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	)
	want := []Claim{
		{"asrs.s.uid", "u"},
		{"sub", "s"}, {ns + "nameidentifier", "s"},
		{"role", "r1"}, {role, "r1"}, {"role", "r2"}, {role, "r2"},
		{"roles", "r3"}, {role, "r3"},
		{"unique_name", "n"}, {ns + "name", "n"},
		{"email", "e"}, {ns + "emailaddress", "e"},
		{"family_name", "f"}, {ns + "surname", "f"},
		{"given_name", "g"}, {ns + "givenname", "g"},
		{"nameid", "id"}, {ns + "nameidentifier", "id"},
		{"custom", "c"},
		{"aud", "x"},
	}
	if got := OpenConnectionClaims(tok); !reflect.DeepEqual(got, want) {
		t.Errorf("OpenConnectionClaims =\n%q\nwant\n%q", got, want)
	}
	if OpenConnectionClaims(nil) != nil {
		t.Error("OpenConnectionClaims(nil) != nil")
	}
}

func TestClaimTypeMaps(t *testing.T) {
	t.Parallel()
	if n := len(shortToLong); n != 73 {
		t.Errorf("inbound table has %d entries, ClaimTypeMapping.cs has 73", n)
	}
	inbound := []struct{ short, long string }{
		{"actort", "http://schemas.xmlsoap.org/ws/2009/09/identity/claims/actor"},
		{"upn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"},
		{"winaccountname", "http://schemas.microsoft.com/ws/2008/06/identity/claims/windowsaccountname"},
		{"oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"},
		{"certthumbprint", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/thumbprint"},
	}
	for _, c := range inbound {
		if got, ok := InboundClaimType(c.short); !ok || got != c.long {
			t.Errorf("InboundClaimType(%q) = %q, %v; want %q", c.short, got, ok, c.long)
		}
	}
	outbound := []struct{ long, short string }{
		{ClaimTypeNameIdentifier, "nameid"},
		{DefaultRoleClaimType, "role"},
		{DefaultNameClaimType, "unique_name"},
		{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "email"},
	}
	for _, c := range outbound {
		if got, ok := OutboundClaimType(c.long); !ok || got != c.short {
			t.Errorf("OutboundClaimType(%q) = %q, %v; want %q", c.long, got, ok, c.short)
		}
	}
	if _, ok := InboundClaimType("name"); ok {
		t.Error(`"name" must not be mapped (not in ClaimTypeMapping.cs)`)
	}
}

func TestTokenSticky(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		claims []Claim
		mode   StickyMode
		server string
	}{
		{"none", nil, StickyDisabled, ""},
		{"preferred", []Claim{{ClaimServerName, "s1"}, {ClaimSticky, "Preferred"}}, StickyPreferred, "s1"},
		{"required", []Claim{{ClaimSticky, "Required"}, {ClaimServerName, "s2"}}, StickyRequired, "s2"},
		{"case-insensitive", []Claim{{ClaimServerName, "s"}, {ClaimSticky, "required"}}, StickyRequired, "s"},
		{"numeric", []Claim{{ClaimServerName, "s"}, {ClaimSticky, "1"}}, StickyPreferred, "s"},
		{"mode without server", []Claim{{ClaimSticky, "Required"}}, StickyDisabled, ""},
		{"server without mode", []Claim{{ClaimServerName, "s"}}, StickyDisabled, ""},
		{"unknown mode", []Claim{{ClaimServerName, "s"}, {ClaimSticky, "Always"}}, StickyDisabled, ""},
		{"disabled", []Claim{{ClaimServerName, "s"}, {ClaimSticky, "Disabled"}}, StickyDisabled, ""},
	}
	for _, tt := range tests {
		mode, server := (&Token{Claims: tt.claims}).Sticky()
		if mode != tt.mode || server != tt.server {
			t.Errorf("%s: Sticky() = %v, %q; want %v, %q", tt.name, mode, server, tt.mode, tt.server)
		}
	}
}

func TestTokenSystemClaimAccessors(t *testing.T) {
	t.Parallel()
	tok := func(c ...Claim) *Token { return &Token{Claims: c} }
	if d := tok().HandshakeTimeout(); d != 15*time.Second {
		t.Errorf("default HandshakeTimeout = %v", d)
	}
	for in, want := range map[string]time.Duration{"20": 20 * time.Second, "0": time.Second, "99": 30 * time.Second, "x": 15 * time.Second} {
		if d := tok(Claim{ClaimHandshakeTimeout, in}).HandshakeTimeout(); d != want {
			t.Errorf("HandshakeTimeout(%q) = %v, want %v", in, d, want)
		}
	}
	if d, ok := tok(Claim{ClaimMaxPollInterval, "7"}).MaxPollInterval(); !ok || d != 7*time.Second {
		t.Errorf("MaxPollInterval = %v, %v", d, ok)
	}
	if _, ok := tok(Claim{ClaimMaxPollInterval, "-1"}).MaxPollInterval(); ok {
		t.Error("negative MaxPollInterval accepted")
	}
	if _, ok := tok().MaxPollInterval(); ok {
		t.Error("absent MaxPollInterval reported")
	}
	for in, want := range map[string]TransportType{"1": TransportWebSockets, "6": TransportServerSentEvents | TransportLongPolling, "0": TransportAll, "8": TransportAll, "z": TransportAll} {
		if got := tok(Claim{ClaimTransports, in}).Transports(); got != want {
			t.Errorf("Transports(%q) = %v, want %v", in, got, want)
		}
	}
	if got := tok().Transports(); got != TransportAll {
		t.Errorf("absent Transports = %v", got)
	}
	if at, ok := tok(Claim{ClaimCloseOnAuthExpire, "true"}, Claim{ClaimAuthExpiresOn, "1700003600"}).AuthExpiry(); !ok || at.Unix() != 1700003600 {
		t.Errorf("AuthExpiry = %v, %v", at, ok)
	}
	if _, ok := tok(Claim{ClaimAuthExpiresOn, "1700003600"}).AuthExpiry(); ok {
		t.Error("AuthExpiry without coae reported")
	}
	if !tok(Claim{ClaimDiagnosticClient, "true"}).DiagnosticClient() || tok().DiagnosticClient() {
		t.Error("DiagnosticClient wrong")
	}
	if !tok(Claim{ClaimDetailedErrors, "True"}).DetailedErrors() || tok(Claim{ClaimDetailedErrors, "False"}).DetailedErrors() {
		t.Error("DetailedErrors wrong")
	}
}

func TestStickyModeString(t *testing.T) {
	t.Parallel()
	for m, want := range map[StickyMode]string{StickyDisabled: "Disabled", StickyPreferred: "Preferred", StickyRequired: "Required", 7: "StickyMode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}
