package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNegotiateRequestShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		path          string // appended to the server URL
		version       int    // negotiate version the server answers
		inQuery       bool
		wantNegPath   string
		wantNegQuery  string
		wantConnPath  string
		wantConnQuery string
	}{
		{"plain", "/chat", 1, false, "/chat/negotiate", "negotiateVersion=1", "/chat", "id=tok-1"},
		{"trailing slash", "/client/", 1, false, "/client/negotiate", "negotiateVersion=1", "/client/", "id=tok-1"},
		{"query kept", "/client/?hub=chat&asrs.op=%2Fchat", 1, false, "/client/negotiate",
			"hub=chat&asrs.op=%2Fchat&negotiateVersion=1", "/client/", "hub=chat&asrs.op=%2Fchat&id=tok-1"},
		{"version present", "/chat?negotiateVersion=1&x=1", 1, false, "/chat/negotiate", "negotiateVersion=1&x=1",
			"/chat", "negotiateVersion=1&x=1&id=tok-1"},
		{"negotiate v0 uses connectionId", "/chat", 0, false, "/chat/negotiate", "negotiateVersion=1", "/chat", "id=cid-1"},
		{"token in query", "/chat", 1, true, "/chat/negotiate", "negotiateVersion=1", "/chat", "id=tok-1&access_token=tok%2Bx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, r *http.Request, n int) {
					writeJSON(w, connectionResponse(n, tt.version))
				}
			})
			var calls int
			var mu sync.Mutex
			c := dial(t, fs, Options{
				URL: fs.srv.URL + tt.path,
				AccessToken: func(context.Context) (string, error) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					return "tok+x", nil
				},
				AccessTokenInQuery: tt.inQuery,
				Headers:            http.Header{"X-Custom": {"v"}},
			})
			fs.accept(t)
			negs, conns := fs.recorded()
			if len(negs) != 1 || len(conns) != 1 {
				t.Fatalf("requests: %d negotiates, %d connects; want 1 and 1", len(negs), len(conns))
			}
			n := negs[0]
			if n.Method != http.MethodPost || n.URL.Path != tt.wantNegPath || n.URL.RawQuery != tt.wantNegQuery {
				t.Errorf("negotiate = %s %s?%s, want POST %s?%s", n.Method, n.URL.Path, n.URL.RawQuery, tt.wantNegPath, tt.wantNegQuery)
			}
			for h, want := range map[string]string{
				"Authorization":    "Bearer tok+x",
				"X-Requested-With": "XMLHttpRequest",
				"X-Custom":         "v",
			} {
				if got := n.Header.Get(h); got != want {
					t.Errorf("negotiate header %s = %q, want %q", h, got, want)
				}
			}
			cr := conns[0]
			if cr.URL.Path != tt.wantConnPath || cr.URL.RawQuery != tt.wantConnQuery {
				t.Errorf("connect = %s?%s, want %s?%s", cr.URL.Path, cr.URL.RawQuery, tt.wantConnPath, tt.wantConnQuery)
			}
			wantAuth := "Bearer tok+x"
			if tt.inQuery {
				wantAuth = ""
			}
			if got := cr.Header.Get("Authorization"); got != wantAuth {
				t.Errorf("connect Authorization = %q, want %q", got, wantAuth)
			}
			if got := cr.Header.Get("X-Custom"); got != "v" {
				t.Errorf("connect X-Custom = %q", got)
			}
			wantID := "cid-1"
			if got := c.ConnectionID(); got != wantID {
				t.Errorf("ConnectionID = %q, want %q", got, wantID)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != 2 { // once for negotiate, once for the WebSocket, like the JS client
				t.Errorf("token factory called %d times, want 2", calls)
			}
		})
	}
}

func TestNegotiateRedirect(t *testing.T) {
	t.Parallel()
	var fs *fakeServer
	fs = newFakeServer(t, func(s *fakeServer) {
		s.negotiate = func(w http.ResponseWriter, r *http.Request, n int) {
			if strings.HasPrefix(r.URL.Path, "/chat/") {
				writeJSON(w, map[string]any{"url": fs.srv.URL + "/client/?hub=chat", "accessToken": "svc-token"})
				return
			}
			writeJSON(w, connectionResponse(n, 1))
		}
	})
	c := dial(t, fs, Options{
		AccessToken: func(context.Context) (string, error) { return "app-token", nil },
	})
	sc := fs.accept(t)
	negs, _ := fs.recorded()
	if len(negs) != 2 {
		t.Fatalf("%d negotiates, want 2", len(negs))
	}
	if got := negs[0].Header.Get("Authorization"); got != "Bearer app-token" {
		t.Errorf("app negotiate Authorization = %q", got)
	}
	if got, want := negs[1].URL.Path+"?"+negs[1].URL.RawQuery, "/client/negotiate?hub=chat&negotiateVersion=1"; got != want {
		t.Errorf("service negotiate = %q, want %q", got, want)
	}
	if got := negs[1].Header.Get("Authorization"); got != "Bearer svc-token" {
		t.Errorf("service negotiate Authorization = %q", got)
	}
	if got, want := sc.req.URL.Path+"?"+sc.req.URL.RawQuery, "/client/?hub=chat&id=tok-2"; got != want {
		t.Errorf("connect = %q, want %q", got, want)
	}
	if got := sc.req.Header.Get("Authorization"); got != "Bearer svc-token" {
		t.Errorf("connect Authorization = %q", got)
	}
	if c.ConnectionID() != "cid-2" {
		t.Errorf("ConnectionID = %q", c.ConnectionID())
	}
}

func TestSkipNegotiation(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{
		URL:             strings.Replace(fs.srv.URL, "http", "ws", 1) + "/client/?hub=chat",
		SkipNegotiation: true,
		AccessToken:     func(context.Context) (string, error) { return "t", nil },
	})
	sc := fs.accept(t)
	if negs, _ := fs.recorded(); len(negs) != 0 {
		t.Errorf("%d negotiates, want 0", len(negs))
	}
	if got := sc.req.URL.RawQuery; got != "hub=chat" {
		t.Errorf("connect query = %q", got)
	}
	if got := sc.req.Header.Get("Authorization"); got != "Bearer t" {
		t.Errorf("connect Authorization = %q", got)
	}
	if c.ConnectionID() != "" {
		t.Errorf("ConnectionID = %q, want empty", c.ConnectionID())
	}
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(fs *fakeServer)
		opts      Options
		want      string // exact error text; "" to skip
		check     func(t *testing.T, err error, fs *fakeServer)
	}{
		{
			name: "negotiate error payload",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, _ int) {
					writeJSON(w, map[string]any{"error": "This connection is not allowed."})
				}
			},
			want: "This connection is not allowed.",
			check: func(t *testing.T, err error, _ *fakeServer) {
				var ne *NegotiateError
				if !errors.As(err, &ne) {
					t.Errorf("error %T is not a *NegotiateError", err)
				}
			},
		},
		{
			name: "negotiate 401",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, _ int) {
					http.Error(w, "nope", http.StatusUnauthorized)
				}
			},
			want: "Unexpected status code returned from negotiate '401'",
			check: func(t *testing.T, err error, _ *fakeServer) {
				var se *StatusError
				if !errors.As(err, &se) || se.StatusCode != 401 || se.Body != "nope\n" {
					t.Errorf("error = %#v, want *StatusError 401 with body", err)
				}
			},
		},
		{
			name: "negotiate 404",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, r *http.Request, _ int) { http.NotFound(w, r) }
			},
			want: "Unexpected status code returned from negotiate '404' Either this is not a SignalR endpoint or there is a proxy blocking the connection.",
		},
		{
			name: "redirect limit",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, r *http.Request, _ int) {
					writeJSON(w, map[string]any{"url": "http://" + r.Host + "/chat"})
				}
			},
			want: "Negotiate redirection limit exceeded.",
			check: func(t *testing.T, _ error, fs *fakeServer) {
				if negs, _ := fs.recorded(); len(negs) != maxRedirects {
					t.Errorf("%d negotiates, want %d", len(negs), maxRedirects)
				}
			},
		},
		{
			name: "classic ASP.NET SignalR",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, _ int) {
					writeJSON(w, map[string]any{"ProtocolVersion": "1.5"})
				}
			},
			want: errClassicSignalR.Error(),
		},
		{
			name: "no WebSockets",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, _ int) {
					writeJSON(w, map[string]any{"negotiateVersion": 1, "connectionId": "a", "connectionToken": "b",
						"availableTransports": []map[string]any{{"transport": "LongPolling", "transferFormats": []string{"Text"}}}})
				}
			},
			check: func(t *testing.T, err error, _ *fakeServer) {
				if !errors.Is(err, errTransports) {
					t.Errorf("error %v does not wrap errTransports", err)
				}
			},
		},
		{
			name: "no binary format for messagepack",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, _ int) {
					writeJSON(w, map[string]any{"negotiateVersion": 1, "connectionId": "a", "connectionToken": "b",
						"availableTransports": []map[string]any{{"transport": "WebSockets", "transferFormats": []string{"Text"}}}})
				}
			},
			opts: Options{Protocol: "messagepack"},
			want: "Unable to connect to the server with any of the available transports. 'WebSockets' does not support the Binary transfer format",
		},
		{
			name: "unrequested stateful reconnect",
			configure: func(fs *fakeServer) {
				fs.negotiate = func(w http.ResponseWriter, _ *http.Request, n int) {
					r := connectionResponse(n, 1)
					r["useStatefulReconnect"] = true
					writeJSON(w, r)
				}
			},
			want: "Client didn't negotiate Stateful Reconnect but the server did.",
		},
		{
			name: "connect 404",
			configure: func(fs *fakeServer) {
				fs.connect = func(w http.ResponseWriter, _ *http.Request) bool {
					http.Error(w, "No Connection with that ID", http.StatusNotFound)
					return true
				}
			},
			check: func(t *testing.T, err error, _ *fakeServer) {
				var se *StatusError
				if !errors.As(err, &se) || se.Op != "connect" || se.StatusCode != 404 || se.Body != "No Connection with that ID\n" {
					t.Errorf("error = %#v, want connect *StatusError 404", err)
				}
			},
		},
		{
			name:      "handshake error",
			configure: func(fs *fakeServer) { fs.handshakeError = "The protocol 'json' is not supported." },
			want:      "Server returned handshake error: The protocol 'json' is not supported.",
		},
		{
			name:      "handshake timeout",
			configure: func(fs *fakeServer) { fs.noHandshakeReply = true },
			opts:      Options{HandshakeTimeout: 50 * time.Millisecond},
			check: func(t *testing.T, err error, _ *fakeServer) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
			},
		},
		{
			name: "token factory error",
			opts: Options{AccessToken: func(context.Context) (string, error) { return "", errors.New("no login") }},
			want: "client: access token: no login",
		},
		{
			name: "invalid options",
			opts: Options{URL: "ftp://x", Protocol: "xml"},
			want: "client: options: URL scheme \"ftp\" is not http, https, ws or wss\nclient: options: unknown protocol \"xml\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, tt.configure)
			o := tt.opts
			if o.URL == "" {
				o.URL = fs.srv.URL + "/chat"
			}
			o.HTTPClient = fs.srv.Client()
			c, err := Dial(testCtx(t), o)
			if err == nil {
				_ = c.Close(testCtx(t))
				t.Fatal("Dial succeeded")
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
			if tt.check != nil {
				tt.check(t, err, fs)
			}
		})
	}
}

func TestInvoke(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c := dial(t, fs, Options{Protocol: proto})
			sc := fs.accept(t)
			if sc.handshakeType != websocket.MessageText || string(sc.handshake) != `{"protocol":"`+proto+`","version":1}`+"\x1e" {
				t.Errorf("handshake = %v %q", sc.handshakeType, sc.handshake)
			}
			ctx := testCtx(t)

			// Invocation ids count from "0" like the JS client.
			type result struct {
				raw hubproto.Raw
				err error
			}
			res := make(chan result, 1)
			go func() {
				raw, err := c.Invoke(ctx, "Echo", "hi", 2)
				res <- result{raw, err}
			}()
			inv := sc.read(t).(hubproto.Invocation)
			if inv.InvocationID != "0" || inv.Target != "Echo" || len(inv.Arguments) != 2 {
				t.Fatalf("invocation = %+v", inv)
			}
			sc.write(t, hubproto.Completion{InvocationID: "0", HasResult: true, Result: sc.marshal(t, "hi!")})
			r := <-res
			if r.err != nil {
				t.Fatalf("Invoke: %v", r.err)
			}
			if s, err := Decode[string](c, r.raw); err != nil || s != "hi!" {
				t.Errorf("result = %q, %v", s, err)
			}

			go sc.echo()
			var got struct{ A int }
			if err := c.InvokeInto(ctx, &got, "Echo", map[string]int{"A": 7}); err != nil || got.A != 7 {
				t.Errorf("InvokeInto = %+v, %v", got, err)
			}
			raw, err := c.Invoke(ctx, "Void")
			if err != nil || raw != nil {
				t.Errorf("void Invoke = %q, %v", raw, err)
			}
			_, err = c.Invoke(ctx, "fail")
			var he *HubError
			if !errors.As(err, &he) || err.Error() != "An unexpected error occurred invoking 'fail' on the server." {
				t.Errorf("hub error = %v (%T)", err, err)
			}
			// A pre-encoded argument is sent as is.
			raw, err = c.Invoke(ctx, "Echo", sc.marshal(t, []int{1, 2}))
			if v, derr := Decode[[]int](c, raw); err != nil || derr != nil || len(v) != 2 || v[1] != 2 {
				t.Errorf("raw argument echo = %v, %v, %v", v, err, derr)
			}
		})
	}
}

func TestInvokeGoldenFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		proto string
		send  string // frame of Send("Echo", "hi")
		inv   string // frame of Invoke("Echo", "hi") (first invocation id "0")
		ping  string
		close string
	}{
		{
			proto: hubproto.ProtocolJSON,
			send:  `{"type":1,"target":"Echo","arguments":["hi"]}` + "\x1e",
			inv:   `{"type":1,"invocationId":"0","target":"Echo","arguments":["hi"]}` + "\x1e",
			ping:  `{"type":6}` + "\x1e",
			close: `{"type":7}` + "\x1e",
		},
		{
			proto: hubproto.ProtocolMessagePack,
			send:  "\x0e\x96\x01\x80\xc0\xa4Echo\x91\xa2hi\x90",
			inv:   "\x0f\x96\x01\x80\xa10\xa4Echo\x91\xa2hi\x90",
			ping:  "\x02\x91\x06",
			close: "\x04\x93\x07\xc0\xc2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c, err := Dial(testCtx(t), Options{URL: fs.srv.URL + "/chat", HTTPClient: fs.srv.Client(), Protocol: tt.proto,
				KeepAliveInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			sc := fs.accept(t)
			ctx := testCtx(t)
			if _, b := sc.readFrame(t); string(b) != tt.ping {
				t.Errorf("first frame = %q, want ping %q", b, tt.ping)
			}
			if err := c.Send(ctx, "Echo", "hi"); err != nil {
				t.Fatal(err)
			}
			if _, b := sc.readFrame(t); string(b) != tt.send {
				t.Errorf("Send frame = %q, want %q", b, tt.send)
			}
			go func() { _, _ = c.Invoke(ctx, "Echo", "hi") }()
			if _, b := sc.readFrame(t); string(b) != tt.inv {
				t.Errorf("Invoke frame = %q, want %q", b, tt.inv)
			}
			closed := make(chan error, 1)
			go func() { closed <- c.Close(ctx) }()
			if _, b := sc.readFrame(t); string(b) != tt.close {
				t.Errorf("Close frame = %q, want %q", b, tt.close)
			}
			if code := sc.readClosed(t); code != websocket.StatusNormalClosure {
				t.Errorf("close status = %v, want 1000", code)
			}
			if err := <-closed; err != nil {
				t.Errorf("Close: %v", err)
			}
			if c.Err() != nil {
				t.Errorf("Err after Close = %v", c.Err())
			}
			if _, err := c.Invoke(ctx, "Echo"); !errors.Is(err, ErrClosed) {
				t.Errorf("Invoke after Close = %v, want ErrClosed", err)
			}
			if err := c.Send(ctx, "Echo"); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestOn(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c := dial(t, fs, Options{Protocol: proto})
			got := make(chan string, 10)
			c.On("receiveMessage", func(args []hubproto.Raw) {
				var user string
				var n int
				if err := c.Unmarshal(args[0], &user); err != nil {
					t.Error(err)
				}
				if err := c.Unmarshal(args[1], &n); err != nil {
					t.Error(err)
				}
				got <- fmt.Sprintf("a:%s:%d", user, n)
			})
			c.On("RECEIVEMESSAGE", func(args []hubproto.Raw) { got <- "b" })
			c.On("other", func([]hubproto.Raw) { got <- "other" })
			c.Off("other")
			sc := fs.accept(t)
			inv := func(target string, args ...any) hubproto.Invocation {
				raws := make([]hubproto.Raw, len(args))
				for i, a := range args {
					raws[i] = sc.marshal(t, a)
				}
				return hubproto.Invocation{Target: target, Arguments: raws}
			}
			// Two messages in one frame, then one message split over two frames, then an
			// invocation of a removed handler.
			sc.write(t, inv("ReceiveMessage", "ann", 1), inv("receivemessage", "bob", 2))
			frame := sc.encode(t, inv("ReceiveMessage", "cy", 3))
			sc.writeFrame(t, frame[:5])
			sc.writeFrame(t, frame[5:])
			sc.write(t, inv("other"))
			want := []string{"a:ann:1", "b", "a:bob:2", "b", "a:cy:3", "b"}
			for _, w := range want {
				select {
				case g := <-got:
					if g != w {
						t.Errorf("handler call %q, want %q", g, w)
					}
				case <-time.After(waitLimit):
					t.Fatalf("missing handler call %q", w)
				}
			}
			// A round trip proves the "other" invocation was processed without a handler call.
			go sc.echo()
			if _, err := c.Invoke(testCtx(t), "Echo", 1); err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Errorf("unexpected handler call %q", <-got)
			}
		})
	}
}

func TestClientResults(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c := dial(t, fs, Options{Protocol: proto})
			c.OnResult("getAnswer", func(args []hubproto.Raw) (any, error) {
				n, err := Decode[int](c, args[0])
				return n + 1, err
			})
			c.OnResult("Fails", func([]hubproto.Raw) (any, error) { return nil, errors.New("nope") })
			c.OnResult("nothing", func([]hubproto.Raw) (any, error) { return nil, nil })
			c.On("noResultHandler", func([]hubproto.Raw) {})
			sc := fs.accept(t)

			tests := []struct {
				target  string
				wantErr string
				want    any // decoded as int, or nil for a null result
			}{
				{"GetAnswer", "", 42},
				{"fails", "nope", nil},
				{"nothing", "", nil},
				{"noResultHandler", "Client didn't provide a result.", nil},
				{"unknown", "Client didn't provide a result.", nil},
			}
			for i, tc := range tests {
				id := fmt.Sprintf("s%d", i)
				sc.write(t, hubproto.Invocation{InvocationID: id, Target: tc.target, Arguments: []hubproto.Raw{sc.marshal(t, 41)}})
				comp, ok := sc.readNonPing(t).(hubproto.Completion)
				if !ok || comp.InvocationID != id {
					t.Fatalf("%s: reply = %+v, want Completion %s", tc.target, comp, id)
				}
				if comp.Error != tc.wantErr {
					t.Errorf("%s: error = %q, want %q", tc.target, comp.Error, tc.wantErr)
				}
				if tc.wantErr != "" {
					continue
				}
				if !comp.HasResult {
					t.Errorf("%s: no result", tc.target)
					continue
				}
				var got any
				if tc.want != nil {
					var n int
					if err := sc.codec.Unmarshal(comp.Result, &n); err != nil {
						t.Fatal(err)
					}
					got = n
				} else if err := sc.codec.Unmarshal(comp.Result, &got); err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("%s: result = %v, want %v", tc.target, got, tc.want)
				}
			}
		})
	}
}

// A client-result handler may block and call back into the connection.
func TestClientResultHandlerInvokes(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{})
	c.OnResult("ask", func([]hubproto.Raw) (any, error) {
		raw, err := c.Invoke(testCtx(t), "Lookup")
		if err != nil {
			return nil, err
		}
		return Decode[string](c, raw)
	})
	sc := fs.accept(t)
	sc.write(t, hubproto.Invocation{InvocationID: "x", Target: "ask"})
	inv := sc.read(t).(hubproto.Invocation)
	if inv.Target != "Lookup" {
		t.Fatalf("invocation = %+v", inv)
	}
	sc.write(t, hubproto.Completion{InvocationID: inv.InvocationID, HasResult: true, Result: sc.marshal(t, "found")})
	comp := sc.read(t).(hubproto.Completion)
	if comp.InvocationID != "x" || string(comp.Result) != `"found"` {
		t.Errorf("completion = %+v", comp)
	}
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c := dial(t, fs, Options{Protocol: proto})
			sc := fs.accept(t)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Invoke(testCtx(t), "Slow")
				errc <- err
			}()
			sc.read(t) // the invocation is pending
			sc.write(t, hubproto.Close{Error: "Connection closed with an error.", AllowReconnect: true})
			if code := sc.readClosed(t); code != websocket.StatusNormalClosure {
				t.Errorf("client closed with %v, want 1000", code)
			}
			waitDone(t, c)
			var ce *CloseError
			if err := c.Err(); !errors.As(err, &ce) || ce.Message != "Connection closed with an error." || !ce.AllowReconnect {
				t.Errorf("Err = %#v, want CloseError with allowReconnect", err)
			}
			if c.Err().Error() != "Server returned an error on close: Connection closed with an error." {
				t.Errorf("Err text = %q", c.Err())
			}
			err := <-errc
			if !errors.Is(err, ErrClosed) || !errors.As(err, &ce) {
				t.Errorf("pending Invoke = %v, want ErrClosed wrapping the CloseError", err)
			}
			if err := c.Close(testCtx(t)); err != nil {
				t.Errorf("Close after server close: %v", err)
			}
		})
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{})
	sc := fs.accept(t)
	_ = sc.ws.Close(websocket.StatusInternalError, "boom")
	waitDone(t, c)
	if got := websocket.CloseStatus(c.Err()); got != websocket.StatusInternalError {
		t.Errorf("Err = %v, want close status 1011", c.Err())
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			dial(t, fs, Options{Protocol: proto, KeepAliveInterval: 20 * time.Millisecond, ServerTimeout: -1})
			sc := fs.accept(t)
			// One ping right after the handshake, then more while the client is idle.
			for i := range 3 {
				if m := sc.read(t); m.Type() != hubproto.TypePing {
					t.Fatalf("message %d = %T, want Ping", i, m)
				}
			}
		})
	}
}

func TestServerTimeout(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{ServerTimeout: 50 * time.Millisecond})
	fs.accept(t)
	waitDone(t, c)
	if !errors.Is(c.Err(), ErrServerTimeout) {
		t.Fatalf("Err = %v, want ErrServerTimeout", c.Err())
	}
	if c.Err().Error() != "Server timeout elapsed without receiving a message from the server." {
		t.Errorf("Err text = %q", c.Err())
	}
	if _, err := c.Invoke(testCtx(t), "x"); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrServerTimeout) {
		t.Errorf("Invoke after timeout = %v", err)
	}
}

func TestInvokeContextCanceled(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{})
	sc := fs.accept(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Invoke(ctx, "Never")
		errc <- err
	}()
	inv := sc.read(t).(hubproto.Invocation)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Invoke = %v, want context.Canceled", err)
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d pending invocations left", n)
	}
	// A late completion is dropped and the connection keeps working.
	sc.write(t, hubproto.Completion{InvocationID: inv.InvocationID})
	go sc.echo()
	if _, err := c.Invoke(testCtx(t), "Echo", 1); err != nil {
		t.Fatal(err)
	}
}

func TestSendRaw(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t, nil)
	c := dial(t, fs, Options{})
	sc := fs.accept(t)
	frame := []byte(`{"type":1,"target":"a","arguments":[]}` + "\x1e" + `{"type":6}` + "\x1e")
	if err := c.SendRaw(testCtx(t), frame); err != nil {
		t.Fatal(err)
	}
	typ, b := sc.readFrame(t)
	if typ != websocket.MessageText || string(b) != string(frame) {
		t.Errorf("frame = %v %q", typ, b)
	}
}

func TestConcurrentInvokes(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t, nil)
			c := dial(t, fs, Options{Protocol: proto, KeepAliveInterval: time.Millisecond})
			sc := fs.accept(t)
			go sc.echo()
			ctx := testCtx(t)
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 25 {
						want := g*1000 + i
						var got int
						if err := c.InvokeInto(ctx, &got, "Echo", want); err != nil || got != want {
							t.Errorf("InvokeInto = %d, %v; want %d", got, err, want)
							return
						}
						if err := c.Send(ctx, "Fire", i); err != nil {
							t.Errorf("Send: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestNegotiateURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://h/chat", "http://h/chat/negotiate?negotiateVersion=1"},
		{"https://h/client/?hub=a", "https://h/client/negotiate?hub=a&negotiateVersion=1"},
		{"http://h/a%2Fb?negotiateVersion=0", "http://h/a%2Fb/negotiate?negotiateVersion=0"},
		{"ws://h:8080/chat", "http://h:8080/chat/negotiate?negotiateVersion=1"},
	}
	for _, tt := range tests {
		got, err := negotiateURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("negotiateURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	u, _ := url.Parse(connectURL("https://h/client/?hub=a", "t/k", "a b", true))
	if u.Scheme != "wss" || u.RawQuery != "hub=a&id=t/k&access_token=a+b" {
		t.Errorf("connectURL = %v", u)
	}
}

// BenchmarkSend measures Send over a real loopback WebSocket to a server that discards.
func BenchmarkSend(b *testing.B) {
	for _, proto := range protocols {
		b.Run(proto, func(b *testing.B) {
			fs := newFakeServer(b, nil)
			ctx := context.Background()
			c, err := Dial(ctx, Options{URL: fs.srv.URL + "/chat", HTTPClient: fs.srv.Client(), Protocol: proto})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			sc := <-fs.conns
			go func() {
				for range sc.frames { // discard
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Send(ctx, "SendMessage", "bench", "hello, world"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
