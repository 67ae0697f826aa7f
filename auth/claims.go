package auth

import (
	"strconv"
	"strings"
	"time"
)

// Claim is one JWT claim as the service protocol carries it (type and string value).
type Claim struct{ Type, Value string }

// System claims (Constants.ClaimType in the SDK; service-protocol.md §4.3).
const (
	ClaimSysPrefix  = "asrs.s."
	ClaimUserPrefix = "asrs.u." // user claims renamed to dodge reserved JWT names

	ClaimAuthenticationType = "asrs.s.aut"     // ClaimsIdentity.AuthenticationType unless "Bearer"
	ClaimNameType           = "asrs.s.nt"      // custom name claim type
	ClaimRoleType           = "asrs.s.rt"      // custom role claim type
	ClaimUserID             = "asrs.s.uid"     // user id for user routing
	ClaimServerName         = "asrs.s.sn"      // sticky target server id
	ClaimSticky             = "asrs.s.ssticky" // "Preferred" or "Required"
	ClaimID                 = "asrs.s.id"      // legacy request id
	ClaimAppName            = "asrs.s.apn"     // ASP.NET (System.Web) SDK only
	ClaimVersion            = "asrs.s.vn"      // ASP.NET (System.Web) SDK only
	ClaimDetailedErrors     = "asrs.s.derror"  // "True": hub EnableDetailedErrors
	ClaimEndpointCount      = "asrs.s.secn"    // endpoint count when > 1
	ClaimMaxPollInterval    = "asrs.s.ttl"     // LongPolling idle timeout, seconds
	ClaimDiagnosticClient   = "asrs.s.dc"      // "true": diagnostic client
	ClaimHandshakeTimeout   = "asrs.s.cht"     // client hub-handshake timeout, seconds (when != 15)
	ClaimTransports         = "asrs.s.htt"     // HttpTransportType bitmask
	ClaimCloseOnAuthExpire  = "asrs.s.coae"    // "true": close the client at ClaimAuthExpiresOn
	ClaimAuthExpiresOn      = "asrs.s.aeo"     // unix seconds
)

// Standard short JWT names used by issuance and user-id lookup.
const (
	ClaimNameID = "nameid"
	ClaimSub    = "sub"
	// ClaimTypeNameIdentifier is .NET's ClaimTypes.NameIdentifier.
	ClaimTypeNameIdentifier = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
	// DefaultNameClaimType and DefaultRoleClaimType are ClaimsIdentity's defaults.
	DefaultNameClaimType = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	DefaultRoleClaimType = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
)

// DefaultHandshakeTimeout is the client hub-handshake timeout when the token has no asrs.s.cht.
const DefaultHandshakeTimeout = 15 * time.Second

// MaxHandshakeTimeout is the largest custom handshake timeout the SDK allows.
const MaxHandshakeTimeout = 30 * time.Second

// TransportType is the HttpTransportType bitmask carried in asrs.s.htt.
type TransportType int

const (
	TransportWebSockets       TransportType = 1
	TransportServerSentEvents TransportType = 2
	TransportLongPolling      TransportType = 4
	TransportAll                            = TransportWebSockets | TransportServerSentEvents | TransportLongPolling
)

// StickyMode is the SDK's ServerStickyMode.
type StickyMode int

const (
	StickyDisabled StickyMode = iota
	StickyPreferred
	StickyRequired
)

func (m StickyMode) String() string {
	switch m {
	case StickyDisabled:
		return "Disabled"
	case StickyPreferred:
		return "Preferred"
	case StickyRequired:
		return "Required"
	}
	return "StickyMode(" + strconv.Itoa(int(m)) + ")"
}

// shortToLong is the inbound claim-type map of the SDK's Auth/ClaimTypeMapping.cs (itself a copy
// of System.IdentityModel.Tokens.Jwt 6.22.0), with the .NET ClaimTypes constants spelled out.
// Order matters only for longToShort: the first short name listed for a long type wins.
var shortToLong = []struct{ short, long string }{
	{"actort", "http://schemas.xmlsoap.org/ws/2009/09/identity/claims/actor"},
	{"birthdate", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/dateofbirth"},
	{"email", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"},
	{"family_name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"},
	{"gender", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/gender"},
	{"given_name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"},
	{"nameid", ClaimTypeNameIdentifier},
	{"sub", ClaimTypeNameIdentifier},
	{"website", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/webpage"},
	{"unique_name", DefaultNameClaimType},
	{"oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"},
	{"scp", "http://schemas.microsoft.com/identity/claims/scope"},
	{"tid", "http://schemas.microsoft.com/identity/claims/tenantid"},
	{"acr", "http://schemas.microsoft.com/claims/authnclassreference"},
	{"adfs1email", "http://schemas.xmlsoap.org/claims/EmailAddress"},
	{"adfs1upn", "http://schemas.xmlsoap.org/claims/UPN"},
	{"amr", "http://schemas.microsoft.com/claims/authnmethodsreferences"},
	{"authmethod", "http://schemas.microsoft.com/ws/2008/06/identity/claims/authenticationmethod"},
	{"certapppolicy", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/applicationpolicy"},
	{"certauthoritykeyidentifier", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/authoritykeyidentifier"},
	{"certbasicconstraints", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/basicconstraints"},
	{"certeku", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/eku"},
	{"certissuer", "http://schemas.microsoft.com/2012/12/certificatecontext/field/issuer"},
	{"certissuername", "http://schemas.microsoft.com/2012/12/certificatecontext/field/issuername"},
	{"certkeyusage", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/keyusage"},
	{"certnotafter", "http://schemas.microsoft.com/2012/12/certificatecontext/field/notafter"},
	{"certnotbefore", "http://schemas.microsoft.com/2012/12/certificatecontext/field/notbefore"},
	{"certpolicy", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/certificatepolicy"},
	{"certpublickey", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/rsa"},
	{"certrawdata", "http://schemas.microsoft.com/2012/12/certificatecontext/field/rawdata"},
	{"certserialnumber", "http://schemas.microsoft.com/ws/2008/06/identity/claims/serialnumber"},
	{"certsignaturealgorithm", "http://schemas.microsoft.com/2012/12/certificatecontext/field/signaturealgorithm"},
	{"certsubject", "http://schemas.microsoft.com/2012/12/certificatecontext/field/subject"},
	{"certsubjectaltname", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/san"},
	{"certsubjectkeyidentifier", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/subjectkeyidentifier"},
	{"certsubjectname", "http://schemas.microsoft.com/2012/12/certificatecontext/field/subjectname"},
	{"certtemplateinformation", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/certificatetemplateinformation"},
	{"certtemplatename", "http://schemas.microsoft.com/2012/12/certificatecontext/extension/certificatetemplatename"},
	{"certthumbprint", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/thumbprint"},
	{"certx509version", "http://schemas.microsoft.com/2012/12/certificatecontext/field/x509version"},
	{"clientapplication", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-client-application"},
	{"clientip", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-client-ip"},
	{"clientuseragent", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-client-user-agent"},
	{"commonname", "http://schemas.xmlsoap.org/claims/CommonName"},
	{"denyonlyprimarygroupsid", "http://schemas.microsoft.com/ws/2008/06/identity/claims/denyonlyprimarygroupsid"},
	{"denyonlyprimarysid", "http://schemas.microsoft.com/ws/2008/06/identity/claims/denyonlyprimarysid"},
	{"denyonlysid", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/denyonlysid"},
	{"devicedispname", "http://schemas.microsoft.com/2012/01/devicecontext/claims/displayname"},
	{"deviceid", "http://schemas.microsoft.com/2012/01/devicecontext/claims/identifier"},
	{"deviceismanaged", "http://schemas.microsoft.com/2012/01/devicecontext/claims/ismanaged"},
	{"deviceostype", "http://schemas.microsoft.com/2012/01/devicecontext/claims/ostype"},
	{"deviceosver", "http://schemas.microsoft.com/2012/01/devicecontext/claims/osversion"},
	{"deviceowner", "http://schemas.microsoft.com/2012/01/devicecontext/claims/userowner"},
	{"deviceregid", "http://schemas.microsoft.com/2012/01/devicecontext/claims/registrationid"},
	{"endpointpath", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-endpoint-absolute-path"},
	{"forwardedclientip", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-forwarded-client-ip"},
	{"group", "http://schemas.xmlsoap.org/claims/Group"},
	{"groupsid", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groupsid"},
	{"idp", "http://schemas.microsoft.com/identity/claims/identityprovider"},
	{"insidecorporatenetwork", "http://schemas.microsoft.com/ws/2012/01/insidecorporatenetwork"},
	{"isregistereduser", "http://schemas.microsoft.com/2012/01/devicecontext/claims/isregistereduser"},
	{"ppid", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/privatepersonalidentifier"},
	{"primarygroupsid", "http://schemas.microsoft.com/ws/2008/06/identity/claims/primarygroupsid"},
	{"primarysid", "http://schemas.microsoft.com/ws/2008/06/identity/claims/primarysid"},
	{"proxy", "http://schemas.microsoft.com/2012/01/requestcontext/claims/x-ms-proxy"},
	{"pwdchgurl", "http://schemas.microsoft.com/ws/2012/01/passwordchangeurl"},
	{"pwdexpdays", "http://schemas.microsoft.com/ws/2012/01/passwordexpirationdays"},
	{"pwdexptime", "http://schemas.microsoft.com/ws/2012/01/passwordexpirationtime"},
	{"relyingpartytrustid", "http://schemas.microsoft.com/2012/01/requestcontext/claims/relyingpartytrustid"},
	{"role", DefaultRoleClaimType},
	{"roles", DefaultRoleClaimType},
	{"upn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"},
	{"winaccountname", "http://schemas.microsoft.com/ws/2008/06/identity/claims/windowsaccountname"},
}

// Lookup tables are built from shortToLong by pure functions; nothing mutates them afterwards.
var (
	inboundClaimMap  = buildInbound()
	outboundClaimMap = buildOutbound()
)

func buildInbound() map[string]string {
	m := make(map[string]string, len(shortToLong))
	for _, e := range shortToLong {
		m[e.short] = e.long
	}
	return m
}

func buildOutbound() map[string]string {
	m := make(map[string]string, len(shortToLong))
	for _, e := range shortToLong {
		if _, ok := m[e.long]; !ok {
			m[e.long] = e.short
		}
	}
	return m
}

// InboundClaimType returns the long .NET claim type for a short JWT claim name (e.g. "sub" →
// ClaimTypeNameIdentifier), as JwtSecurityTokenHandler's default inbound map does.
func InboundClaimType(short string) (string, bool) {
	long, ok := inboundClaimMap[short]
	return long, ok
}

// OutboundClaimType returns the short JWT name the SDK writes for a long .NET claim type (e.g.
// ClaimTypeNameIdentifier → "nameid", DefaultRoleClaimType → "role").
func OutboundClaimType(long string) (string, bool) {
	short, ok := outboundClaimMap[long]
	return short, ok
}

// reservedClaims are the JWT names a user claim may not use; ClaimsUtility renames them to
// "asrs.u.<name>" so the app server can restore them.
var reservedClaims = map[string]bool{
	"aud": true, "exp": true, "iat": true, "nbf": true, "iss": true,
	"actort": true, "acr": true, "azp": true, "c_hash": true, "jti": true, "nonce": true,
}

// ClientClaimOptions are the negotiate-time inputs of ClaimsUtility.BuildJwtClaims.
type ClientClaimOptions struct {
	// ServerName and Sticky produce asrs.s.sn + asrs.s.ssticky when both are set.
	ServerName string
	Sticky     StickyMode
	// DiagnosticClient adds asrs.s.dc=true.
	DiagnosticClient bool
	// HandshakeTimeout adds asrs.s.cht (whole seconds) unless zero or the 15 s default.
	HandshakeTimeout time.Duration
	// AuthenticationType adds asrs.s.aut unless empty or "Bearer".
	AuthenticationType string
	// EndpointCount adds asrs.s.secn when > 1.
	EndpointCount int
	// DetailedErrors adds asrs.s.derror=True.
	DetailedErrors bool
	// NameClaimType / RoleClaimType add asrs.s.nt / asrs.s.rt unless empty or the .NET default.
	NameClaimType, RoleClaimType string
	// MaxPollInterval adds asrs.s.ttl (whole seconds) when > 0.
	MaxPollInterval time.Duration
	// Transports adds asrs.s.htt when non-zero.
	Transports TransportType
	// CloseOnAuthExpiration with a non-zero AuthExpiresOn adds asrs.s.coae=true + asrs.s.aeo.
	CloseOnAuthExpiration bool
	AuthExpiresOn         time.Time
}

// ClientClaims builds a client token's claim list in BuildJwtClaims order: uid, sn, ssticky, dc,
// cht, aut, secn, derror, nt, rt, ttl, htt, coae, aeo, then the user's claims. A user claim named
// like a reserved JWT claim, and every "sub" after the first, is renamed to "asrs.u.<name>".
// An empty userID means "no user id" (the SDK only omits it for null).
func ClientClaims(userID string, extra []Claim, opts ClientClaimOptions) []Claim {
	out := make([]Claim, 0, len(extra)+4)
	if userID != "" {
		out = append(out, Claim{ClaimUserID, userID})
	}
	if opts.ServerName != "" && opts.Sticky != StickyDisabled {
		out = append(out, Claim{ClaimServerName, opts.ServerName}, Claim{ClaimSticky, opts.Sticky.String()})
	}
	if opts.DiagnosticClient {
		out = append(out, Claim{ClaimDiagnosticClient, "true"})
	}
	if s := int64(opts.HandshakeTimeout / time.Second); opts.HandshakeTimeout != 0 && opts.HandshakeTimeout != DefaultHandshakeTimeout {
		out = append(out, Claim{ClaimHandshakeTimeout, strconv.FormatInt(s, 10)})
	}
	if opts.AuthenticationType != "" && opts.AuthenticationType != "Bearer" {
		out = append(out, Claim{ClaimAuthenticationType, opts.AuthenticationType})
	}
	if opts.EndpointCount > 1 {
		out = append(out, Claim{ClaimEndpointCount, strconv.Itoa(opts.EndpointCount)})
	}
	if opts.DetailedErrors {
		out = append(out, Claim{ClaimDetailedErrors, "True"}) // bool.ToString()
	}
	if opts.NameClaimType != "" && opts.NameClaimType != DefaultNameClaimType {
		out = append(out, Claim{ClaimNameType, opts.NameClaimType})
	}
	if opts.RoleClaimType != "" && opts.RoleClaimType != DefaultRoleClaimType {
		out = append(out, Claim{ClaimRoleType, opts.RoleClaimType})
	}
	if opts.MaxPollInterval > 0 {
		out = append(out, Claim{ClaimMaxPollInterval, strconv.FormatInt(int64(opts.MaxPollInterval/time.Second), 10)})
	}
	if opts.Transports != 0 {
		out = append(out, Claim{ClaimTransports, strconv.Itoa(int(opts.Transports))})
	}
	if opts.CloseOnAuthExpiration && !opts.AuthExpiresOn.IsZero() {
		out = append(out, Claim{ClaimCloseOnAuthExpire, "true"}, Claim{ClaimAuthExpiresOn, strconv.FormatInt(opts.AuthExpiresOn.Unix(), 10)})
	}
	hasSub := false
	for _, c := range extra {
		switch {
		case c.Type == ClaimSub && !hasSub:
			hasSub = true
			out = append(out, c)
		case c.Type == ClaimSub || reservedClaims[c.Type]:
			out = append(out, Claim{ClaimUserPrefix + c.Type, c.Value})
		default:
			out = append(out, c)
		}
	}
	return out
}

// ServerClaims is the claim list of a server-connection token: a single nameid = serverID, or
// nothing when serverID is empty.
func ServerClaims(serverID string) []Claim {
	if serverID == "" {
		return nil
	}
	return []Claim{{ClaimNameID, serverID}}
}

// OpenConnectionClaims is the claim list to send in OpenConnection: every token claim in payload
// order, and right after each claim whose type is a short name of the standard inbound map, the
// same value under the long .NET type (so ASP.NET's default user-id provider finds NameIdentifier).
func OpenConnectionClaims(t *Token) []Claim {
	if t == nil {
		return nil
	}
	out := make([]Claim, 0, len(t.Claims)+4)
	for _, c := range t.Claims {
		out = append(out, c)
		if long, ok := inboundClaimMap[c.Type]; ok {
			out = append(out, Claim{long, c.Value})
		}
	}
	return out
}

// Claim returns the first value of claim type typ.
func (t *Token) Claim(typ string) (string, bool) {
	for _, c := range t.Claims {
		if c.Type == typ {
			return c.Value, true
		}
	}
	return "", false
}

// userID applies the service's precedence: asrs.s.uid, then nameid, then sub, then the long
// NameIdentifier type; the first claim of the first present type wins, even if its value is
// empty (the SDK treats a present asrs.s.uid the same way).
func userIDOf(claims []Claim) string {
	best, bestRank := "", 4
	for _, c := range claims {
		rank := 4
		switch c.Type {
		case ClaimUserID:
			rank = 0
		case ClaimNameID:
			rank = 1
		case ClaimSub:
			rank = 2
		case ClaimTypeNameIdentifier:
			rank = 3
		}
		if rank < bestRank {
			best, bestRank = c.Value, rank
			if rank == 0 {
				break
			}
		}
	}
	return best
}

// Sticky reports the token's sticky mode and target server. A mode without a server name (or an
// unknown mode) is StickyDisabled. The mode name is matched case-insensitively and the enum
// numbers 1/2 are accepted too.
func (t *Token) Sticky() (mode StickyMode, serverID string) {
	sn, ok := t.Claim(ClaimServerName)
	if !ok || sn == "" {
		return StickyDisabled, ""
	}
	v, _ := t.Claim(ClaimSticky)
	switch {
	case strings.EqualFold(v, "Preferred") || v == "1":
		return StickyPreferred, sn
	case strings.EqualFold(v, "Required") || v == "2":
		return StickyRequired, sn
	}
	return StickyDisabled, ""
}

// HandshakeTimeout is asrs.s.cht clamped to 1..30 s, or DefaultHandshakeTimeout when absent or
// not an integer.
func (t *Token) HandshakeTimeout() time.Duration {
	v, ok := t.Claim(ClaimHandshakeTimeout)
	if !ok {
		return DefaultHandshakeTimeout
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return DefaultHandshakeTimeout
	}
	d := time.Duration(max(1, min(n, int(MaxHandshakeTimeout/time.Second)))) * time.Second
	return d
}

// MaxPollInterval is asrs.s.ttl when it is a positive integer number of seconds.
func (t *Token) MaxPollInterval() (time.Duration, bool) {
	v, ok := t.Claim(ClaimMaxPollInterval)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// Transports is the asrs.s.htt bitmask, TransportAll when absent or unusable.
func (t *Token) Transports() TransportType {
	v, ok := t.Claim(ClaimTransports)
	if !ok {
		return TransportAll
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return TransportAll
	}
	m := TransportType(n) & TransportAll
	if m == 0 {
		return TransportAll
	}
	return m
}

// AuthExpiry is asrs.s.aeo when asrs.s.coae is "true" (case-insensitive): the time at which the
// service should close the client.
func (t *Token) AuthExpiry() (time.Time, bool) {
	v, ok := t.Claim(ClaimCloseOnAuthExpire)
	if !ok || !strings.EqualFold(v, "true") {
		return time.Time{}, false
	}
	s, ok := t.Claim(ClaimAuthExpiresOn)
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// DiagnosticClient reports asrs.s.dc=true (case-insensitive).
func (t *Token) DiagnosticClient() bool {
	v, ok := t.Claim(ClaimDiagnosticClient)
	return ok && strings.EqualFold(v, "true")
}

// DetailedErrors reports asrs.s.derror=True (case-insensitive).
func (t *Token) DetailedErrors() bool {
	v, ok := t.Claim(ClaimDetailedErrors)
	return ok && strings.EqualFold(v, "true")
}
