package appserver

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// invokeAsync runs InvokeClient[int] in the background.
func invokeAsync(hc *HubContext, conn, method string, args ...any) <-chan invokeResult {
	ch := make(chan invokeResult, 1)
	go func() {
		v, err := InvokeClient[int](context.Background(), hc, conn, method, args...)
		ch <- invokeResult{v, err}
	}()
	return ch
}

type invokeResult struct {
	v   int
	err error
}

func waitInvoke(t *testing.T, ch <-chan invokeResult) invokeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("InvokeClient did not return")
		return invokeResult{}
	}
}

func expectInvocation(t *testing.T, c *fakeConn) svcproto.ClientInvocation {
	t.Helper()
	return c.expect(t, func(m svcproto.Message) bool { _, ok := m.(svcproto.ClientInvocation); return ok }).(svcproto.ClientInvocation)
}

func expectCompletion(t *testing.T, c *fakeConn) svcproto.ClientCompletion {
	t.Helper()
	return c.expect(t, func(m svcproto.Message) bool { _, ok := m.(svcproto.ClientCompletion); return ok }).(svcproto.ClientCompletion)
}

var invocationIDPattern = regexp.MustCompile(`^c1-[0-9a-f]{32}-[0-9]+$`)

func TestInvokeClientLocal(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, nil)
	hc := s.Hub("chat")
	c.openClient(t, "c1", "json", nil, nil, "")

	res := invokeAsync(hc, "c1", "add", 2, 3)
	inv := expectInvocation(t, c)
	if !invocationIDPattern.MatchString(inv.InvocationID) {
		t.Errorf("invocation id %q is not the SDK's <connectionId>-<guid>-<n>", inv.InvocationID)
	}
	if inv.ConnectionID != "c1" || inv.CallerServerID != s.ServerID() {
		t.Errorf("ClientInvocation = %+v", inv)
	}
	// Every protocol of the hub, each an Invocation carrying the invocation id.
	wantJSON := `{"type":1,"invocationId":"` + inv.InvocationID + `","target":"add","arguments":[2,3]}` + rs
	if got, _ := inv.Payloads.Get("json"); string(got) != wantJSON {
		t.Errorf("json payload %q, want %q", got, wantJSON)
	}
	mp, ok := inv.Payloads.Get("messagepack")
	if !ok {
		t.Fatal("no messagepack payload")
	}
	msg, _, _, err := hubproto.MessagePack().Cut(mp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := hubproto.MessagePack().Decode(msg); err != nil || m.(hubproto.Invocation).InvocationID != inv.InvocationID {
		t.Errorf("messagepack payload decodes to %#v, %v", m, err)
	}

	// The local client answers through its own ConnectionData.
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":3,"invocationId":"` + inv.InvocationID + `","result":5}` + rs)})
	if r := waitInvoke(t, res); r.err != nil || r.v != 5 {
		t.Fatalf("InvokeClient = %v, %v; want 5", r.v, r.err)
	}
	// Only the ids matter to the service: the cleanup completion has an empty payload.
	cc := expectCompletion(t, c)
	want := svcproto.ClientCompletion{InvocationID: inv.InvocationID, ConnectionID: "c1", CallerServerID: s.ServerID(), Protocol: "json", Payload: []byte{}, Ext: svcproto.Ext{Protocol: "json"}}
	if cc.InvocationID != want.InvocationID || cc.ConnectionID != want.ConnectionID || cc.CallerServerID != want.CallerServerID ||
		cc.Protocol != want.Protocol || len(cc.Payload) != 0 || cc.Ext.Protocol != "json" {
		t.Errorf("ClientCompletion = %+v, want %+v", cc, want)
	}
	gotBytes, _ := svcproto.AppendFrame(nil, cc)
	wantBytes, _ := svcproto.AppendFrame(nil, want)
	if string(gotBytes) != string(wantBytes) {
		t.Errorf("ClientCompletion bytes %x, want %x", gotBytes, wantBytes)
	}

	// A second invocation gets the next number; a client error becomes a *HubError.
	res = invokeAsync(hc, "c1", "add", 1, 1)
	inv2 := expectInvocation(t, c)
	if strings.TrimSuffix(inv2.InvocationID, "2") != strings.TrimSuffix(inv.InvocationID, "1") {
		t.Errorf("ids %q then %q", inv.InvocationID, inv2.InvocationID)
	}
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":3,"invocationId":"` + inv2.InvocationID + `","error":"boom"}` + rs)})
	r := waitInvoke(t, res)
	var he *HubError
	if !errors.As(r.err, &he) || he.Message != "boom" {
		t.Fatalf("InvokeClient error = %v, want HubError boom", r.err)
	}
}

func TestInvokeClientRemote(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, nil)
	hc := s.Hub("chat")
	mp := hubproto.MessagePack()

	// A client of another server answers through the service in its own protocol.
	res := invokeAsync(hc, "r1", "add", 20, 22)
	inv := expectInvocation(t, c)
	raw, _ := mp.Marshal(42)
	frame, _ := mp.Append(nil, hubproto.Completion{InvocationID: inv.InvocationID, HasResult: true, Result: raw})
	// A completion naming another connection is not ours.
	c.send(svcproto.ClientCompletion{InvocationID: inv.InvocationID, ConnectionID: "other", CallerServerID: "s2", Protocol: "messagepack", Payload: frame})
	c.send(svcproto.ClientCompletion{InvocationID: inv.InvocationID, ConnectionID: "r1", CallerServerID: "s2", Protocol: "messagepack", Payload: frame, Ext: svcproto.Ext{Protocol: "messagepack"}})
	if r := waitInvoke(t, res); r.err != nil || r.v != 42 {
		t.Fatalf("InvokeClient = %v, %v; want 42", r.v, r.err)
	}

	for _, tc := range []struct {
		name string
		msg  func(id string) svcproto.Message
		want string
	}{
		{"error completion", func(id string) svcproto.Message {
			return svcproto.ErrorCompletion{InvocationID: id, ConnectionID: "r1", CallerServerID: s.ServerID(), Error: "Connection 'r1' disconnected."}
		}, "Connection 'r1' disconnected."},
		{"json error", func(id string) svcproto.Message {
			return svcproto.ClientCompletion{InvocationID: id, ConnectionID: "r1", Protocol: "json", Payload: []byte(`{"type":3,"invocationId":"` + id + `","error":"nope"}` + rs)}
		}, "nope"},
		{"unknown protocol", func(id string) svcproto.Message {
			return svcproto.ClientCompletion{InvocationID: id, ConnectionID: "r1", Protocol: "xml", Payload: []byte("x")}
		}, "Not supported protocol xml by server."},
	} {
		res := invokeAsync(hc, "r1", "add", 1, 2)
		inv := expectInvocation(t, c)
		c.send(tc.msg(inv.InvocationID))
		r := waitInvoke(t, res)
		var he *HubError
		if !errors.As(r.err, &he) || he.Message != tc.want {
			t.Errorf("%s: error %v, want HubError %q", tc.name, r.err, tc.want)
		}
	}
}

func TestInvokeClientRouter(t *testing.T) {
	t.Parallel()
	s, c := setup(t, &Hub{}, nil)
	c.openClient(t, "c1", "json", nil, nil, "")
	// The service forwards an invocation another server made; the client's completion goes
	// back as ClientCompletion with the raw frame and, like the SDK, this server's id.
	c.send(svcproto.ClientInvocation{InvocationID: "inv-1", ConnectionID: "c1", CallerServerID: "s1"})
	frame := `{"type":3,"invocationId":"inv-1","result":"ok"}` + rs
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(frame)})
	cc := expectCompletion(t, c)
	if cc.InvocationID != "inv-1" || cc.ConnectionID != "c1" || cc.CallerServerID != s.ServerID() ||
		cc.Protocol != "json" || cc.Ext.Protocol != "json" || string(cc.Payload) != frame {
		t.Errorf("ClientCompletion = %+v", cc)
	}
	// An unknown completion is dropped.
	c.send(svcproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":3,"invocationId":"zzz","result":1}` + rs)})
	c.send(svcproto.Ping{Values: []string{"echo", "barrier"}})
	if m, ok := c.next(t).(svcproto.Ping); !ok {
		t.Errorf("unknown completion produced %#v", m)
	}
}

func TestInvokeClientFailures(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	selfErr := make(chan error, 1)
	h.On("self", func(c *Context) error {
		ctx, cancel := context.WithTimeout(c, time.Minute)
		defer cancel()
		_, err := InvokeClient[int](ctx, c.Hub, c.ConnectionID, "x")
		selfErr <- err
		return nil
	})
	s, c := setup(t, h, func(o *Options) { o.Timing.ClientInvocation = 200 * time.Millisecond })
	hc := s.Hub("chat")
	c.openClient(t, "c1", "json", nil, nil, "")

	// No answer in time.
	r := waitInvoke(t, invokeAsync(hc, "c1", "add", 1))
	if !errors.Is(r.err, ErrClientResultTimeout) {
		t.Errorf("timeout error = %v", r.err)
	}
	// The local client goes away while the invocation waits.
	res := invokeAsync(hc, "c1", "add", 1)
	expectInvocation(t, c) // the timed-out one
	expectInvocation(t, c)
	c.send(svcproto.CloseConnection{ConnectionID: "c1"})
	r = waitInvoke(t, res)
	var he *HubError
	if !errors.As(r.err, &he) || he.Message != "Connection 'c1' is disconnected." {
		t.Errorf("disconnect error = %v", r.err)
	}
	// A hub method cannot wait for its own connection.
	c.openClient(t, "c2", "json", nil, nil, "")
	c.send(svcproto.ConnectionData{ConnectionID: "c2", Payload: []byte(`{"type":1,"target":"self","arguments":[]}` + rs)})
	select {
	case err := <-selfErr:
		if !errors.Is(err, ErrInvokeOwnConnection) {
			t.Errorf("self invocation error = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("self invocation blocked")
	}
	// Argument checks and a closed server.
	if _, err := InvokeClient[int](context.Background(), hc, "", "m"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty connection id: %v", err)
	}
	res = invokeAsync(hc, "remote", "add", 1)
	expectInvocation(t, c)
	_ = s.Close()
	if r := waitInvoke(t, res); !errors.Is(r.err, ErrClosed) {
		t.Errorf("close error = %v", r.err)
	}
	if _, err := InvokeClient[int](context.Background(), hc, "c1", "m"); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

// TestMigrateOutKeepsReceivedMessages: the messages a migrating client sent before the service's
// CloseConnection(Asrs-Migrate-To) are still dispatched (the SDK completes the connection's
// input after them), and nothing the hub writes for the client goes out any more.
func TestMigrateOutKeepsReceivedMessages(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []int
	var migratedTo string
	disconnected := make(chan struct{})
	h := &Hub{
		OnDisconnected: func(c *Context, err error) {
			mu.Lock()
			migratedTo = c.MigratedTo()
			mu.Unlock()
			close(disconnected)
		},
	}
	h.On("count", func(c *Context, n int) int {
		if n == 0 {
			<-gate
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
		return n
	})
	_, c := setup(t, h, nil)
	c.openClient(t, "m1", "json", nil, nil, "")
	var data string
	for i := range 5 {
		data += `{"type":1,"target":"count","arguments":[` + string(rune('0'+i)) + `]}` + rs
	}
	c.send(svcproto.ConnectionData{ConnectionID: "m1", Payload: []byte(data)})
	c.send(svcproto.CloseConnection{ConnectionID: "m1", Headers: svcproto.Headers{{Name: "Asrs-Migrate-To", Values: []string{"s2"}}}})
	c.send(svcproto.ConnectionData{ConnectionID: "m1", Payload: []byte(`{"type":1,"target":"count","arguments":[9]}` + rs)})
	c.send(svcproto.Ping{Values: []string{"echo", "barrier"}})
	if m, ok := c.next(t).(svcproto.Ping); !ok {
		t.Fatalf("want the echo, got %#v", m)
	}
	close(gate)
	select {
	case <-disconnected:
	case <-time.After(waitTimeout):
		t.Fatal("OnDisconnected did not run")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 1, 2, 3, 4}; len(got) != len(want) || got[0] != 0 || got[4] != 4 {
		t.Errorf("dispatched %v, want %v", got, want)
	}
	if migratedTo != "s2" {
		t.Errorf("MigratedTo = %q", migratedTo)
	}
	c.send(svcproto.Ping{Values: []string{"echo", "barrier2"}})
	if m, ok := c.next(t).(svcproto.Ping); !ok {
		t.Errorf("the migrated client produced %#v", m)
	}
}
