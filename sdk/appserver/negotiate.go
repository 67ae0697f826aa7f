package appserver

import (
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/signalrd/signalrd/auth"
)

// NegotiateOptions shape the client tokens a negotiate handler issues
// (NegotiateHandler.BuildClaims / ClaimsUtility.BuildJwtClaims). Zero fields add nothing.
type NegotiateOptions struct {
	// UserID returns the user id for the request (IUserIdProvider); "" means no asrs.s.uid.
	UserID func(r *http.Request) string
	// Claims returns the user's claims copied into the token (HttpContext.User.Claims or
	// ServiceOptions.ClaimsProvider). Reserved JWT names and extra "sub"s are prefixed asrs.u.
	Claims func(r *http.Request) []auth.Claim
	// AuthenticationType is the ClaimsIdentity's authentication type (asrs.s.aut unless "Bearer").
	AuthenticationType func(r *http.Request) string
	// Sticky overrides Options.StickyMode when not StickyDisabled (asrs.s.sn + asrs.s.ssticky).
	Sticky auth.StickyMode
	// Transports restricts the transports the service offers (asrs.s.htt); 0 = all, no claim.
	Transports auth.TransportType
	// MaxPollInterval is the LongPolling idle timeout (asrs.s.ttl, whole seconds); 0 = no claim.
	MaxPollInterval time.Duration
	// DiagnosticClient marks requests of diagnostic clients (asrs.s.dc=true).
	DiagnosticClient func(r *http.Request) bool
	// CloseOnAuthenticationExpiration with AuthExpiresOn adds asrs.s.coae/asrs.s.aeo so the
	// service closes the client when its authentication expires.
	CloseOnAuthenticationExpiration bool
	AuthExpiresOn                   func(r *http.Request) time.Time
	// AllowOrigin decides which browser origins get CORS headers (echoed with credentials);
	// nil allows every origin.
	AllowOrigin func(origin string) bool
}

// NegotiateHandler answers SignalR negotiate requests for hub by redirecting the client to the
// service, byte-compatible with the .NET SDK:
//
//	{"negotiateVersion":0,"url":"<ClientEndpoint>client/?hub=<id>&asrs.op=<path>&<query>&asrs_request_id=<id>","accessToken":"<jwt>","availableTransports":[]}
//
// Mount it at "<hub path>/negotiate" (e.g. "/chat/negotiate" for clients built with "/chat").
// It answers POST, and OPTIONS preflights with CORS headers. Without a connected socket for the
// hub it answers 500 "Azure SignalR Service is not connected yet, please try again later.", like
// the SDK; a token over 4096 characters yields 413.
func (s *Server) NegotiateHandler(hub string, o NegotiateOptions) http.Handler {
	return &negotiateHandler{s: s, hub: hub, o: o}
}

type negotiateHandler struct {
	s   *Server
	hub string
	o   NegotiateOptions
}

const (
	maxTokenLength       = 4096
	textNotConnected     = "Azure SignalR Service is not connected yet, please try again later."
	textTokenTooLong     = "AccessToken must not be longer than 4K."
	queryOriginalPath    = "asrs.op"
	queryRequestID       = "asrs_request_id"
	negotiatePathSuffix  = "/negotiate"
	defaultHandshakeSecs = 15
	maxHandshakeSecs     = 30
)

func (n *negotiateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && (n.o.AllowOrigin == nil || n.o.AllowOrigin(origin)) {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Add("Vary", "Origin")
		if r.Method == http.MethodOptions {
			m := r.Header.Get("Access-Control-Request-Method")
			if m == "" {
				m = http.MethodPost
			}
			w.Header().Set("Access-Control-Allow-Methods", m)
			if hs := r.Header.Get("Access-Control-Request-Headers"); hs != "" {
				w.Header().Set("Access-Control-Allow-Headers", hs)
			}
		}
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	s := n.s
	rt := s.hub(n.hub)
	if rt == nil {
		http.NotFound(w, r)
		return
	}
	if rt.activeCount.Load() == 0 {
		s.log.Error("client negotiate failed", "hub", rt.id, "error", textNotConnected)
		writeText(w, http.StatusInternalServerError, textNotConnected)
		return
	}
	token, err := auth.IssueToken(s.cs.AccessKey, auth.IssueOptions{
		Audience:  s.cs.ClientAudience(rt.id),
		Lifetime:  s.opts.AccessTokenLifetime,
		Algorithm: s.opts.Algorithm,
		Claims:    n.claims(r, rt),
	})
	if err != nil {
		s.log.Error("client negotiate failed", "hub", rt.id, "error", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if len(token) > maxTokenLength {
		writeText(w, http.StatusRequestEntityTooLarge, textTokenTooLong)
		return
	}
	body := make([]byte, 0, 256+len(token))
	body = append(body, `{"negotiateVersion":0,"url":`...)
	body = appendDotNetJSONString(body, n.clientURL(r, rt))
	body = append(body, `,"accessToken":`...)
	body = appendDotNetJSONString(body, token)
	body = append(body, `,"availableTransports":[]}`...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text))
}

// claims builds the token claims in BuildJwtClaims order.
func (n *negotiateHandler) claims(r *http.Request, rt *hubRuntime) []auth.Claim {
	s := n.s
	mode := n.o.Sticky
	if mode == auth.StickyDisabled {
		mode = s.opts.StickyMode
	}
	opts := auth.ClientClaimOptions{
		ServerName:       s.opts.ServerID,
		Sticky:           mode,
		HandshakeTimeout: handshakeClaim(rt.hub.HandshakeTimeout),
		DetailedErrors:   rt.hub.EnableDetailedErrors,
		MaxPollInterval:  n.o.MaxPollInterval,
		Transports:       n.o.Transports,
	}
	if n.o.DiagnosticClient != nil {
		opts.DiagnosticClient = n.o.DiagnosticClient(r)
	}
	if n.o.AuthenticationType != nil {
		opts.AuthenticationType = n.o.AuthenticationType(r)
	}
	if n.o.CloseOnAuthenticationExpiration && n.o.AuthExpiresOn != nil {
		opts.CloseOnAuthExpiration = true
		opts.AuthExpiresOn = n.o.AuthExpiresOn(r)
	}
	var userID string
	if n.o.UserID != nil {
		userID = n.o.UserID(r)
	}
	var extra []auth.Claim
	if n.o.Claims != nil {
		extra = n.o.Claims(r)
	}
	return auth.ClientClaims(userID, extra, opts)
}

// handshakeClaim is NegotiateHandler.GetCustomHandshakeTimeout: whole seconds in 1..30, else the
// 15 s default (which adds no claim).
func handshakeClaim(d time.Duration) time.Duration {
	secs := int(d / time.Second)
	if d == 0 || secs <= 0 || secs > maxHandshakeSecs {
		secs = defaultHandshakeSecs
	}
	return time.Duration(secs) * time.Second
}

// clientURL is DefaultServiceEndpointGenerator.GetClientEndpoint with NegotiateHandler's query.
func (n *negotiateHandler) clientURL(r *http.Request, rt *hubRuntime) string {
	var b strings.Builder
	b.WriteString(n.s.cs.ClientURL(rt.id))
	if op := originalPath(r.URL.Path); op != "" {
		b.WriteString("&" + queryOriginalPath + "=")
		b.WriteString(webUtilityURLEncode(op))
	}
	b.WriteByte('&')
	// request.QueryString.HasValue: "?" alone counts, and yields "&&asrs_request_id=..." as in
	// the SDK.
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		b.WriteString(r.URL.RawQuery)
		b.WriteByte('&')
	}
	b.WriteString(queryRequestID + "=")
	b.WriteString(webUtilityURLEncode(n.s.requestID()))
	return b.String()
}

// originalPath is the request path without a trailing "/negotiate" ("" when it has none).
func originalPath(p string) string {
	p = strings.TrimRight(p, "/")
	if !strings.HasSuffix(p, negotiatePathSuffix) {
		return ""
	}
	return p[:len(p)-len(negotiatePathSuffix)]
}

// requestID is AuthUtility.GenerateRequestId: base64 of an 8-byte little-endian timestamp
// (Stopwatch ticks); strictly increasing so concurrent negotiates never share one.
func (s *Server) requestID() string {
	for {
		last := s.lastRequestID.Load()
		v := time.Now().UnixNano()
		if v <= last {
			v = last + 1
		}
		if s.lastRequestID.CompareAndSwap(last, v) {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			return base64.StdEncoding.EncodeToString(b[:])
		}
	}
}

// webUtilityURLEncode is System.Net.WebUtility.UrlEncode: unreserved are ASCII letters, digits
// and - _ . ! * ( ); space becomes '+'; everything else %XX with upper-case hex.
func webUtilityURLEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '!', c == '*', c == '(', c == ')':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// appendDotNetJSONString quotes s like System.Text.Json's default JavaScriptEncoder (what
// ASP.NET Core's NegotiateProtocol writes): HTML-sensitive and non-ASCII characters become
// \uXXXX with upper-case hex.
func appendDotNetJSONString(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	u4 := func(dst []byte, r rune) []byte {
		return append(dst, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '"', '&', '\'', '+', '<', '>', '`':
				dst = u4(dst, rune(c))
			default:
				if c < 0x20 || c == 0x7F {
					dst = u4(dst, rune(c))
				} else {
					dst = append(dst, c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			r = utf8.RuneError
		}
		if r >= 0x10000 {
			r1, r2 := 0xD800+((r-0x10000)>>10), 0xDC00+((r-0x10000)&0x3FF)
			dst = u4(u4(dst, r1), r2)
		} else {
			dst = u4(dst, r)
		}
		i += size
	}
	return append(dst, '"')
}
