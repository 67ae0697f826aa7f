package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/server/servertest"
)

// sdkToken signs a REST token shaped like the Management SDK's: HS256, audience built from
// Endpoint without its port and with the request's path and query, nameid {machine}_{guid}.
func sdkToken(t *testing.T, key, pathQuery string) string {
	t.Helper()
	tok, err := auth.IssueToken(key, auth.IssueOptions{
		Audience: "http://localhost" + pathQuery,
		Claims:   []auth.Claim{{Type: auth.ClaimNameID, Value: "buildhost_5f0c3c0e6f1b4d5a9d7e2b1c3a4f5e6d"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type restReply struct {
	status int
	header http.Header
	body   []byte
}

func (r restReply) code() string { return r.header.Get("x-ms-error-code") }

// restCase is one REST call. auth: "" = an SDK-shaped token for the path, "none", "badkey", or
// "hub:<name>" (a token for another hub).
type restCase struct {
	name, method, path, ctype, body, auth string
	header                                http.Header
	bodyReader                            func() io.Reader // a body without Content-Length
	status                                int
	code                                  string // expected x-ms-error-code ("" = none)
	during                                func(t *testing.T)
	then                                  func(t *testing.T, r restReply)
}

func doREST(t *testing.T, ts *servertest.Instance, tc restCase) restReply {
	t.Helper()
	pq := tc.path
	if !strings.Contains(pq, "?") {
		pq += "?api-version=2022-06-01"
	} else if !strings.Contains(pq, "api-version=") {
		pq += "&api-version=2022-06-01"
	}
	var body io.Reader = strings.NewReader(tc.body)
	if tc.bodyReader != nil {
		body = tc.bodyReader()
	}
	req, err := http.NewRequest(tc.method, ts.URL+pq, body)
	if err != nil {
		t.Fatal(err)
	}
	if tc.bodyReader != nil {
		req.ContentLength = -1
	}
	for k, v := range tc.header {
		req.Header[k] = v
	}
	ctype := tc.ctype
	if ctype == "" && tc.body != "" {
		ctype = "application/json; charset=utf-8"
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	switch {
	case tc.auth == "":
		req.Header.Set("Authorization", "Bearer "+sdkToken(t, ts.Key, pq))
	case tc.auth == "badkey":
		req.Header.Set("Authorization", "Bearer "+sdkToken(t, "not-the-key-0123456789", pq))
	case strings.HasPrefix(tc.auth, "hub:"):
		req.Header.Set("Authorization", "Bearer "+sdkToken(t, ts.Key, "/api/hubs/"+strings.TrimPrefix(tc.auth, "hub:")+"/:send"))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return restReply{status: resp.StatusCode, header: resp.Header, body: b}
}

// peer reads whole hub messages of one raw client, splitting batched WebSocket messages.
type peer struct {
	*rawClient
	codec   hubproto.Codec
	pending []byte
}

func newPeer(c *rawClient, proto string) *peer {
	codec, _ := hubproto.CodecFor(proto)
	return &peer{rawClient: c, codec: codec}
}

func (p *peer) next(t *testing.T) hubproto.Message {
	t.Helper()
	for {
		if len(p.pending) > 0 {
			msg, _, rest, err := p.codec.Cut(p.pending, 1<<30)
			if err == nil {
				p.pending = rest
				m, err := p.codec.Decode(msg)
				if err != nil {
					t.Fatalf("%s: decode %q: %v", p.id, msg, err)
				}
				if _, ping := m.(hubproto.Ping); ping {
					continue
				}
				return m
			}
			if !errors.Is(err, protocol.ErrIncomplete) {
				t.Fatalf("%s: cut: %v", p.id, err)
			}
		}
		p.rawClient.t = t
		p.pending = append(p.pending, p.read()...)
	}
}

// invocation reads the next message, which must be an Invocation of target, and returns its
// arguments as normalized JSON (MessagePack arguments are decoded first).
func (p *peer) invocation(t *testing.T, target string) (hubproto.Invocation, string) {
	t.Helper()
	m := p.next(t)
	inv, ok := m.(hubproto.Invocation)
	if !ok || inv.Target != target {
		t.Fatalf("%s: got %#v, want an Invocation of %q", p.id, m, target)
	}
	args := make([]any, len(inv.Arguments))
	for i, a := range inv.Arguments {
		args[i] = p.decode(t, a)
	}
	b, _ := json.Marshal(args)
	return inv, string(b)
}

func (p *peer) decode(t *testing.T, r hubproto.Raw) any {
	t.Helper()
	var v any
	var err error
	if p.codec.Format() == protocol.Binary {
		err = msgpack.Unmarshal(r, &v)
	} else {
		err = json.Unmarshal(r, &v)
	}
	if err != nil {
		t.Fatalf("%s: argument %q: %v", p.id, r, err)
	}
	return v
}

// expectArgs checks the next Invocation's target and arguments.
func (p *peer) expectArgs(t *testing.T, target, args string) {
	t.Helper()
	if _, got := p.invocation(t, target); got != args {
		t.Fatalf("%s: %s arguments %s, want %s", p.id, target, got, args)
	}
}

func normJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRESTAPI(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	connectPeer := func(user, proto string) *peer {
		c, _ := connect(t, ts, app, "chat", user, proto)
		return newPeer(c, proto)
	}
	alice := connectPeer("alice", "json")
	bob := connectPeer("bob", "messagepack")
	anon := connectPeer("", "json")
	erin1 := connectPeer("erin", "json")
	erin2 := connectPeer("erin", "json")
	frank := connectPeer("frank", "json")
	gina := connectPeer("gina", "json")
	// A second hub reached through ?application=app: hub id app_chat.
	app2 := dialApp(t, ts, "app_chat", "s2")
	carlC, _ := connect(t, ts, app2, "app_chat", "carl", "json")
	carl := newPeer(carlC, "json")

	const base, v1 = "/api/hubs/chat", "/api/v1/hubs/chat"
	// fence proves that p received nothing since its last read: a message sent to it alone
	// must be the next one it reads.
	fenceN := 0
	fence := func(t *testing.T, p *peer) {
		t.Helper()
		fenceN++
		tag := "fence" + strings.Repeat("!", fenceN)
		r := doREST(t, ts, restCase{method: "POST", path: base + "/connections/" + p.id + "/:send", body: `{"target":"` + tag + `"}`})
		if r.status != http.StatusAccepted {
			t.Fatalf("fence send: %d %s", r.status, r.body)
		}
		p.expectArgs(t, tag, `[]`)
	}
	gets := func(target, args string, ps ...*peer) func(*testing.T, restReply) {
		return func(t *testing.T, _ restReply) {
			for _, p := range ps {
				p.expectArgs(t, target, args)
			}
		}
	}
	nothingFor := func(ps ...*peer) func(*testing.T, restReply) {
		return func(t *testing.T, _ restReply) {
			for _, p := range ps {
				fence(t, p)
			}
		}
	}
	all := func(fs ...func(*testing.T, restReply)) func(*testing.T, restReply) {
		return func(t *testing.T, r restReply) {
			for _, f := range fs {
				f(t, r)
			}
		}
	}
	status := func(path string, want int, code string) func(*testing.T, restReply) {
		return func(t *testing.T, _ restReply) {
			t.Helper()
			r := doREST(t, ts, restCase{method: "GET", path: path})
			if r.status != want || r.code() != code {
				t.Fatalf("GET %s = %d %q, want %d %q", path, r.status, r.code(), want, code)
			}
		}
	}
	// answer makes p complete the next invocation it receives with result (a JSON value) or err.
	answer := func(p *peer, target, args, result, errText string) func(*testing.T) {
		return func(t *testing.T) {
			inv, got := p.invocation(t, target)
			if got != args || inv.InvocationID == "" {
				t.Errorf("%s: invoke %s %s id %q", p.id, target, got, inv.InvocationID)
			}
			comp := &hubproto.Completion{InvocationID: inv.InvocationID, Error: errText}
			if errText == "" {
				comp.HasResult = true
				comp.Result = hubproto.Raw(result)
				if p.codec.Format() == protocol.Binary {
					var v any
					_ = json.Unmarshal([]byte(result), &v)
					comp.Result = hubproto.Raw(mustMsgpackT(t, v))
				}
			}
			f, err := p.codec.Append(nil, comp)
			if err != nil {
				t.Fatal(err)
			}
			typ := websocket.MessageText
			if p.codec.Format() == protocol.Binary {
				typ = websocket.MessageBinary
			}
			if err := p.ws.Write(context.Background(), typ, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	closed := func(p *peer, reason string) func(*testing.T, restReply) {
		return func(t *testing.T, _ restReply) {
			m := p.next(t)
			cl, ok := m.(hubproto.Close)
			if !ok || cl.Error != reason || cl.AllowReconnect {
				t.Fatalf("%s: got %#v, want Close{%q, allowReconnect false}", p.id, m, reason)
			}
			// Reading on answers the service's close handshake, so the socket ends at once.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, _, err := p.ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("%s: want a normal closure, got %v", p.id, err)
			}
			expectCloseConnection(t, app, p.id)
		}
	}
	jf := `{"type":1,"target":"raw","arguments":["j"]}` + "\x1e"
	mf, _ := hubproto.MessagePack().Append(nil, &hubproto.Invocation{Target: "raw", Arguments: []hubproto.Raw{mustMsgpackT(t, "m")}})
	octet := string(mustMsgpackT(t, map[string][]byte{"json": []byte(jf), "messagepack": mf}))
	bigBody := `{"target":"big","arguments":["` + strings.Repeat("x", 1<<20) + `"]}`
	longGroup := strings.Repeat("g", 1025)

	cases := []restCase{
		// Authentication, routing and limits.
		{name: "no token", method: "POST", path: base + "/:send", body: `{"target":"x"}`, auth: "none", status: 401, code: "Error.Request.Unauthorized"},
		{name: "wrong key", method: "POST", path: base + "/:send", body: `{"target":"x"}`, auth: "badkey", status: 401, code: "Error.Request.Unauthorized"},
		{name: "token for another hub", method: "POST", path: base + "/:send", body: `{"target":"x"}`, auth: "hub:other", status: 401, code: "Error.Request.Unauthorized"},
		{name: "wrong method", method: "GET", path: base + "/:send", status: 405, code: "Error.Request.MethodNotAllowed", then: func(t *testing.T, r restReply) {
			if r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		}},
		{name: "wrong method on a group", method: "PATCH", path: base + "/groups/g1", status: 405, code: "Error.Request.MethodNotAllowed", then: func(t *testing.T, r restReply) {
			if r.header.Get("Allow") != "GET, HEAD, POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		}},
		{name: "unknown operation", method: "POST", path: base + "/:frobnicate", status: 404, code: "Error.Request.NotFound"},
		{name: "unknown api", method: "GET", path: "/api/whatever", status: 404, code: "Error.Request.NotFound"},
		{name: "bad hub name", method: "POST", path: "/api/hubs/1chat/:send", body: `{"target":"x"}`, status: 400, code: "Error.Request.Invalid", then: func(t *testing.T, r restReply) {
			var e map[string]string
			_ = json.Unmarshal(r.body, &e)
			if !strings.HasPrefix(e["message"], "Invalid hub name. Valid hub name should be in between 1 and 128") || e["code"] != "Error.Request.Invalid" || e["target"] != "hub" {
				t.Errorf("error body %s", r.body)
			}
		}},
		{name: "bad application", method: "POST", path: base + "/:send?application=9app", body: `{"target":"x"}`, status: 400, code: "Error.Request.Invalid"},
		{name: "body too large", method: "POST", path: base + "/:send", body: bigBody, status: 413, code: "Error.Request.TooLarge"},
		{name: "chunked body too large", method: "POST", path: base + "/:send", ctype: "application/json", bodyReader: func() io.Reader { return strings.NewReader(bigBody) }, status: 413, code: "Error.Request.TooLarge"},
		{name: "headers too large", method: "POST", path: base + "/:send", body: `{"target":"x"}`, header: http.Header{"X-Big": {strings.Repeat("h", 17<<10)}}, status: 431, code: "Error.Request.HeadersTooLarge"},
		{name: "empty body", method: "POST", path: base + "/:send", ctype: "application/json", status: 400, code: "Error.Request.Invalid", then: func(t *testing.T, r restReply) {
			if !strings.Contains(string(r.body), "Message in request body is required.") {
				t.Errorf("body %s", r.body)
			}
		}},
		{name: "no target", method: "POST", path: base + "/:send", body: `{"arguments":[1]}`, status: 400, code: "Error.Request.Invalid"},
		{name: "not json", method: "POST", path: base + "/:send", body: `{"target":`, status: 400, code: "Error.Request.Invalid"},
		{name: "unsupported media type", method: "POST", path: base + "/:send", ctype: "text/plain", body: "hi", status: 415, code: "Error.Request.UnsupportedMediaType"},

		// Sends: JSON clients get JSON, MessagePack clients get the converted arguments.
		{name: "broadcast", method: "POST", path: base + "/:send", body: `{"Target":"hello","Arguments":["x",1,{"a":[true,null,2.5]}]}`, status: 202,
			then: gets("hello", `["x",1,{"a":[true,null,2.5]}]`, alice, bob, anon, erin1, erin2, frank, gina)},
		{name: "v1 broadcast with exclusions", method: "POST", path: v1 + "?excluded=" + bob.id + "&excluded=" + anon.id, body: `{"target":"v1all","arguments":[]}`, status: 202,
			then: all(gets("v1all", `[]`, alice, erin1, erin2, frank, gina), nothingFor(bob, anon))},
		{name: "send to user", method: "POST", path: base + "/users/erin/:send", body: `{"target":"u","arguments":["e"]}`, status: 202,
			then: all(gets("u", `["e"]`, erin1, erin2), nothingFor(alice))},
		{name: "v1 send to user", method: "POST", path: v1 + "/users/bob", body: `{"target":"u1","arguments":[{"n":-7}]}`, status: 202, then: gets("u1", `[{"n":-7}]`, bob)},
		{name: "send to connection", method: "POST", path: base + "/connections/" + bob.id + "/:send", body: `{"target":"c","arguments":[18446744073709551615]}`, status: 202,
			then: gets("c", `[18446744073709551615]`, bob)},
		{name: "v1 send to connection", method: "POST", path: v1 + "/connections/" + alice.id, body: `{"target":"c1"}`, status: 202, then: gets("c1", `[]`, alice)},
		{name: "send to unknown connection", method: "POST", path: base + "/connections/nobody/:send", body: `{"target":"c"}`, status: 202},
		{name: "send to application hub", method: "POST", path: base + "/:send?application=App", body: `{"target":"appmsg"}`, status: 202,
			then: all(gets("appmsg", `[]`, carl), nothingFor(alice))},
		{name: "octet-stream payloads are delivered verbatim", method: "POST", path: base + "/connections/" + alice.id + "/:send", ctype: "application/octet-stream", body: octet, status: 202,
			then: gets("raw", `["j"]`, alice)},
		{name: "octet-stream to a MessagePack client", method: "POST", path: base + "/users/bob/:send", ctype: "application/octet-stream", body: octet, status: 202,
			then: gets("raw", `["m"]`, bob)},
		{name: "bad octet-stream", method: "POST", path: base + "/:send", ctype: "application/octet-stream", body: "\x91\x01", status: 400, code: "Error.Request.Invalid"},

		// Connection groups.
		{name: "add connection to group", method: "PUT", path: base + "/groups/g1/connections/" + alice.id, status: 200},
		{name: "add connection to group (mirror path)", method: "PUT", path: base + "/connections/" + bob.id + "/groups/g1", status: 200},
		{name: "v1 add connection to group", method: "PUT", path: v1 + "/groups/g1/connections/" + frank.id, status: 200},
		{name: "add unknown connection", method: "PUT", path: base + "/groups/g1/connections/nobody", status: 404, code: "Error.Connection.NotExisted"},
		{name: "bad group name", method: "PUT", path: base + "/groups/%20%20/connections/" + alice.id, status: 400, code: "Error.Request.Invalid"},
		{name: "group name too long", method: "POST", path: base + "/groups/" + longGroup + "/:send", body: `{"target":"x"}`, status: 400, code: "Error.Request.Invalid"},
		{name: "group send with exclusion", method: "POST", path: base + "/groups/g1/:send?excluded=" + frank.id, body: `{"target":"g","arguments":["g1"]}`, status: 202,
			then: all(gets("g", `["g1"]`, alice, bob), nothingFor(frank, erin1))},
		{name: "v1 group send", method: "POST", path: v1 + "/groups/g1", body: `{"target":"gv1"}`, status: 202, then: gets("gv1", `[]`, alice, bob, frank)},
		{name: "group exists", method: "HEAD", path: base + "/groups/g1", status: 200},
		{name: "group does not exist", method: "GET", path: base + "/groups/nope", status: 404, code: "Warning.Group.NotExisted"},
		{name: "group does not exist (HEAD)", method: "HEAD", path: v1 + "/groups/nope", status: 404, code: "Warning.Group.NotExisted"},
		{name: "list group page 1", method: "GET", path: base + "/groups/g1/connections?maxpagesize=2", status: 200, then: func(t *testing.T, r restReply) {
			var page struct {
				Value    []map[string]string
				NextLink string
			}
			if err := json.Unmarshal(r.body, &page); err != nil || len(page.Value) != 2 || page.NextLink == "" {
				t.Fatalf("page 1 %s %v", r.body, err)
			}
			u, err := url.Parse(page.NextLink)
			if err != nil || u.Host != strings.TrimPrefix(ts.URL, "http://") || u.Query().Get("maxpagesize") != "2" {
				t.Fatalf("nextLink %q", page.NextLink)
			}
			r2 := doREST(t, ts, restCase{method: "GET", path: u.RequestURI()})
			var page2 struct {
				Value    []map[string]string
				NextLink string
			}
			if err := json.Unmarshal(r2.body, &page2); err != nil || r2.status != 200 || len(page2.Value) != 1 || page2.NextLink != "" {
				t.Fatalf("page 2 %d %s %v", r2.status, r2.body, err)
			}
			seen := map[string]string{}
			for _, m := range append(page.Value, page2.Value...) {
				seen[m["connectionId"]] = m["userId"]
			}
			if seen[alice.id] != "alice" || seen[bob.id] != "bob" || seen[frank.id] != "frank" {
				t.Fatalf("members %v", seen)
			}
		}},
		{name: "list group with top", method: "GET", path: base + "/groups/g1/connections?top=1", status: 200, then: func(t *testing.T, r restReply) {
			var page map[string]any
			_ = json.Unmarshal(r.body, &page)
			if len(page["value"].([]any)) != 1 || page["nextLink"] != nil {
				t.Fatalf("page %s", r.body)
			}
		}},
		{name: "list empty group", method: "GET", path: base + "/groups/empty/connections", status: 200, then: func(t *testing.T, r restReply) {
			if string(r.body) != `{"value":[]}` {
				t.Fatalf("page %s", r.body)
			}
		}},
		{name: "list with bad page size", method: "GET", path: base + "/groups/g1/connections?maxpagesize=201", status: 400, code: "Error.Request.Invalid"},
		{name: "list with bad continuation", method: "GET", path: base + "/groups/g1/connections?continuationToken=***", status: 400, code: "Error.Request.Invalid"},
		{name: "remove connection from group", method: "DELETE", path: base + "/groups/g1/connections/" + alice.id, status: 200,
			then: all(nothingFor(alice), func(t *testing.T, _ restReply) {
				doREST(t, ts, restCase{method: "POST", path: base + "/groups/g1/:send", body: `{"target":"after"}`})
				bob.expectArgs(t, "after", `[]`)
				frank.expectArgs(t, "after", `[]`)
				fence(t, alice)
			})},
		{name: "remove unknown connection from group", method: "DELETE", path: base + "/groups/g1/connections/nobody", status: 200},
		{name: "remove connection from group (mirror path)", method: "DELETE", path: base + "/connections/" + frank.id + "/groups/g1", status: 200},
		{name: "remove connection from all groups", method: "DELETE", path: base + "/connections/" + bob.id + "/groups", status: 200,
			then: status(base+"/groups/g1", 404, "Warning.Group.NotExisted")},

		// Existence checks.
		{name: "connection exists", method: "HEAD", path: base + "/connections/" + alice.id, status: 200},
		{name: "v1 connection exists", method: "GET", path: v1 + "/connections/" + alice.id, status: 200},
		{name: "connection does not exist", method: "HEAD", path: base + "/connections/nobody", status: 404, code: "Warning.Connection.NotExisted"},
		{name: "connection does not exist (GET)", method: "GET", path: base + "/connections/nobody", status: 404, code: "Warning.Connection.NotExisted", then: func(t *testing.T, r restReply) {
			var e map[string]string
			if err := json.Unmarshal(r.body, &e); err != nil || e["code"] != "Warning.Connection.NotExisted" || e["message"] == "" {
				t.Fatalf("error body %s", r.body)
			}
		}},
		{name: "user exists", method: "GET", path: base + "/users/alice", status: 200},
		{name: "user does not exist", method: "HEAD", path: base + "/users/carol", status: 404, code: "Warning.User.NotExisted"},

		// User groups.
		{name: "add user to group with ttl", method: "PUT", path: base + "/users/erin/groups/ug?ttl=60", status: 200},
		{name: "user group send reaches every connection of the user", method: "POST", path: base + "/groups/ug/:send", body: `{"target":"ug"}`, status: 202,
			then: all(gets("ug", `[]`, erin1, erin2), nothingFor(alice))},
		{name: "user in group (SDK uses GET)", method: "GET", path: base + "/users/erin/groups/ug", status: 200},
		{name: "user in group (v1 path)", method: "HEAD", path: v1 + "/groups/ug/users/erin", status: 200},
		{name: "user not in group", method: "GET", path: base + "/users/alice/groups/ug", status: 404, code: "Info.User.NotInGroup"},
		{name: "v1 add user to group", method: "PUT", path: v1 + "/groups/ug2/users/bob", status: 202, then: status(base+"/users/bob/groups/ug2", 200, "")},
		{name: "add user without ttl", method: "PUT", path: base + "/users/alice/groups/ug3", status: 200, then: status(base+"/users/alice/groups/ug3", 200, "")},
		{name: "ttl=0 adds current connections only", method: "PUT", path: base + "/users/gina/groups/now?ttl=0", status: 200,
			then: all(status(base+"/users/gina/groups/now", 200, ""), func(t *testing.T, _ restReply) {
				// The user itself is no member: a new connection of gina stays outside.
				g2 := connectPeer("gina", "json")
				doREST(t, ts, restCase{method: "POST", path: base + "/groups/now/:send", body: `{"target":"now"}`})
				gina.expectArgs(t, "now", `[]`)
				fence(t, g2)
			})},
		{name: "negative ttl", method: "PUT", path: base + "/users/erin/groups/ug?ttl=-1", status: 400, code: "Error.Request.Invalid"},
		{name: "non-numeric ttl", method: "PUT", path: base + "/users/erin/groups/ug?ttl=soon", status: 400, code: "Error.Request.Invalid"},
		{name: "remove user from group", method: "DELETE", path: base + "/users/erin/groups/ug", status: 204,
			then: status(base+"/users/erin/groups/ug", 404, "Info.User.NotInGroup")},
		{name: "v1 remove user from group", method: "DELETE", path: v1 + "/groups/ug2/users/bob", status: 202,
			then: status(base+"/users/bob/groups/ug2", 404, "Info.User.NotInGroup")},
		{name: "remove user from all groups", method: "DELETE", path: base + "/users/alice/groups", status: 204,
			then: status(base+"/users/alice/groups/ug3", 404, "Info.User.NotInGroup")},
		{name: "v1 remove user from all groups", method: "DELETE", path: v1 + "/users/gina/groups", status: 200,
			then: status(base+"/users/gina/groups/now", 404, "Info.User.NotInGroup")},

		// :execute with an OData filter.
		{name: "execute send with filter", method: "POST", path: base + "/:execute?filter=" + url.QueryEscape("userId eq 'alice' or userId eq 'bob'"),
			body: `[{"type":"SendMessage","message":{"target":"ex","arguments":[1]}}]`, status: 202,
			then: all(gets("ex", `[1]`, alice, bob), nothingFor(erin1, anon))},
		{name: "execute join and send", method: "POST", path: base + "/:execute?filter=" + url.QueryEscape("startswith(userId, 'er') and not ('g9' in groups)"),
			body: `[{"type":"JoinGroup","group":"g9"},{"Type":"sendMessage","Message":{"Target":"ex2"}}]`, status: 202,
			then: all(gets("ex2", `[]`, erin1, erin2), status(base+"/users/erin/groups/g9", 200, ""), nothingFor(alice))},
		{name: "execute on anonymous connections", method: "POST", path: base + "/:execute?filter=" + url.QueryEscape("userId eq null"),
			body: `[{"type":"SendMessage","message":{"target":"anon"}}]`, status: 202, then: gets("anon", `[]`, anon)},
		{name: "execute leave", method: "POST", path: base + "/:execute?filter=" + url.QueryEscape("'g9' in groups"),
			body: `[{"type":"LeaveGroup","group":"g9"}]`, status: 202, then: status(base+"/groups/g9", 404, "Warning.Group.NotExisted")},
		{name: "execute with a bad filter", method: "POST", path: base + "/:execute?filter=" + url.QueryEscape("userId eq"),
			body: `[]`, status: 400, code: "Error.Request.Invalid", then: func(t *testing.T, r restReply) {
				if !strings.Contains(string(r.body), `"target":"filter"`) {
					t.Errorf("body %s", r.body)
				}
			}},
		{name: "execute with a bad command", method: "POST", path: base + "/:execute", body: `[{"type":"Explode"}]`, status: 400, code: "Error.Request.Invalid"},
		{name: "execute join without group", method: "POST", path: base + "/:execute", body: `[{"type":"JoinGroup"}]`, status: 400, code: "Error.Request.Invalid"},

		// :generateToken and accessKey.
		{name: "generate token", method: "POST", path: base + "/:generateToken?userId=dave&minutesToExpire=5&api-version=2022-11-01", status: 200, then: func(t *testing.T, r restReply) {
			var body map[string]string
			if err := json.Unmarshal(r.body, &body); err != nil || body["token"] == "" {
				t.Fatalf("body %s", r.body)
			}
			claims := jwtPayload(t, body["token"])
			if claims["aud"] != "http://127.0.0.1/client/?hub=chat" || claims[auth.ClaimUserID] != "dave" || claims["nameid"] != "dave" {
				t.Fatalf("claims %v", claims)
			}
			if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 {
				t.Fatalf("lifetime %v s", exp-iat)
			}
			if st, neg := negotiate(t, ts, "chat", body["token"]); st != 200 || neg["connectionId"] == nil {
				t.Fatalf("negotiate with the generated token: %d %v", st, neg)
			}
		}},
		{name: "generate token with defaults", method: "POST", path: base + "/:generateToken?application=app", status: 200, then: func(t *testing.T, r restReply) {
			var body map[string]string
			_ = json.Unmarshal(r.body, &body)
			claims := jwtPayload(t, body["token"])
			if claims["aud"] != "http://127.0.0.1/client/?hub=app_chat" || claims[auth.ClaimUserID] != nil || claims["exp"].(float64)-claims["iat"].(float64) != 3600 {
				t.Fatalf("claims %v", claims)
			}
		}},
		{name: "generate token for 0 minutes", method: "POST", path: base + "/:generateToken?minutesToExpire=0", status: 400, code: "Error.Request.Invalid"},
		{name: "access key", method: "GET", path: "/api/auth/accessKey?api-version=2023-07-01", status: 200, then: func(t *testing.T, r restReply) {
			var body map[string]string
			if err := json.Unmarshal(r.body, &body); err != nil || body["AccessKey"] != ts.Key || body["KeyId"] != auth.DefaultKeyID(ts.Key) {
				t.Fatalf("body %s", r.body)
			}
		}},
		{name: "v1 access key", method: "GET", path: "/api/v1/auth/accessKey", status: 200},
		{name: "access key needs a token", method: "GET", path: "/api/auth/accessKey", auth: "none", status: 401, code: "Error.Request.Unauthorized"},
		{name: "access key is GET only", method: "POST", path: "/api/auth/accessKey", status: 405, code: "Error.Request.MethodNotAllowed"},

		// 2024-12-01: client invocation and streams.
		{name: "invoke a JSON client", method: "POST", path: base + "/connections/" + alice.id + "/:invoke?api-version=2024-12-01", body: `{"target":"ask","arguments":["q"]}`,
			during: answer(alice, "ask", `["q"]`, `{"answer":42}`, ""), status: 200, then: func(t *testing.T, r restReply) {
				if normJSON(t, string(r.body)) != `{"result":{"answer":42}}` {
					t.Fatalf("body %s", r.body)
				}
			}},
		{name: "invoke a MessagePack client", method: "POST", path: base + "/connections/" + bob.id + "/:invoke", body: `{"target":"ask","arguments":[{"k":[1,"two"]}]}`,
			during: answer(bob, "ask", `[{"k":[1,"two"]}]`, `{"answer":[1.5,"x",null]}`, ""), status: 200, then: func(t *testing.T, r restReply) {
				if normJSON(t, string(r.body)) != `{"result":{"answer":[1.5,"x",null]}}` {
					t.Fatalf("body %s", r.body)
				}
			}},
		{name: "invoke with a client error", method: "POST", path: base + "/connections/" + alice.id + "/:invoke", body: `{"target":"ask"}`,
			during: answer(alice, "ask", `[]`, "", "no idea"), status: 500, code: "Error.Invocation.Failed", then: func(t *testing.T, r restReply) {
				if !strings.Contains(string(r.body), "no idea") {
					t.Fatalf("body %s", r.body)
				}
			}},
		{name: "invoke an unknown connection", method: "POST", path: base + "/connections/nobody/:invoke", body: `{"target":"ask"}`, status: 404, code: "Error.Connection.NotExisted"},
		{name: "invoke without target", method: "POST", path: base + "/connections/" + alice.id + "/:invoke", body: `{}`, status: 400, code: "Error.Request.Invalid"},
		{name: "stream item", method: "POST", path: base + "/connections/" + alice.id + "/streams/s1/:send", body: `{"n":1}`, status: 202, then: func(t *testing.T, _ restReply) {
			m := alice.next(t)
			if si, ok := m.(hubproto.StreamItem); !ok || si.InvocationID != "s1" || string(si.Item) != `{"n":1}` {
				t.Fatalf("got %#v", m)
			}
		}},
		{name: "last stream item to a MessagePack client", method: "POST", path: base + "/connections/" + bob.id + "/streams/s2/:send?completed=true", body: `"end"`, status: 202, then: func(t *testing.T, _ restReply) {
			m := bob.next(t)
			if si, ok := m.(hubproto.StreamItem); !ok || si.InvocationID != "s2" || bob.decode(t, si.Item) != "end" {
				t.Fatalf("got %#v", m)
			}
			if c, ok := bob.next(t).(hubproto.Completion); !ok || c.InvocationID != "s2" || c.Error != "" || c.HasResult {
				t.Fatalf("got %#v", c)
			}
		}},
		{name: "complete a stream with an error", method: "POST", path: base + "/connections/" + alice.id + "/streams/s1/:complete?reason=boom", status: 202, then: func(t *testing.T, _ restReply) {
			if c, ok := alice.next(t).(hubproto.Completion); !ok || c.InvocationID != "s1" || c.Error != "boom" {
				t.Fatalf("got %#v", c)
			}
		}},
		{name: "stream to an unknown connection", method: "POST", path: base + "/connections/nobody/streams/s1/:send", body: `1`, status: 404, code: "Error.Connection.NotExisted"},
		{name: "stream id too long", method: "POST", path: base + "/connections/" + alice.id + "/streams/" + strings.Repeat("s", 101) + "/:complete", status: 400, code: "Error.Request.Invalid"},
		{name: "stream item not JSON", method: "POST", path: base + "/connections/" + alice.id + "/streams/s1/:send", body: `{`, status: 400, code: "Error.Request.Invalid"},

		// Closes (last: they end connections).
		{name: "close connection", method: "DELETE", path: base + "/connections/" + frank.id + "?reason=bye", status: 200, then: closed(frank, "bye")},
		{name: "close unknown connection", method: "DELETE", path: base + "/connections/" + frank.id, status: 404, code: "Warning.Connection.NotExisted"},
		{name: "v1 close connection", method: "DELETE", path: v1 + "/connections/" + gina.id, status: 202, then: closed(gina, "")},
		{name: "close user connections", method: "POST", path: base + "/users/erin/:closeConnections?reason=out&excluded=" + erin2.id, status: 204,
			then: all(closed(erin1, "out"), nothingFor(erin2))},
		{name: "join the group to close", method: "PUT", path: base + "/groups/gc/connections/" + erin2.id, status: 200},
		{name: "close group connections", method: "POST", path: base + "/groups/gc/:closeConnections?reason=grp", status: 204,
			then: all(closed(erin2, "grp"), nothingFor(alice))},
		{name: "close all connections", method: "POST", path: base + "/:closeConnections?reason=all&excluded=" + alice.id + "&excluded=" + bob.id, status: 204,
			then: all(closed(anon, "all"), nothingFor(alice, bob))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r restReply
			if tc.during != nil {
				done := make(chan restReply, 1)
				go func() { done <- doREST(t, ts, tc) }()
				tc.during(t)
				select {
				case r = <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("no response")
				}
			} else {
				r = doREST(t, ts, tc)
			}
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%s %s = %d %q %s, want %d %q", tc.method, tc.path, r.status, r.code(), abbrev(string(r.body)), tc.status, tc.code)
			}
			if tc.then != nil {
				tc.then(t, r)
			}
		})
	}
}

// TestRESTInvokeConnectionCloses: a pending :invoke fails with 404 when its client goes away.
func TestRESTInvokeConnectionCloses(t *testing.T) {
	t.Parallel()
	ts := start(t)
	app := dialApp(t, ts, "chat", "s1")
	c, _ := connect(t, ts, app, "chat", "", "json")
	p := newPeer(c, "json")
	done := make(chan restReply, 1)
	go func() {
		done <- doREST(t, ts, restCase{method: "POST", path: "/api/hubs/chat/connections/" + c.id + "/:invoke", body: `{"target":"ask"}`})
	}()
	p.invocation(t, "ask")
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	select {
	case r := <-done:
		if r.status != http.StatusNotFound || r.code() != "Error.Connection.NotExisted" {
			t.Fatalf("got %d %q %s", r.status, r.code(), r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no response")
	}
}

// TestRESTHealthStaysAnonymous: mounting the REST API keeps the health probes token-free.
func TestRESTHealthStaysAnonymous(t *testing.T) {
	t.Parallel()
	ts := start(t)
	for _, p := range []string{"/api/health", "/api/v1/health", "/api/health?api-version=2022-06-01"} {
		resp, err := http.Head(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s = %d", p, resp.StatusCode)
		}
	}
}

func mustMsgpackT(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
