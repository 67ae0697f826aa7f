package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/signalrd/signalrd/auth"
)

// textError writes a plain-text error like ASP.NET Core's connection dispatcher does.
func textError(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// hubParam returns the single 'hub' query value, or writes the 400 Azure answers.
func hubParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	vals := r.URL.Query()["hub"]
	switch {
	case len(vals) == 0 || vals[0] == "":
		textError(w, http.StatusBadRequest, "'hub' query parameter is required.")
		return "", false
	case len(vals) > 1:
		textError(w, http.StatusBadRequest, "Only one 'hub' query parameter is allowed.")
		return "", false
	}
	hub := strings.ToLower(vals[0])
	if !validHubName(hub) {
		textError(w, http.StatusBadRequest, "Invalid hub name '"+vals[0]+"': it must start with a letter and contain only letters, digits and underscores.")
		return "", false
	}
	return hub, true
}

// validHubName follows the REST API's hub rule ^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$ (the extra
// punctuation appears in generic .NET hub type names).
func validHubName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '`' || c == ',' || c == '.' || c == '[' || c == ']'):
		default:
			return false
		}
	}
	return true
}

// bearerToken takes the token from the Authorization header, else the last access_token query
// value (browsers cannot set headers on WebSocket and EventSource requests).
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
			return strings.TrimSpace(h[7:])
		}
	}
	if vals := r.URL.Query()["access_token"]; len(vals) > 0 {
		return vals[len(vals)-1]
	}
	return ""
}

// verify authenticates a request for a hub, writing 401 on failure.
func (in *instance) verify(w http.ResponseWriter, r *http.Request, kind auth.Kind, hub string) (*auth.Token, bool) {
	raw := bearerToken(r)
	if raw == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		textError(w, http.StatusUnauthorized, "Unauthorized: an access token is required.")
		return nil, false
	}
	tok, err := in.verifier().Verify(raw, kind, hub)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		textError(w, http.StatusUnauthorized, "Unauthorized: "+err.Error())
		return nil, false
	}
	return tok, true
}

// cors answers preflights and decorates responses for browser clients, which send credentials
// and therefore need the Origin echoed rather than '*'. Origins outside the instance's allowed
// list get no CORS headers (the browser then blocks the response) and a 403 preflight. It
// reports true when the request was a preflight and has been answered.
func (in *instance) cors(w http.ResponseWriter, r *http.Request, methods string) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && !in.originAllowed(origin) {
		if r.Method == http.MethodOptions {
			textError(w, http.StatusForbidden, "Origin '"+origin+"' is not allowed.")
			return true
		}
		origin = ""
	}
	if origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	if r.Method != http.MethodOptions {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", methods)
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// originAllowed matches an Origin against the instance's allowed list (case-insensitive; "*"
// or an empty list allows every origin).
func (in *instance) originAllowed(origin string) bool {
	if len(in.settings().AllowedOrigins) == 0 {
		return true
	}
	for _, o := range in.settings().AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}
