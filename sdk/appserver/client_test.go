package appserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

const rs = "\x1e"

// recorder collects hub callbacks for assertions.
type recorder struct {
	mu           sync.Mutex
	connected    []*Context
	disconnected []error
	done         chan struct{}
}

func newRecorder() *recorder { return &recorder{done: make(chan struct{}, 16)} }

func (r *recorder) hub() *Hub {
	return &Hub{
		OnConnected: func(c *Context) error {
			r.mu.Lock()
			r.connected = append(r.connected, c)
			r.mu.Unlock()
			return nil
		},
		OnDisconnected: func(c *Context, err error) {
			r.mu.Lock()
			r.disconnected = append(r.disconnected, err)
			r.mu.Unlock()
			r.done <- struct{}{}
		},
	}
}

func (r *recorder) waitDisconnected(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(waitTimeout):
		t.Fatal("OnDisconnected did not run")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disconnected[len(r.disconnected)-1]
}

func (r *recorder) context(t *testing.T) *Context {
	t.Helper()
	poll(t, "OnConnected", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.connected) > 0
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connected[0]
}

// setup starts a server with one socket and the hub "chat".
func setup(t *testing.T, h *Hub, tweak func(*Options)) (*Server, *fakeConn) {
	t.Helper()
	f := newFakeService(t)
	opts := testOptions(f)
	if tweak != nil {
		tweak(&opts)
	}
	s := startServer(t, opts, map[string]*Hub{"chat": h})
	c := f.accept(t)
	waitReady(t, s)
	return s, c
}

func TestClientHandshakeInvocationCompletion(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h := rec.hub()
	h.On("Add", func(c *Context, a, b int) (int, error) { return a + b, nil })
	h.On("void", func(c *Context, s string) {})
	_, c := setup(t, h, nil)

	claims := []svcproto.Claim{
		{Type: "asrs.s.uid", Value: "user1"},
		{Type: "sub", Value: "sub1"},
		{Type: auth.ClaimTypeNameIdentifier, Value: "sub1"},
		{Type: "role", Value: "a"},
		{Type: "role", Value: "b"},
		{Type: "asrs.u.aud", Value: "myaud"},
		{Type: "aud", Value: "http://127.0.0.1/client/?hub=chat"},
		{Type: "exp", Value: "1"},
		{Type: "asrs.s.sn", Value: "x"},
	}
	headers := svcproto.Headers{{Name: "x-custom", Values: []string{"1", "2"}}, {Name: "Asrs-Instance-Id", Values: []string{"inst1"}}}
	hs := c.openClient(t, "conn1", "json", claims, headers, "?hub=chat&asrs.op=%2Fchat&foo=bar")
	if string(hs.Payload) != "{}"+rs {
		t.Errorf("handshake response = %q, want {}\\x1e", hs.Payload)
	}
	if hs.Ext.DataMessageType != svcproto.DataHandshake {
		t.Errorf("handshake dataMessageType = %v, want 1", hs.Ext.DataMessageType)
	}

	ctx := rec.context(t)
	if ctx.ConnectionID != "conn1" || ctx.UserID != "user1" || ctx.Protocol != "json" {
		t.Errorf("context = %q/%q/%q", ctx.ConnectionID, ctx.UserID, ctx.Protocol)
	}
	wantClaims := []auth.Claim{{Type: "sub", Value: "sub1"}, {Type: auth.ClaimTypeNameIdentifier, Value: "sub1"}, {Type: "role", Value: "a"}, {Type: "role", Value: "b"}, {Type: "aud", Value: "myaud"}}
	if !slices.Equal(ctx.Claims, wantClaims) {
		t.Errorf("claims = %v, want %v", ctx.Claims, wantClaims)
	}
	if got := ctx.Headers.Values("X-Custom"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("header = %v", got)
	}
	if ctx.Path != "/chat" || ctx.Query.Get("foo") != "bar" {
		t.Errorf("path %q, query %v", ctx.Path, ctx.Query)
	}

	// One invocation split over two ConnectionData, the first marked partial, then a second
	// invocation in the same ConnectionData as a ping.
	inv := `{"type":1,"invocationId":"1","target":"add","arguments":[1,2]}` + rs
	c.send(svcproto.ConnectionData{ConnectionID: "conn1", Payload: []byte(inv[:10]), Ext: svcproto.Ext{IsPartial: true}})
	c.send(svcproto.ConnectionData{ConnectionID: "conn1", Payload: []byte(inv[10:])})
	d := c.expectData(t, "conn1")
	if want := `{"type":3,"invocationId":"1","result":3}` + rs; string(d.Payload) != want {
		t.Errorf("completion = %q, want %q", d.Payload, want)
	}
	if d.Ext.DataMessageType != svcproto.DataInvocation {
		t.Errorf("completion dataMessageType = %v, want 2", d.Ext.DataMessageType)
	}

	c.send(svcproto.ConnectionData{ConnectionID: "conn1", Payload: []byte(`{"type":6}` + rs + `{"type":1,"invocationId":"2","target":"void","arguments":["x"]}` + rs + `{"type":1,"target":"void","arguments":["x"]}` + rs + `{"type":1,"invocationId":"3","target":"add","arguments":[2,2]}` + rs)})
	d = c.expectData(t, "conn1")
	if want := `{"type":3,"invocationId":"2","result":null}` + rs; string(d.Payload) != want {
		t.Errorf("void completion = %q, want %q", d.Payload, want)
	}
	// The non-blocking invocation has no completion: the next one is for id 3.
	d = c.expectData(t, "conn1")
	if want := `{"type":3,"invocationId":"3","result":4}` + rs; string(d.Payload) != want {
		t.Errorf("completion = %q, want %q", d.Payload, want)
	}

	// The client leaves.
	c.send(svcproto.CloseConnection{ConnectionID: "conn1"})
	if err := rec.waitDisconnected(t); err != nil {
		t.Errorf("OnDisconnected err = %v, want nil", err)
	}
	// ASP.NET Core still writes its close message (the service drops it); no CloseConnection.
	d = c.expectData(t, "conn1")
	if string(d.Payload) != `{"type":7}`+rs || d.Ext.DataMessageType != svcproto.DataClose {
		t.Errorf("close frame = %q (%v)", d.Payload, d.Ext.DataMessageType)
	}
	select {
	case <-ctx.Done():
	case <-time.After(waitTimeout):
		t.Error("context not cancelled after disconnect")
	}
}

func TestClientMessagePack(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	type point struct {
		X    int    `json:"x"`
		Name string `json:"name"`
	}
	h.On("Echo", func(c *Context, p point) (point, error) { p.X++; return p, nil })
	_, c := setup(t, h, nil)
	hs := c.openClient(t, "mp1", "messagepack", nil, nil, "")
	if string(hs.Payload) != "{}"+rs {
		t.Fatalf("handshake response = %q", hs.Payload)
	}
	mp := hubproto.MessagePack()
	arg, err := mp.Marshal(point{X: 1, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := mp.Append(nil, hubproto.Invocation{InvocationID: "7", Target: "echo", Arguments: []hubproto.Raw{arg}})
	if err != nil {
		t.Fatal(err)
	}
	c.send(svcproto.ConnectionData{ConnectionID: "mp1", Payload: frame})
	d := c.expectData(t, "mp1")
	msg, _, rest, err := mp.Cut(d.Payload, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("completion frame: %v (rest %d)", err, len(rest))
	}
	m, err := mp.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	comp, ok := m.(hubproto.Completion)
	if !ok || comp.InvocationID != "7" || !comp.HasResult {
		t.Fatalf("completion = %#v", m)
	}
	var got point
	if err := mp.Unmarshal(comp.Result, &got); err != nil || got != (point{X: 2, Name: "a"}) {
		t.Errorf("result = %+v, %v", got, err)
	}
}

func TestClientHandshakeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		want    string
	}{
		{"unknown protocol", `{"protocol":"xml","version":1}` + rs, `{"error":"The protocol 'xml' is not supported."}` + rs},
		{"version", `{"protocol":"json","version":3}` + rs, `{"error":"The server does not support version 3 of the 'json' protocol."}` + rs},
		{"malformed", `{"protocol":1}` + rs, `{"error":"An unexpected error occurred during connection handshake."}` + rs},
	}
	_, c := setup(t, &Hub{}, nil)
	for i, tt := range tests {
		id := fmt.Sprintf("bad%d", i)
		c.send(svcproto.OpenConnection{ConnectionID: id, Ext: svcproto.Ext{Protocol: "json"}})
		c.send(svcproto.ConnectionData{ConnectionID: id, Payload: []byte(tt.payload)})
		d := c.expectData(t, id)
		if string(d.Payload) != tt.want || d.Ext.DataMessageType != svcproto.DataHandshake {
			t.Errorf("%s: response = %q (%v), want %q", tt.name, d.Payload, d.Ext.DataMessageType, tt.want)
		}
		m := c.next(t)
		if cl, ok := m.(svcproto.CloseConnection); !ok || cl.ConnectionID != id {
			t.Errorf("%s: after handshake error got %#v, want CloseConnection", tt.name, m)
		}
	}
}

func TestClientHandshakeTimeout(t *testing.T) {
	t.Parallel()
	_, c := setup(t, &Hub{HandshakeTimeout: 50 * time.Millisecond}, nil)
	c.send(svcproto.OpenConnection{ConnectionID: "slow", Ext: svcproto.Ext{Protocol: "json"}})
	d := c.expectData(t, "slow")
	if want := `{"error":"Handshake was canceled."}` + rs; string(d.Payload) != want {
		t.Errorf("response = %q, want %q", d.Payload, want)
	}
	if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "slow" {
		t.Errorf("want CloseConnection, got %#v", m)
	}
}

func TestInvocationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		detailed bool
		inv      string
		want     string
	}{
		{"unknown method", false, `{"type":1,"invocationId":"1","target":"nope","arguments":[]}`, `{"type":3,"invocationId":"1","error":"Failed to invoke 'nope' due to an error on the server. HubException: Method does not exist."}`},
		{"arg count", false, `{"type":1,"invocationId":"1","target":"add","arguments":[1]}`, `{"type":3,"invocationId":"1","error":"Failed to invoke 'add' due to an error on the server."}`},
		{"arg count detailed", true, `{"type":1,"invocationId":"1","target":"add","arguments":[1]}`, `{"type":3,"invocationId":"1","error":"Failed to invoke 'add' due to an error on the server. InvalidDataException: Invocation provides 1 argument(s) but target expects 2."}`},
		{"arg type", false, `{"type":1,"invocationId":"1","target":"add","arguments":["x",1]}`, `{"type":3,"invocationId":"1","error":"Failed to invoke 'add' due to an error on the server."}`},
		{"plain error", false, `{"type":1,"invocationId":"1","target":"fail","arguments":[false]}`, `{"type":3,"invocationId":"1","error":"An unexpected error occurred invoking 'fail' on the server."}`},
		{"plain error detailed", true, `{"type":1,"invocationId":"1","target":"fail","arguments":[false]}`, `{"type":3,"invocationId":"1","error":"An unexpected error occurred invoking 'fail' on the server. Exception: boom"}`},
		{"hub error", false, `{"type":1,"invocationId":"1","target":"fail","arguments":[true]}`, `{"type":3,"invocationId":"1","error":"An unexpected error occurred invoking 'fail' on the server. HubException: not allowed"}`},
		{"panic", false, `{"type":1,"invocationId":"1","target":"panic","arguments":[]}`, `{"type":3,"invocationId":"1","error":"An unexpected error occurred invoking 'panic' on the server."}`},
		{"stream invocation", false, `{"type":4,"invocationId":"1","target":"add","arguments":[1,2]}`, `{"type":3,"invocationId":"1","error":"The client attempted to invoke the non-streaming 'add' method with a streaming invocation."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &Hub{EnableDetailedErrors: tt.detailed}
			h.On("add", func(c *Context, a, b int) (int, error) { return a + b, nil })
			h.On("fail", func(c *Context, hub bool) error {
				if hub {
					return NewHubError("not allowed")
				}
				return errors.New("boom")
			})
			h.On("panic", func(c *Context) { panic("oops") })
			_, c := setup(t, h, nil)
			c.openClient(t, "c1", "json", nil, nil, "")
			c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(tt.inv + rs)})
			d := c.expectData(t, "c1")
			if string(d.Payload) != tt.want+rs {
				t.Errorf("got  %q\nwant %q", d.Payload, tt.want+rs)
			}
		})
	}
}

// TestSendTargets checks the service message each Clients target produces, and that messages
// sent from a hub call go out on the caller's socket.
func TestSendTargets(t *testing.T) {
	t.Parallel()
	jsonInv := `{"type":1,"target":"msg","arguments":["hi",1]}` + rs
	tests := []struct {
		name   string
		target func(c *Context) ClientProxy
		check  func(t *testing.T, m svcproto.Message)
	}{
		{"All", func(c *Context) ClientProxy { return c.Clients.All() }, func(t *testing.T, m svcproto.Message) {
			b := m.(svcproto.BroadcastData)
			if len(b.ExcludedConnections) != 0 {
				t.Errorf("excluded = %v", b.ExcludedConnections)
			}
			checkPayloads(t, b.Payloads, jsonInv)
		}},
		{"AllExcept", func(c *Context) ClientProxy { return c.Clients.AllExcept("a", "b") }, func(t *testing.T, m svcproto.Message) {
			b := m.(svcproto.BroadcastData)
			if !slices.Equal(b.ExcludedConnections, []string{"a", "b"}) {
				t.Errorf("excluded = %v", b.ExcludedConnections)
			}
		}},
		{"Others", func(c *Context) ClientProxy { return c.Clients.Others() }, func(t *testing.T, m svcproto.Message) {
			b := m.(svcproto.BroadcastData)
			if !slices.Equal(b.ExcludedConnections, []string{"c1"}) {
				t.Errorf("excluded = %v", b.ExcludedConnections)
			}
		}},
		{"Caller", func(c *Context) ClientProxy { return c.Clients.Caller() }, func(t *testing.T, m svcproto.Message) {
			mc := m.(svcproto.MultiConnectionData)
			if !slices.Equal(mc.ConnectionIDs, []string{"c1"}) || len(mc.Payloads) != 1 || mc.Payloads[0].Protocol != "json" || string(mc.Payloads[0].Data) != jsonInv {
				t.Errorf("caller message = %+v", mc)
			}
		}},
		{"Client remote", func(c *Context) ClientProxy { return c.Clients.Client("elsewhere") }, func(t *testing.T, m svcproto.Message) {
			mc := m.(svcproto.MultiConnectionData)
			if !slices.Equal(mc.ConnectionIDs, []string{"elsewhere"}) {
				t.Errorf("ids = %v", mc.ConnectionIDs)
			}
			checkPayloads(t, mc.Payloads, jsonInv)
		}},
		{"Clients", func(c *Context) ClientProxy { return c.Clients.Clients("x", "y") }, func(t *testing.T, m svcproto.Message) {
			mc := m.(svcproto.MultiConnectionData)
			if !slices.Equal(mc.ConnectionIDs, []string{"x", "y"}) {
				t.Errorf("ids = %v", mc.ConnectionIDs)
			}
			checkPayloads(t, mc.Payloads, jsonInv)
		}},
		{"User", func(c *Context) ClientProxy { return c.Clients.User("u1") }, func(t *testing.T, m svcproto.Message) {
			if u := m.(svcproto.UserData); u.UserID != "u1" {
				t.Errorf("user = %q", u.UserID)
			}
		}},
		{"Users", func(c *Context) ClientProxy { return c.Clients.Users("u1", "u2") }, func(t *testing.T, m svcproto.Message) {
			if u := m.(svcproto.MultiUserData); !slices.Equal(u.UserIDs, []string{"u1", "u2"}) {
				t.Errorf("users = %v", u.UserIDs)
			}
		}},
		{"Group", func(c *Context) ClientProxy { return c.Clients.Group("g") }, func(t *testing.T, m svcproto.Message) {
			g := m.(svcproto.GroupBroadcastData)
			if g.Group != "g" || len(g.ExcludedConnections) != 0 {
				t.Errorf("group message = %+v", g)
			}
			checkPayloads(t, g.Payloads, jsonInv)
		}},
		{"GroupExcept", func(c *Context) ClientProxy { return c.Clients.GroupExcept("g", "c9") }, func(t *testing.T, m svcproto.Message) {
			g := m.(svcproto.GroupBroadcastData)
			if g.Group != "g" || !slices.Equal(g.ExcludedConnections, []string{"c9"}) {
				t.Errorf("group message = %+v", g)
			}
		}},
		{"OthersInGroup", func(c *Context) ClientProxy { return c.Clients.OthersInGroup("g") }, func(t *testing.T, m svcproto.Message) {
			g := m.(svcproto.GroupBroadcastData)
			if g.Group != "g" || !slices.Equal(g.ExcludedConnections, []string{"c1"}) {
				t.Errorf("group message = %+v", g)
			}
		}},
		{"Groups", func(c *Context) ClientProxy { return c.Clients.Groups("g1", "g2") }, func(t *testing.T, m svcproto.Message) {
			if g := m.(svcproto.MultiGroupBroadcastData); !slices.Equal(g.Groups, []string{"g1", "g2"}) {
				t.Errorf("groups = %v", g.Groups)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &Hub{}
			h.On("go", func(c *Context) error { return tt.target(c).Send(c, "msg", "hi", 1) })
			_, c := setup(t, h, nil)
			c.openClient(t, "c1", "json", nil, nil, "")
			c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":1,"invocationId":"1","target":"go","arguments":[]}` + rs)})
			// The fan-out message precedes the completion on the same (only) socket.
			m := c.next(t)
			tt.check(t, m)
			d := c.expectData(t, "c1")
			if want := `{"type":3,"invocationId":"1","result":null}` + rs; string(d.Payload) != want {
				t.Errorf("completion = %q", d.Payload)
			}
		})
	}
}

// checkPayloads checks that both protocols carry the same invocation.
func checkPayloads(t *testing.T, p svcproto.Payloads, wantJSON string) {
	t.Helper()
	checkPayloadsOf(t, p, wantJSON, "msg", 2)
}

func checkPayloadsOf(t *testing.T, p svcproto.Payloads, wantJSON, wantTarget string, wantArgs int) {
	t.Helper()
	if len(p) != 2 || p[0].Protocol != "json" || p[1].Protocol != "messagepack" {
		t.Fatalf("payload protocols = %v", p)
	}
	if string(p[0].Data) != wantJSON {
		t.Errorf("json payload = %q, want %q", p[0].Data, wantJSON)
	}
	mp := hubproto.MessagePack()
	msg, _, rest, err := mp.Cut(p[1].Data, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("messagepack payload framing: %v", err)
	}
	m, err := mp.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	inv, ok := m.(hubproto.Invocation)
	if !ok || inv.Target != wantTarget || len(inv.Arguments) != wantArgs {
		t.Errorf("messagepack payload = %#v", m)
	}
}

func TestHubContextOutsideCall(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, nil)
	hc := s.Hub("CHAT")
	if hc == nil {
		t.Fatal("Hub lookup is not case-insensitive")
	}
	ctx := context.Background()
	if err := hc.Clients.Caller().Send(ctx, "m"); !errors.Is(err, ErrNoCaller) {
		t.Errorf("Caller outside a call = %v, want ErrNoCaller", err)
	}
	if err := hc.Clients.All().Send(ctx, ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty method = %v, want ErrInvalidArgument", err)
	}
	if err := hc.Clients.Users().Send(ctx, "m"); err != nil {
		t.Errorf("empty user list = %v, want nil", err)
	}
	if err := hc.Clients.Group("g").Send(ctx, "m", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	g := c.next(t).(svcproto.GroupBroadcastData)
	checkPayloadsOf(t, g.Payloads, `{"type":1,"target":"m","arguments":[{"a":1}]}`+rs, "m", 1)

	// A local client targeted from outside gets a single-protocol message on its socket.
	c.openClient(t, "local", "messagepack", nil, nil, "")
	if err := hc.Clients.Client("local").Send(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	mc := c.next(t).(svcproto.MultiConnectionData)
	if len(mc.Payloads) != 1 || mc.Payloads[0].Protocol != "messagepack" {
		t.Errorf("payloads = %v", mc.Payloads)
	}
}

func TestGroupsWithAck(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	h.On("join", func(c *Context, g string) error { return c.Groups.Add(c, c.ConnectionID, g) })
	s, c := setup(t, h, nil)
	c.openClient(t, "c1", "json", nil, nil, "")

	for i, status := range []svcproto.AckStatus{svcproto.AckOK, svcproto.AckNotFound} {
		c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(fmt.Sprintf(`{"type":1,"invocationId":"%d","target":"join","arguments":["room"]}`+rs, i))})
		j := c.next(t).(svcproto.JoinGroupWithAck)
		if j.ConnectionID != "c1" || j.Group != "room" || j.AckID != i+1 {
			t.Errorf("join = %+v, want ack id %d", j, i+1)
		}
		c.send(svcproto.Ack{AckID: j.AckID, Status: status})
		d := c.expectData(t, "c1")
		if want := fmt.Sprintf(`{"type":3,"invocationId":"%d","result":null}`, i) + rs; string(d.Payload) != want {
			t.Errorf("completion = %q, want %q", d.Payload, want)
		}
	}

	hc := s.Hub("chat")
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() { errc <- hc.Groups.Remove(ctx, "c1", "room") }()
	l := c.next(t).(svcproto.LeaveGroupWithAck)
	if l.AckID != 3 || l.Group != "room" {
		t.Errorf("leave = %+v", l)
	}
	c.send(svcproto.Ack{AckID: l.AckID, Status: svcproto.AckTimeout})
	if err := <-errc; !errors.Is(err, ErrAckTimeout) {
		t.Errorf("Remove with Timeout ack = %v, want ErrAckTimeout", err)
	}

	go func() {
		st, err := hc.Groups.AddWithStatus(ctx, "c1", "x")
		if err == nil && st != AckNotFound {
			err = fmt.Errorf("status %v", st)
		}
		errc <- err
	}()
	j := c.next(t).(svcproto.JoinGroupWithAck)
	c.send(svcproto.Ack{AckID: j.AckID, Status: svcproto.AckNotFound})
	if err := <-errc; err != nil {
		t.Errorf("AddWithStatus NotFound: %v", err)
	}
}

func TestAckTimeout(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, func(o *Options) { o.Timing.Ack = 50 * time.Millisecond })
	st, err := s.Hub("chat").Groups.AddWithStatus(context.Background(), "c1", "other")
	if !errors.Is(err, ErrAckTimeout) || st != AckTimeout {
		t.Errorf("AddWithStatus without ack = %v, %v", st, err)
	}
	if m, ok := c.next(t).(svcproto.JoinGroupWithAck); !ok || m.AckID != 1 {
		t.Errorf("unanswered join = %#v", m)
	}
	// A late Ack is ignored.
	c.send(svcproto.Ack{AckID: 1, Status: svcproto.AckOK})
}

func TestUserGroupsAndChecks(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, nil)
	hc := s.Hub("chat")
	ctx := context.Background()

	// Answer every ack-able message: NotFound for names starting with "missing", else Ok.
	go func() {
		for {
			var id int
			var name string
			m := <-c.msgs
			switch m := m.(type) {
			case svcproto.UserJoinGroupWithAck:
				id, name = m.AckID, m.Group
			case svcproto.UserLeaveGroupWithAck:
				id, name = m.AckID, m.Group
			case svcproto.CheckUserInGroupWithAck:
				id, name = m.AckID, m.Group
			case svcproto.CheckConnectionExistenceWithAck:
				id, name = m.AckID, m.ConnectionID
			case svcproto.CheckUserExistenceWithAck:
				id, name = m.AckID, m.UserID
			case svcproto.CheckGroupExistenceWithAck:
				id, name = m.AckID, m.Group
			case svcproto.CloseUserConnectionsWithAck:
				id, name = m.AckID, m.UserID
			case svcproto.CloseGroupConnectionsWithAck:
				id, name = m.AckID, m.Group
			default:
				continue
			}
			c.received(m)
			st := svcproto.AckOK
			if strings.HasPrefix(name, "missing") {
				st = svcproto.AckNotFound
			}
			c.send(svcproto.Ack{AckID: id, Status: st})
			if name == "stop" {
				return
			}
		}
	}()

	if err := hc.UserGroups.Add(ctx, "u1", "g", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if m := c.lastReceived(t).(svcproto.UserJoinGroupWithAck); m.UserID != "u1" || !m.Ext.HasTTL || m.Ext.TTL != 90 {
		t.Errorf("user join = %+v", m)
	}
	if err := hc.UserGroups.Add(ctx, "u1", "g", 0); err != nil {
		t.Fatal(err)
	}
	if m := c.lastReceived(t).(svcproto.UserJoinGroupWithAck); m.Ext.HasTTL {
		t.Errorf("user join without ttl = %+v", m)
	}
	if err := hc.UserGroups.Add(ctx, "u1", "g", -time.Second); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("negative ttl = %v", err)
	}
	for _, tt := range []struct {
		name string
		f    func() (bool, error)
		want bool
	}{
		{"in group", func() (bool, error) { return hc.UserGroups.IsUserInGroup(ctx, "u1", "g") }, true},
		{"not in group", func() (bool, error) { return hc.UserGroups.IsUserInGroup(ctx, "u1", "missing-g") }, false},
		{"connection", func() (bool, error) { return hc.ConnectionExists(ctx, "c") }, true},
		{"no connection", func() (bool, error) { return hc.ConnectionExists(ctx, "missing-c") }, false},
		{"user", func() (bool, error) { return hc.UserExists(ctx, "u") }, true},
		{"group", func() (bool, error) { return hc.GroupExists(ctx, "missing-x") }, false},
	} {
		got, err := tt.f()
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if err := hc.UserGroups.Remove(ctx, "u1", "g"); err != nil {
		t.Error(err)
	}
	if err := hc.UserGroups.RemoveFromAll(ctx, "u1"); err != nil {
		t.Error(err)
	}
	if m := c.lastReceived(t).(svcproto.UserLeaveGroupWithAck); m.Group != "" {
		t.Errorf("leave all = %+v", m)
	}
	if err := hc.CloseUserConnections(ctx, "u1", "bye", "keep"); err != nil {
		t.Error(err)
	}
	if m := c.lastReceived(t).(svcproto.CloseUserConnectionsWithAck); m.Reason != "bye" || !slices.Equal(m.ExcludedConnections, []string{"keep"}) {
		t.Errorf("close user = %+v", m)
	}
	if err := hc.CloseGroupConnections(ctx, "stop", ""); err != nil {
		t.Error(err)
	}
}

func TestAbortAndServerClose(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h := rec.hub()
	h.On("leave", func(c *Context) { c.Abort() })
	s, c := setup(t, h, nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":1,"invocationId":"1","target":"leave","arguments":[]}` + rs)})
	// The completion after Abort is dropped; the close message and CloseConnection follow.
	d := c.expectData(t, "c1")
	if string(d.Payload) != `{"type":7}`+rs || d.Ext.DataMessageType != svcproto.DataClose {
		t.Errorf("close frame = %q (%v)", d.Payload, d.Ext.DataMessageType)
	}
	if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "c1" || m.ErrorMessage != "" {
		t.Errorf("want CloseConnection(c1), got %#v", m)
	}
	if err := rec.waitDisconnected(t); err != nil {
		t.Errorf("OnDisconnected err = %v", err)
	}

	// HubContext.CloseConnection: local client aborted with the reason; remote one via the service.
	c.openClient(t, "c2", "json", nil, nil, "")
	hc := s.Hub("chat")
	if err := hc.CloseConnection(context.Background(), "c2", "kicked"); err != nil {
		t.Fatal(err)
	}
	d = c.expectData(t, "c2")
	if string(d.Payload) != `{"type":7,"error":"kicked"}`+rs {
		t.Errorf("close frame = %q", d.Payload)
	}
	if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "c2" || m.ErrorMessage != "kicked" {
		t.Errorf("want CloseConnection(c2, kicked), got %#v", m)
	}
	rec.waitDisconnected(t)
	if err := hc.CloseConnection(context.Background(), "remote", "r"); err != nil {
		t.Fatal(err)
	}
	if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "remote" || m.ErrorMessage != "r" {
		t.Errorf("want CloseConnection(remote), got %#v", m)
	}
}

func TestClientKeepAliveAndTimeout(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h := rec.hub()
	h.KeepAliveInterval = 40 * time.Millisecond
	h.ClientTimeoutInterval = 300 * time.Millisecond
	s, c := setup(t, h, nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	d := c.expectData(t, "c1")
	if string(d.Payload) != `{"type":6}`+rs || d.Ext.DataMessageType != svcproto.DataOther {
		t.Errorf("ping = %q (%v)", d.Payload, d.Ext.DataMessageType)
	}
	// The client timeout is only enforced once the client pinged (StartClientTimeout).
	if s.clientCount.Load() != 1 {
		t.Fatalf("client timed out before its first ping")
	}
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":6}` + rs)})
	// Silence: the client times out.
	d = c.expect(t, func(m svcproto.Message) bool {
		d, ok := m.(svcproto.ConnectionData)
		return ok && d.Ext.DataMessageType == svcproto.DataClose
	}).(svcproto.ConnectionData)
	if want := `{"type":7,"error":"Connection closed with an error.","allowReconnect":true}` + rs; string(d.Payload) != want {
		t.Errorf("close = %q, want %q", d.Payload, want)
	}
	err := rec.waitDisconnected(t)
	if !errors.Is(err, ErrClientTimeout) || err.Error() != "Client hasn't sent a message/ping within the configured ClientTimeoutInterval." {
		t.Errorf("OnDisconnected err = %v", err)
	}
	c.expect(t, func(m svcproto.Message) bool {
		cl, ok := m.(svcproto.CloseConnection)
		return ok && cl.ConnectionID == "c1"
	})
	poll(t, "client count 0", func() bool { return s.clientCount.Load() == 0 })
}

func TestClientCloseMessage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, msg, wantErr string
	}{
		{"graceful", `{"type":7}`, ""},
		{"with error", `{"type":7,"error":"bye"}`, "bye"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, c := setup(t, rec.hub(), nil)
			c.openClient(t, "c1", "json", nil, nil, "")
			c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(tt.msg + rs)})
			d := c.expectData(t, "c1")
			if string(d.Payload) != `{"type":7}`+rs || d.Ext.DataMessageType != svcproto.DataClose {
				t.Errorf("close = %q (%v)", d.Payload, d.Ext.DataMessageType)
			}
			if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "c1" {
				t.Errorf("want CloseConnection, got %#v", m)
			}
			err := rec.waitDisconnected(t)
			var he *HubError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("OnDisconnected err = %v, want nil", err)
			case tt.wantErr != "" && (!errors.As(err, &he) || he.Message != tt.wantErr):
				t.Errorf("OnDisconnected err = %v, want HubError %q", err, tt.wantErr)
			}
		})
	}
}

func TestOnConnectedError(t *testing.T) {
	t.Parallel()
	disconnected := make(chan struct{}, 1)
	h := &Hub{
		OnConnected:    func(c *Context) error { return errors.New("no") },
		OnDisconnected: func(c *Context, err error) { disconnected <- struct{}{} },
	}
	_, c := setup(t, h, nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	d := c.expectData(t, "c1")
	if want := `{"type":7,"error":"Connection closed with an error."}` + rs; string(d.Payload) != want {
		t.Errorf("close = %q", d.Payload)
	}
	if m, ok := c.next(t).(svcproto.CloseConnection); !ok || m.ConnectionID != "c1" {
		t.Errorf("want CloseConnection, got %#v", m)
	}
	select {
	case <-disconnected:
		t.Error("OnDisconnected ran after a failed OnConnected")
	default:
	}
}

func TestSocketLossDisconnectsClients(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	s, c := setup(t, rec.hub(), nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	rec.context(t)
	poll(t, "client counted", func() bool { return s.clientCount.Load() == 1 })
	c.send(svcproto.Ping{Values: []string{"offline", ""}})
	if err := rec.waitDisconnected(t); err != nil {
		t.Errorf("OnDisconnected err = %v", err)
	}
	poll(t, "client count 0", func() bool { return s.clientCount.Load() == 0 })
}

func TestMigrationHeaders(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	_, c := setup(t, rec.hub(), nil)
	// A migrated-in client: no handshake response, OnConnected sees MigratedFrom.
	c.send(svcproto.OpenConnection{ConnectionID: "m1", Headers: svcproto.Headers{{Name: "Asrs-Migrate-From", Values: []string{"old"}}}, Ext: svcproto.Ext{Protocol: "json"}})
	c.send(svcproto.ConnectionData{ConnectionID: "m1", Payload: []byte(`{"protocol":"json","version":1}` + rs)})
	ctx := rec.context(t)
	if ctx.MigratedFrom != "old" {
		t.Errorf("MigratedFrom = %q", ctx.MigratedFrom)
	}
	// Migrating away: nothing more reaches the service for this client.
	c.send(svcproto.CloseConnection{ConnectionID: "m1", Headers: svcproto.Headers{{Name: "Asrs-Migrate-To", Values: []string{"new"}}}})
	rec.waitDisconnected(t)
	if got := ctx.MigratedTo(); got != "new" {
		t.Errorf("MigratedTo = %q", got)
	}
	c.send(svcproto.Ping{Values: []string{"echo", "barrier"}})
	m := c.next(t)
	if p, ok := m.(svcproto.Ping); !ok || !slices.Equal(p.Values, []string{"echo", "barrier"}) {
		t.Errorf("migrating client produced %#v", m)
	}
}

func TestFlowControl(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	h.On("ping", func(c *Context) string { return "pong" })
	_, c := setup(t, h, nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	c.send(svcproto.ConnectionFlowControl{ConnectionID: "c1", Target: svcproto.FlowClient, Op: svcproto.FlowPause})
	if m, ok := c.next(t).(svcproto.ConnectionFlowControl); !ok || m.Op != svcproto.FlowPauseAck || m.ConnectionID != "c1" {
		t.Fatalf("want PauseAck, got %#v", m)
	}
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":1,"invocationId":"1","target":"ping","arguments":[]}` + rs)})
	c.send(svcproto.Ping{Values: []string{"echo", "barrier"}})
	c.expect(t, func(m svcproto.Message) bool { _, ok := m.(svcproto.Ping); return ok })
	c.send(svcproto.ConnectionFlowControl{ConnectionID: "c1", Target: svcproto.FlowClient, Op: svcproto.FlowResume})
	d := c.expectData(t, "c1")
	if want := `{"type":3,"invocationId":"1","result":"pong"}` + rs; string(d.Payload) != want {
		t.Errorf("completion after resume = %q", d.Payload)
	}
}

func TestLegacyDataExt(t *testing.T) {
	t.Parallel()
	_, c := setup(t, &Hub{}, func(o *Options) { o.LegacyDataExt = true })
	d := c.openClient(t, "c1", "json", nil, nil, "")
	if d.Ext.DataMessageType != svcproto.DataUnknown {
		t.Errorf("legacy ext carries dataMessageType %v", d.Ext.DataMessageType)
	}
}

func TestHubOnPanics(t *testing.T) {
	t.Parallel()
	bad := []any{nil, 1, func() {}, func(c *Context) (int, int) { return 0, 0 }, func(c *Context, a ...int) {}}
	//lint:ignore ST1008 a handler with the error first is exactly what On must reject
	bad = append(bad, func(c *Context) (error, int) { return nil, 0 })
	for _, fn := range bad {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("On(%T) did not panic", fn)
				}
			}()
			(&Hub{}).On("m", fn)
		}()
	}
	h := &Hub{}
	h.On("m", func(c *Context) {})
	defer func() {
		if recover() == nil {
			t.Error("duplicate On did not panic")
		}
	}()
	h.On("M", func(c *Context) {})
}

// received/lastReceived let a responder goroutine hand messages to the test.
func (c *fakeConn) received(m svcproto.Message) {
	c.lastMu.Lock()
	c.last = append(c.last, m)
	c.lastMu.Unlock()
}

func (c *fakeConn) lastReceived(t *testing.T) svcproto.Message {
	t.Helper()
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	if len(c.last) == 0 {
		t.Fatal("nothing received")
	}
	return c.last[len(c.last)-1]
}
