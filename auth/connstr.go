package auth

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// ConnectionString is a parsed Azure SignalR connection string (service-protocol.md §8).
type ConnectionString struct {
	// Endpoint is the service endpoint with Port applied and trailing slashes removed.
	Endpoint *url.URL
	// AccessKey is the HMAC secret (its UTF-8 bytes are the key); empty with Entra auth types.
	AccessKey string
	// Version is the optional Version value (validated, never used on the wire).
	Version string
	// AuthType is the AuthType value as written (compare case-insensitively).
	AuthType     string
	ClientID     string
	TenantID     string
	ClientSecret string
	ClientCert   string
	// Port is the Port value, 0 if absent.
	Port int
	// ClientEndpoint and ServerEndpoint are nil if absent; Port is not applied to them.
	ClientEndpoint, ServerEndpoint *url.URL
}

// Property names are compared ASCII-case-insensitively, like .NET's OrdinalIgnoreCase for ASCII.
const (
	propEndpoint       = "endpoint"
	propAccessKey      = "accesskey"
	propVersion        = "version"
	propPort           = "port"
	propAuthType       = "authtype"
	propClientID       = "clientid"
	propTenantID       = "tenantid"
	propClientSecret   = "clientsecret"
	propClientCert     = "clientcert"
	propClientEndpoint = "clientendpoint"
	propServerEndpoint = "serverendpoint"
)

// versionRE is ConnectionStringParser's ^1\.\d+(?:[\w-.]+)?$ with .NET's Unicode-aware \d and \w
// spelled out, because RE2's \d and \w are ASCII-only.
var versionRE = regexp.MustCompile(`^1\.\p{Nd}+(?:[\p{L}\p{Mn}\p{Nd}\p{Pc}.-]+)?$`)

// ParseConnectionString parses s with the rules of the SDK's ConnectionStringParser: ';'-separated
// key=value segments (empty segments and segments without '=' are ignored, but at least two
// non-empty segments are required), keys case-insensitive, keys and values trimmed, duplicate keys
// rejected, values split on the first '='.
func ParseConnectionString(s string) (ConnectionString, error) {
	props, err := connStringProps(s)
	if err != nil {
		return ConnectionString{}, err
	}
	var cs ConnectionString

	endpoint, ok := props[propEndpoint]
	if !ok {
		return ConnectionString{}, connStrErr("missing required property Endpoint")
	}
	endpoint = strings.TrimRight(endpoint, "/")
	u, ok := parseEndpointURL(endpoint)
	if !ok {
		return ConnectionString{}, connStrErr("invalid value for Endpoint property, it must be an absolute http or https URI: " + strconv.Quote(endpoint))
	}

	if v, ok := props[propVersion]; ok {
		if !versionRE.MatchString(v) {
			return ConnectionString{}, connStrErr("Version " + strconv.Quote(v) + " is not supported")
		}
		cs.Version = v
	}

	if p, ok := props[propPort]; ok {
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 0xFFFF {
			return ConnectionString{}, connStrErr("invalid value for Port property, it must be an integer in 1..65535: " + strconv.Quote(p))
		}
		cs.Port = port
		u.Host = joinHostPort(u.Hostname(), strconv.Itoa(port))
	}
	cs.Endpoint = u

	if v, ok := props[propClientEndpoint]; ok {
		ce, ok := parseEndpointURL(v)
		if !ok {
			return ConnectionString{}, connStrErr("invalid value for ClientEndpoint property, it must be an absolute http or https URI: " + strconv.Quote(v))
		}
		cs.ClientEndpoint = ce
	}
	if v, ok := props[propServerEndpoint]; ok {
		se, ok := parseEndpointURL(v)
		if !ok {
			return ConnectionString{}, connStrErr("invalid value for ServerEndpoint property, it must be an absolute http or https URI: " + strconv.Quote(v))
		}
		cs.ServerEndpoint = se
	}

	cs.AccessKey = props[propAccessKey]
	cs.AuthType = props[propAuthType]
	cs.ClientID = props[propClientID]
	cs.TenantID = props[propTenantID]
	cs.ClientSecret = props[propClientSecret]
	cs.ClientCert = props[propClientCert]
	_, hasID := props[propClientID]
	_, hasTenant := props[propTenantID]
	_, hasSecret := props[propClientSecret]
	_, hasCert := props[propClientCert]

	// Same credential requirements as the SDK's Build*AccessKey helpers; the values themselves are
	// never echoed in errors.
	switch asciiLower(cs.AuthType) {
	case "aad":
		if hasID && hasTenant && !hasSecret && !hasCert {
			return ConnectionString{}, connStrErr("missing required property ClientSecret or ClientCert")
		}
	case "azure", "azure.msi":
	case "azure.app":
		switch {
		case !hasID:
			return ConnectionString{}, connStrErr("missing required property ClientId")
		case !hasTenant:
			return ConnectionString{}, connStrErr("missing required property TenantId")
		case !hasSecret && !hasCert:
			return ConnectionString{}, connStrErr("missing required property ClientSecret or ClientCert")
		}
	default:
		if _, ok := props[propAccessKey]; !ok {
			return ConnectionString{}, connStrErr("missing required property AccessKey")
		}
	}
	return cs, nil
}

func connStringProps(s string) (map[string]string, error) {
	// .NET splits with RemoveEmptyEntries: only zero-length segments are dropped before counting.
	nonEmpty := 0
	for seg := range strings.SplitSeq(s, ";") {
		if seg != "" {
			nonEmpty++
		}
	}
	if nonEmpty < 2 {
		return nil, connStrErr("missing required property Endpoint (fewer than two segments)")
	}
	props := make(map[string]string, nonEmpty)
	for seg := range strings.SplitSeq(s, ";") {
		k, v, ok := strings.Cut(seg, "=")
		if !ok {
			continue
		}
		key := asciiLower(strings.TrimSpace(k))
		if _, dup := props[key]; dup {
			return nil, connStrErr("duplicate property " + strconv.Quote(strings.TrimSpace(k)))
		}
		props[key] = strings.TrimSpace(v)
	}
	return props, nil
}

// parseEndpointURL accepts what .NET's Uri.TryCreate(Absolute) accepts for http/https: a scheme
// (any case), a non-empty host and a port in 0..65535. The host is lower-cased as Uri does.
func parseEndpointURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, false
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 0xFFFF {
			return nil, false
		}
	}
	u.Host = strings.ToLower(u.Host)
	return u, true
}

func joinHostPort(host, port string) string {
	if port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// FormatConnectionString renders the emulator-style string
// "Endpoint=http://localhost;Port=8888;AccessKey=...;Version=1.0;" (Port omitted when 0).
// The values are written verbatim; they must not contain ';'.
func FormatConnectionString(endpoint string, port int, accessKey string) string {
	var b strings.Builder
	b.WriteString("Endpoint=")
	b.WriteString(endpoint)
	b.WriteByte(';')
	if port != 0 {
		b.WriteString("Port=")
		b.WriteString(strconv.Itoa(port))
		b.WriteByte(';')
	}
	b.WriteString("AccessKey=")
	b.WriteString(accessKey)
	b.WriteString(";Version=1.0;")
	return b.String()
}

// HubID is the hub id the SDKs put in ?hub=: the lower-cased hub, prefixed by the lower-cased
// application name and '_' when an application name is set.
func HubID(application, hub string) string {
	if application == "" {
		return strings.ToLower(hub)
	}
	return strings.ToLower(application) + "_" + strings.ToLower(hub)
}

// AudienceBase is "{scheme}://{host}/" of Endpoint: no port, no path, never Client/ServerEndpoint
// (ServiceEndpoint.BuildAudienceBaseUrlEndWithSlash).
func (c ConnectionString) AudienceBase() string {
	if c.Endpoint == nil {
		return ""
	}
	return c.Endpoint.Scheme + "://" + joinHostPort(strings.ToLower(c.Endpoint.Hostname()), "") + "/"
}

// ServerAudience is the aud of a server-connection token.
func (c ConnectionString) ServerAudience(hubID string) string {
	return c.AudienceBase() + "server/?hub=" + hubID
}

// ClientAudience is the aud of a client token.
func (c ConnectionString) ClientAudience(hubID string) string {
	return c.AudienceBase() + "client/?hub=" + hubID
}

// ServerURL is the WebSocket URL an app server dials: {ServerEndpoint|Endpoint}.AbsoluteUri +
// "server/?hub={hubID}&cid={cid}" with http→ws, https→wss.
//
// Like the SDK it concatenates onto AbsoluteUri, so a bare host gains "/" but a path without a
// trailing slash is glued on as-is ("https://h/p" → "wss://h/pserver/?..."). A query already on the
// endpoint is kept (after hub=, before cid=); the SDK would splice "server/?hub=" into that query,
// which no service can route, so that part is deliberately not copied.
func (c ConnectionString) ServerURL(hubID, cid string) string {
	return c.serverURL(hubID, cid, "", false)
}

// ServerURLWithTarget is ServerURL plus "&target={urlencoded target}" for OnDemand connections
// opened after a "target" ping.
func (c ConnectionString) ServerURLWithTarget(hubID, cid, target string) string {
	return c.serverURL(hubID, cid, target, true)
}

func (c ConnectionString) serverURL(hubID, cid, target string, withTarget bool) string {
	base := c.ServerEndpoint
	if base == nil {
		base = c.Endpoint
	}
	if base == nil {
		return ""
	}
	scheme := "ws"
	if base.Scheme == "https" {
		scheme = "wss"
	}
	var b strings.Builder
	writeEndpointPath(&b, scheme, base, "server")
	b.WriteString("?hub=")
	b.WriteString(url.QueryEscape(hubID))
	if base.RawQuery != "" {
		b.WriteByte('&')
		b.WriteString(base.RawQuery)
	}
	b.WriteString("&cid=")
	b.WriteString(url.QueryEscape(cid))
	if withTarget {
		b.WriteString("&target=")
		b.WriteString(url.QueryEscape(target))
	}
	return b.String()
}

// ClientURL is the URL the negotiate redirect hands to clients:
// {ClientEndpoint|Endpoint}.AbsoluteUri + "client/?hub={hubID}" (same concatenation and query
// rules as ServerURL, http(s) scheme kept).
func (c ConnectionString) ClientURL(hubID string) string {
	base := c.ClientEndpoint
	if base == nil {
		base = c.Endpoint
	}
	if base == nil {
		return ""
	}
	var b strings.Builder
	writeEndpointPath(&b, base.Scheme, base, "client")
	b.WriteString("?hub=")
	b.WriteString(url.QueryEscape(hubID))
	if base.RawQuery != "" {
		b.WriteByte('&')
		b.WriteString(base.RawQuery)
	}
	return b.String()
}

// writeEndpointPath writes "{scheme}://{host[:port]}{AbsoluteUri path}{seg}/". Default ports are
// dropped as Uri.AbsoluteUri drops them; the fragment is dropped.
func writeEndpointPath(b *strings.Builder, scheme string, u *url.URL, seg string) {
	b.WriteString(scheme)
	b.WriteString("://")
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	b.WriteString(joinHostPort(strings.ToLower(u.Hostname()), port))
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	b.WriteString(p)
	b.WriteString(seg)
	b.WriteByte('/')
}
