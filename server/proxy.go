package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Reverse proxies. A request's X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto are
// honoured only when the immediate peer (RemoteAddr) is in Config.TrustedProxies: anyone else
// could set them to pick another tenant, forge the client address the app server sees, or
// change the scheme of URLs the service builds. With no trusted proxies (the default) every
// X-Forwarded-* header is ignored and the instance is chosen by Host, as Azure does.

// proxyTrust is Config.TrustedProxies parsed once; read-only, so goroutine-safe.
type proxyTrust []netip.Prefix

// parseTrustedProxies parses CIDRs and single addresses; Validate reports the bad entries, so
// New never sees one.
func parseTrustedProxies(list []string) (proxyTrust, []error) {
	var out proxyTrust
	var errs []error
	for i, s := range list {
		p, err := parseAddrRange(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted proxies[%d]: %w", i, err))
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// parseAddrRange accepts "10.0.0.0/8", "192.0.2.7" or "::1" (trusted proxies, network ACLs).
// Host bits of a CIDR are masked off; zones are refused, they name no range; IPv4-mapped IPv6 is
// unmapped because peer addresses are unmapped before matching.
func parseAddrRange(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range or IP address", s)
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range or IP address", s)
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

func (t proxyTrust) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the immediate peer's address (RemoteAddr without port).
func peerAddr(r *http.Request) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(clientIP(r.RemoteAddr))
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// fromTrustedProxy reports whether the immediate peer may speak for the client.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	if len(s.proxies) == 0 {
		return false
	}
	a, ok := peerAddr(r)
	return ok && s.proxies.contains(a)
}

// clientAddr is the client's address: the peer, or behind trusted proxies the rightmost
// X-Forwarded-For entry that is not itself a trusted proxy (entries further left were written
// by the client or untrusted hops and could be forged). ok is false when RemoteAddr is no IP.
func (s *Server) clientAddr(r *http.Request) (addr netip.Addr, ok bool) {
	addr, ok = peerAddr(r)
	if !ok || !s.proxies.contains(addr) {
		return addr, ok
	}
	hops := forwardedList(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break // garbage: the last good hop is the best we know
		}
		addr = hop
		if !s.proxies.contains(hop) {
			break
		}
	}
	return addr, true
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a port or brackets.
func parseHop(h string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// forwardedList splits comma-separated header values into trimmed, non-empty entries.
func forwardedList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// forwardedFor is OpenConnection's X-Forwarded-For. Like Azure, the peer is appended to the
// chain a trusted proxy sent; an untrusted peer's chain is dropped, because the server SDK
// takes the first entry as the client's address (HttpContext.Connection.RemoteIpAddress).
func (s *Server) forwardedFor(r *http.Request) string {
	peer := clientIP(r.RemoteAddr)
	if !s.fromTrustedProxy(r) {
		return peer
	}
	if prev := forwardedList(r.Header.Values("X-Forwarded-For")); len(prev) > 0 {
		return strings.Join(prev, ", ") + ", " + peer
	}
	return peer
}

// requestHost is the host the client asked for: X-Forwarded-Host's first entry from a trusted
// proxy, else Host. It picks the instance and appears in URLs the service builds.
func (s *Server) requestHost(r *http.Request) string {
	if s.fromTrustedProxy(r) {
		if hosts := forwardedList(r.Header.Values("X-Forwarded-Host")); len(hosts) > 0 {
			return hosts[0]
		}
	}
	return r.Host
}

// requestScheme is the scheme the client used: X-Forwarded-Proto's first entry from a trusted
// proxy (http or https), else https on TLS connections and http otherwise.
func (s *Server) requestScheme(r *http.Request) string {
	if s.fromTrustedProxy(r) {
		if protos := forwardedList(r.Header.Values("X-Forwarded-Proto")); len(protos) > 0 {
			switch p := strings.ToLower(protos[0]); p {
			case "http", "https":
				return p
			}
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
