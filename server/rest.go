package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/signalrd/signalrd/auth"
)

// The data-plane REST API (client-and-rest.md §6): every v1 (/api/v1/hubs/{hub}/…) and
// 2022-06-01+ (/api/hubs/{hub}/…) operation, in every path form the official emulator serves.
// Routing is on the path only; api-version is ignored. Handlers run on the request goroutine and
// go through the same router calls app servers use, so REST sends and app-server sends share
// ordering and encode-once rules. docs/rest.md lists every route.

// REST limits (§6.3, §9).
const (
	restMaxBody   = 1 << 20
	restMaxHeader = 16 << 10
)

// Error codes. The 404 family is what the Management SDK matches on (Constants.ErrorCodes); the
// others follow the same <Level>.<Scope>.<Kind> shape.
const (
	codeConnectionNotExisted      = "Warning.Connection.NotExisted"
	codeUserNotExisted            = "Warning.User.NotExisted"
	codeGroupNotExisted           = "Warning.Group.NotExisted"
	codeUserNotInGroup            = "Info.User.NotInGroup"
	codeErrorConnectionNotExisted = "Error.Connection.NotExisted"

	codeInvalid          = "Error.Request.Invalid"
	codeUnauthorized     = "Error.Request.Unauthorized"
	codeNotFound         = "Error.Request.NotFound"
	codeMethodNotAllowed = "Error.Request.MethodNotAllowed"
	codeTooLarge         = "Error.Request.TooLarge"
	codeHeadersTooLarge  = "Error.Request.HeadersTooLarge"
	codeUnsupportedMedia = "Error.Request.UnsupportedMediaType"
	codeInvocationFailed = "Error.Invocation.Failed"
	codeInvocationTime   = "Error.Invocation.Timeout"
	codeInternal         = "Error.Service.Internal"
)

// Validation texts of the emulator (ErrorMessages.Validation).
const (
	textInvalidHub      = "Invalid hub name. Valid hub name should be in between 1 and 128 characters long. The first character must be a letter, other characters can be letters, digits or the following symbols _`,.[]"
	textInvalidApp      = "Invalid value of 'application'. Valid application name should be in between 1 and 128 characters long. The first character must be a letter, other characters can be letters, digits or the following symbols _`,.[]"
	textInvalidGroup    = "Invalid group name. Valid group name should be in between 1 and 1024 characters long."
	textMessageRequired = "Message in request body is required."
	textInvalidStreamID = "Invalid stream id. Valid stream id should be in between 1 and 100 characters long."
)

// errorDetail is the swagger's ErrorDetail.
type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// restError writes an ErrorDetail with its x-ms-error-code header (no body for HEAD).
func restError(w http.ResponseWriter, r *http.Request, status int, code, message, target string) {
	w.Header().Set("x-ms-error-code", code)
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, errorDetail{Code: code, Message: message, Target: target})
}

// restHandler serves one operation; the request is authenticated and its names validated.
type restHandler func(q *restReq)

// restRoute is one path shape under a hub: literal segments (compared case-insensitively) and
// {user}, {group}, {conn}, {stream} parameters, with a handler per method.
type restRoute struct {
	segs    []string
	methods map[string]restHandler
}

// restReq is one REST request being served.
type restReq struct {
	w   http.ResponseWriter
	r   *http.Request
	in  *instance
	v1  bool   // /api/v1 prefix: v1 status codes where they differ
	hub string // hub id (application prefix applied, lower-case)
	tok *auth.Token

	user, group, conn, stream string
}

// status picks the 2022-06-01+ code or the v1 one (§6.4 lists both where they differ).
func (q *restReq) status(current, v1 int) int {
	if q.v1 {
		return v1
	}
	return current
}

// done writes an empty success response.
func (q *restReq) done(status int) { q.w.WriteHeader(status) }

func (q *restReq) fail(status int, code, message, target string) {
	restError(q.w, q.r, status, code, message, target)
}

func (q *restReq) invalid(message, target string) {
	q.fail(http.StatusBadRequest, codeInvalid, message, target)
}

func (q *restReq) hubState() *hubState { return q.in.hub(q.hub) }

func (q *restReq) excluded() []string { return q.r.URL.Query()["excluded"] }

// hubRoutes lists every operation under /api[/v1]/hubs/{hub}. Both prefixes serve every route;
// sends answer with and without the /:send suffix, and group memberships under both
// users/{user}/groups/{group} and groups/{group}/users/{user} (connections likewise).
func hubRoutes() []restRoute {
	return []restRoute{
		{nil, map[string]restHandler{"POST": restBroadcast}},
		{[]string{":send"}, map[string]restHandler{"POST": restBroadcast}},
		{[]string{":closeConnections"}, map[string]restHandler{"POST": restCloseHub}},
		{[]string{":generateToken"}, map[string]restHandler{"POST": restGenerateToken}},
		{[]string{":execute"}, map[string]restHandler{"POST": restExecute}},

		{[]string{"users", "{user}"}, map[string]restHandler{"POST": restSendUser, "GET": restUserExists, "HEAD": restUserExists}},
		{[]string{"users", "{user}", ":send"}, map[string]restHandler{"POST": restSendUser}},
		{[]string{"users", "{user}", ":closeConnections"}, map[string]restHandler{"POST": restCloseUser}},
		{[]string{"users", "{user}", "groups"}, map[string]restHandler{"DELETE": restUserLeaveAll}},
		{[]string{"users", "{user}", "groups", "{group}"}, userGroupMethods()},

		{[]string{"connections", "{conn}"}, map[string]restHandler{"POST": restSendConn, "GET": restConnExists, "HEAD": restConnExists, "DELETE": restCloseConn}},
		{[]string{"connections", "{conn}", ":send"}, map[string]restHandler{"POST": restSendConn}},
		{[]string{"connections", "{conn}", ":invoke"}, map[string]restHandler{"POST": restInvoke}},
		{[]string{"connections", "{conn}", "groups"}, map[string]restHandler{"DELETE": restConnLeaveAll}},
		{[]string{"connections", "{conn}", "groups", "{group}"}, connGroupMethods()},
		{[]string{"connections", "{conn}", "streams", "{stream}", ":send"}, map[string]restHandler{"POST": restStreamSend}},
		{[]string{"connections", "{conn}", "streams", "{stream}", ":complete"}, map[string]restHandler{"POST": restStreamComplete}},

		{[]string{"groups", "{group}"}, map[string]restHandler{"POST": restSendGroup, "GET": restGroupExists, "HEAD": restGroupExists}},
		{[]string{"groups", "{group}", ":send"}, map[string]restHandler{"POST": restSendGroup}},
		{[]string{"groups", "{group}", ":closeConnections"}, map[string]restHandler{"POST": restCloseGroup}},
		{[]string{"groups", "{group}", "connections"}, map[string]restHandler{"GET": restListGroup}},
		{[]string{"groups", "{group}", "connections", "{conn}"}, connGroupMethods()},
		{[]string{"groups", "{group}", "users", "{user}"}, userGroupMethods()},
	}
}

func userGroupMethods() map[string]restHandler {
	return map[string]restHandler{"PUT": restUserJoin, "DELETE": restUserLeave, "GET": restUserInGroup, "HEAD": restUserInGroup}
}

func connGroupMethods() map[string]restHandler {
	return map[string]restHandler{"PUT": restConnJoin, "DELETE": restConnLeave}
}

// restRoutes mounts the REST API. The health endpoints keep their own, more specific patterns.
func (s *Server) restRoutes(mux *http.ServeMux) {
	routes := hubRoutes()
	mux.HandleFunc("/api/", s.withInstance(func(w http.ResponseWriter, r *http.Request, in *instance) {
		rec := &statusRecorder{ResponseWriter: w}
		op := restOpUnmatched
		serveREST(rec, r, in, routes, &op)
		s.metrics.countREST(in.name, op, rec.code())
	}))
}

// serveREST serves one request; *op is set to the operation's metric label once a route and
// method matched (it stays unmatched otherwise).
func serveREST(w http.ResponseWriter, r *http.Request, in *instance, routes []restRoute, op *string) {
	if headerBytes(r.Header) > restMaxHeader {
		restError(w, r, http.StatusRequestHeaderFieldsTooLarge, codeHeadersTooLarge, "Request headers must not exceed 16 KB.", "")
		return
	}
	segs, ok := splitPath(r.URL.EscapedPath())
	if !ok || len(segs) < 2 || !strings.EqualFold(segs[0], "api") {
		restNotFound(w, r)
		return
	}
	segs = segs[1:]
	v1 := strings.EqualFold(segs[0], "v1")
	if v1 {
		segs = segs[1:]
	}
	switch {
	case len(segs) == 2 && strings.EqualFold(segs[0], "auth") && strings.EqualFold(segs[1], "accessKey"):
		if !allowMethods(w, r, "GET") {
			*op = restOpMethodNotAllowed
			return
		}
		*op = "GET /auth/accessKey"
		tok, ok := restAuth(w, r, in, "")
		if !ok {
			return
		}
		restAccessKey(w, r, in, tok)
		return
	case len(segs) >= 2 && strings.EqualFold(segs[0], "hubs"):
	default:
		restNotFound(w, r)
		return
	}
	hub, rest := segs[1], segs[2:]
	q := &restReq{w: w, r: r, in: in, v1: v1}
	var methods map[string]restHandler
	var routeSegs []string
	for _, rt := range routes {
		if q.match(rt.segs, rest) {
			methods, routeSegs = rt.methods, rt.segs
			break
		}
	}
	if methods == nil {
		restNotFound(w, r)
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(methods))
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE"} {
			if methods[m] != nil {
				allow = append(allow, m)
			}
		}
		allowMethods(w, r, allow...)
		*op = restOpMethodNotAllowed
		return
	}
	*op = restOperation(r.Method, routeSegs)
	app := r.URL.Query().Get("application")
	tok, ok := restAuth(w, r, in, auth.HubID(app, hub))
	if !ok {
		return
	}
	q.tok = tok
	switch {
	case !validHubName(hub):
		q.invalid(textInvalidHub, "hub")
		return
	case r.URL.Query().Has("application") && !validHubName(app):
		q.invalid(textInvalidApp, "application")
		return
	case q.group != "" && !validGroupName(q.group):
		q.invalid(textInvalidGroup, "group")
		return
	}
	q.hub = auth.HubID(app, hub)
	if q.forwardREST() {
		return
	}
	h(q)
}

// match binds the parameters of route segs to path segments.
func (q *restReq) match(segs, path []string) bool {
	if len(segs) != len(path) {
		return false
	}
	var user, group, conn, stream string
	for i, s := range segs {
		switch s {
		case "{user}":
			user = path[i]
		case "{group}":
			group = path[i]
		case "{conn}":
			conn = path[i]
		case "{stream}":
			stream = path[i]
		default:
			if !strings.EqualFold(s, path[i]) {
				return false
			}
		}
	}
	q.user, q.group, q.conn, q.stream = user, group, conn, stream
	return true
}

// splitPath splits an escaped path into unescaped segments, so that an escaped '/' inside a
// group or user name stays in its segment. One trailing slash is tolerated; other empty segments
// are not.
func splitPath(escaped string) ([]string, bool) {
	p := strings.TrimPrefix(escaped, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, false
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

// headerBytes approximates the request's header size as sent: "name: value\r\n" per value.
func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func restNotFound(w http.ResponseWriter, r *http.Request) {
	restError(w, r, http.StatusNotFound, codeNotFound, "No REST API operation matches '"+r.URL.Path+"'.", "")
}

// allowMethods answers 405 unless the request uses one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	restError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method '"+r.Method+"' is not allowed here; use "+strings.Join(methods, ", ")+".", "")
	return false
}

// restAuth verifies the bearer token for hubID ("" for hub-less operations). REST audiences are
// checked leniently (auth.Verifier): the Management SDK signs them without port and with the
// query string.
func restAuth(w http.ResponseWriter, r *http.Request, in *instance, hubID string) (*auth.Token, bool) {
	raw := bearerToken(r)
	if raw == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		restError(w, r, http.StatusUnauthorized, codeUnauthorized, "An access token is required.", "")
		return nil, false
	}
	tok, err := in.verifier().Verify(raw, auth.KindREST, hubID)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		restError(w, r, http.StatusUnauthorized, codeUnauthorized, "Invalid access token: "+err.Error(), "")
		return nil, false
	}
	return tok, true
}

// validGroupName: 1 to 1024 UTF-16 code units (as .NET counts), not only whitespace.
func validGroupName(g string) bool {
	n, blank := 0, true
	for _, r := range g {
		n += utf16.RuneLen(r)
		if n > 1024 {
			return false
		}
		if !unicode.IsSpace(r) {
			blank = false
		}
	}
	return n > 0 && !blank
}

// readBody reads the request body, at most restMaxBody bytes, answering 413 when it is larger.
func (q *restReq) readBody() ([]byte, bool) {
	if q.r.ContentLength > restMaxBody {
		q.fail(http.StatusRequestEntityTooLarge, codeTooLarge, "The request body must not exceed 1 MB.", "")
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, restMaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		q.fail(http.StatusRequestEntityTooLarge, codeTooLarge, "The request body must not exceed 1 MB.", "")
		return nil, false
	case err != nil:
		q.invalid("Cannot read the request body: "+err.Error(), "")
		return nil, false
	}
	return b, true
}

// mediaType is the request's lower-case media type without parameters ("" when absent).
func (q *restReq) mediaType() string {
	ct := q.r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// restAccessKey answers GET /api[/v1]/auth/accessKey with the key that verified the token, as
// the server SDK expects after Entra ID authentication (§6.2).
func restAccessKey(w http.ResponseWriter, r *http.Request, in *instance, tok *auth.Token) {
	key := in.signingKey(tok)
	b, err := json.Marshal(struct {
		AccessKey string
		KeyID     string `json:"KeyId"`
	}{key, auth.DefaultKeyID(key)})
	if err != nil {
		restError(w, r, http.StatusInternalServerError, codeInternal, "Cannot encode the response.", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
