package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Network access control, Azure's networkACLs in a simple shape. Azure has publicNetworkAccess
// (Enabled/Disabled), publicNetwork.allow/deny by request type, and private endpoints with their
// own allow list. Here the public network is "any address", and the private endpoints are the
// address ranges listed per request type. A request is admitted when its client address is in
// the request type's Allow list, or when public access is on and that list is empty. Everything
// else gets 403 before its token is looked at, as Azure answers when public access is disabled.

// Request types, as Azure names them (SignalRRequestType).
const (
	RequestClientConnection = "ClientConnection"
	RequestServerConnection = "ServerConnection"
	RequestRESTAPI          = "RESTAPI"
	RequestTrace            = "Trace"
)

// NetworkACL is an instance's network access control. The zero value admits everything.
type NetworkACL struct {
	// PublicAccess admits any client address for request types whose Allow list is empty.
	// nil means true. With false, only addresses in a request type's Allow list get in.
	PublicAccess *bool
	// ClientConnection covers /client/negotiate and the client transports on /client.
	ClientConnection NetworkRule
	// ServerConnection covers app-server sockets on /server.
	ServerConnection NetworkRule
	// RESTAPI covers the data-plane REST API under /api, except the anonymous health probes.
	RESTAPI NetworkRule
	// Trace covers live-trace endpoints.
	Trace NetworkRule
}

// NetworkRule restricts one request type.
type NetworkRule struct {
	// Allow lists client address ranges (CIDR "10.0.0.0/8" or single IP "192.0.2.7", IPv4 or
	// IPv6) always admitted for this request type. A non-empty list also shuts every other
	// address out, whatever PublicAccess says. Empty: only PublicAccess decides.
	Allow []string
}

// acl is a NetworkACL parsed once; its methods are goroutine-safe (read-only after creation).
type acl struct {
	public bool
	rules  map[string][]netip.Prefix // by request type; absent or empty: public decides
}

// open reports whether the ACL admits everything, so the common case costs nothing.
func (a *acl) open() bool { return a == nil || (a.public && len(a.rules) == 0) }

// compileACL parses n; problems are reported by validateACL, so unparsable entries are dropped
// here (Config.Validate refuses such a configuration before New gets this far).
func compileACL(n NetworkACL) *acl {
	a := &acl{public: n.PublicAccess == nil || *n.PublicAccess, rules: map[string][]netip.Prefix{}}
	for typ, r := range n.byType() {
		for _, s := range r.Allow {
			if p, err := parseAddrRange(s); err == nil {
				a.rules[typ] = append(a.rules[typ], p)
			}
		}
	}
	return a
}

func (n NetworkACL) byType() map[string]NetworkRule {
	return map[string]NetworkRule{
		RequestClientConnection: n.ClientConnection,
		RequestServerConnection: n.ServerConnection,
		RequestRESTAPI:          n.RESTAPI,
		RequestTrace:            n.Trace,
	}
}

// validateACL lists every unparsable Allow entry.
func validateACL(label string, n NetworkACL) []error {
	var errs []error
	for _, typ := range []string{RequestClientConnection, RequestServerConnection, RequestRESTAPI, RequestTrace} {
		for i, s := range n.byType()[typ].Allow {
			if _, err := parseAddrRange(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: network %s allow[%d]: %w", label, typ, i, err))
			}
		}
	}
	return errs
}

// allows reports whether a client address may make a request of type typ. An unparsable address
// is admitted only where no restriction applies.
func (a *acl) allows(typ string, addr netip.Addr, addrOK bool) bool {
	if a.open() {
		return true
	}
	rule := a.rules[typ]
	if addrOK {
		addr = addr.Unmap()
		for _, p := range rule {
			if p.Contains(addr) {
				return true
			}
		}
	}
	return a.public && len(rule) == 0
}

// requestTypeOf classifies a path served through withInstance: /client… is a client connection,
// /server… a server connection, the rest (the /api tree; health probes do not pass here) REST.
func requestTypeOf(path string) string {
	switch {
	case path == "/client" || strings.HasPrefix(path, "/client/"):
		return RequestClientConnection
	case path == "/server" || strings.HasPrefix(path, "/server/"):
		return RequestServerConnection
	default:
		return RequestRESTAPI
	}
}

// admit applies the instance's ACL to a request of type typ, writing the 403 (ErrorDetail JSON
// for REST, plain text elsewhere) when it is denied. It runs before any token is verified.
func (in *instance) admit(w http.ResponseWriter, r *http.Request, typ string) bool {
	if in.acl.open() {
		return true
	}
	// The client's address, X-Forwarded-For resolved behind trusted proxies (proxy.go), so an
	// ACL keeps working behind a load balancer and a direct client cannot forge its way in.
	addr, ok := in.srv.clientAddr(r)
	if in.acl.allows(typ, addr, ok) {
		return true
	}
	who := r.RemoteAddr
	if ok {
		who = addr.String()
	}
	in.log.Debug("network access denied", "request_type", typ, "client", who, "path", r.URL.Path)
	msg := fmt.Sprintf("Forbidden: network access control of this SignalR instance denies request type '%s' from %s.", typ, who)
	if typ == RequestRESTAPI {
		restError(w, r, http.StatusForbidden, codeForbidden, msg, "")
		return false
	}
	textError(w, http.StatusForbidden, msg)
	return false
}

// codeForbidden is the REST error code of a request the network ACL denies.
const codeForbidden = "Error.Request.Forbidden"

// admitTrace guards the live-trace endpoints of the admin listener (trace_page.go) with the instance's
// Trace rule; call it first thing in such a handler.
func (in *instance) admitTrace(w http.ResponseWriter, r *http.Request) bool {
	return in.admit(w, r, RequestTrace)
}
