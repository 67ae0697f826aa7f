package server

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/sdk/appserver"
	sdkclient "github.com/signalrd/signalrd/sdk/client"
	"github.com/signalrd/signalrd/storage"
)

// Internal checks of the cluster review fixes (commit 2fb32f2) where the state to observe, or
// the way to reach the case, is inside a node. Over-the-wire ones: cluster_fixes_test.go.

const fixWait = 5 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(fixWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", fixWait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fixNode is one in-process node of a test cluster.
type fixNode struct {
	s    *Server
	addr string
	cl   *cluster
}

// startFixNodes starts nodes "node-{name}" sharing one storage.Memory (wrapped by wrap, when
// set, per node).
func startFixNodes(t *testing.T, wrap func(name string, s storage.Storage) storage.Storage, names ...string) map[string]*fixNode {
	t.Helper()
	store := storage.NewMemory(storage.Options{})
	t.Cleanup(func() { _ = store.Close() }) // after every node stopped
	out := map[string]*fixNode{}
	for _, n := range names {
		var st storage.Storage = store
		if wrap != nil {
			st = wrap(n, st)
		}
		s, addr := startInternalNode(t, st, "node-"+n)
		out[n] = &fixNode{s: s, addr: addr, cl: s.instances[0].cl}
	}
	return out
}

// startFixApp connects an app server hosting hub "chat" to a node.
func startFixApp(t *testing.T, addr string, hub *appserver.Hub) *appserver.HubContext {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fixWait)
	defer cancel()
	_, port, _ := net.SplitHostPort(addr)
	portN, _ := strconv.Atoi(port)
	app, err := appserver.New(appserver.Options{ConnectionString: auth.FormatConnectionString("http://127.0.0.1", portN, DevAccessKey), ConnectionCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	hc := app.MapHub("chat", hub)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	if err := app.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return hc
}

// dialFix connects a client of hub "chat" to a node directly.
func dialFix(t *testing.T, addr, user string) *sdkclient.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fixWait)
	defer cancel()
	tok, err := auth.IssueToken(DevAccessKey, auth.IssueOptions{
		Audience: "http://127.0.0.1/client/?hub=chat",
		Claims:   []auth.Claim{{Type: auth.ClaimUserID, Value: user}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sdkclient.Dial(ctx, sdkclient.Options{
		URL:         "http://" + addr + "/client/?hub=chat",
		AccessToken: func(context.Context) (string, error) { return tok, nil },
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), fixWait)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func echoHub() *appserver.Hub {
	h := &appserver.Hub{}
	h.On("echo", func(c *appserver.Context, s string) (string, error) { return s, nil })
	return h
}

// TestClusterRelayStubGone: the app node forgot a relayed client's stub without telling the
// client's node (what it does when it takes that node for dead or restarted). The client's next
// message reaches the app node for an unknown stub: its node closes it (server lost, allowed to
// reconnect) instead of letting it talk into the void.
func TestClusterRelayStubGone(t *testing.T) {
	t.Parallel()
	nodes := startFixNodes(t, nil, "a", "b")
	startFixApp(t, nodes["a"].addr, echoHub())
	c := dialFix(t, nodes["b"].addr, "u1")
	id := c.ConnectionID()
	ctx, cancel := context.WithTimeout(context.Background(), fixWait)
	defer cancel()
	var echo string
	if err := c.InvokeInto(ctx, &echo, "echo", "relayed"); err != nil || echo != "relayed" {
		t.Fatalf("echo through the relay = %q, %v", echo, err)
	}
	r := nodes["a"].cl.relayOf(id)
	if r == nil || r.node != "node-b" {
		t.Fatalf("node A has no relay stub for the client of node B: %+v", r)
	}
	nodes["a"].cl.dropRelay(r, false)

	if err := c.Send(ctx, "echo", "into the void?"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(fixWait):
		t.Fatal("the client whose stub is gone is still connected")
	}
	var ce *sdkclient.CloseError
	if err := c.Err(); !errors.As(err, &ce) || !ce.AllowReconnect || ce.Message != reasonServerLost {
		t.Fatalf("the client ended with %v, want a Close %q that allows reconnecting", err, reasonServerLost)
	}
	waitFor(t, "node B forgets the client", func() bool {
		_, ok := nodes["b"].s.instances[0].hub("chat").client(id)
		return !ok
	})
}

// pubRecorder records the envelopes a node publishes.
type pubRecorder struct {
	storage.Storage
	mu   *sync.Mutex
	sent *[]recordedEnvelope
}

type recordedEnvelope struct {
	topic string
	e     *envelope
}

func (p pubRecorder) Namespace(name string) storage.Storage {
	return pubRecorder{p.Storage.Namespace(name), p.mu, p.sent}
}

func (p pubRecorder) Publish(ctx context.Context, topic string, b []byte) error {
	err := p.Storage.Publish(ctx, topic, b)
	if e, derr := decodeEnvelope(b); derr == nil && err == nil {
		p.mu.Lock()
		*p.sent = append(*p.sent, recordedEnvelope{topic, e})
		p.mu.Unlock()
	}
	return err
}

func (p pubRecorder) find(kind envKind, conn string) []recordedEnvelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []recordedEnvelope
	for _, r := range *p.sent {
		if r.e.Kind == kind && slices.Contains(r.e.Conns, conn) {
			out = append(out, r)
		}
	}
	return out
}

// TestClusterRemoteInvocationForgotten: a client result whose caller is on another node is
// forgotten by the client's node once the client answered it, so closing the client later
// tells the caller's node nothing about it.
func TestClusterRemoteInvocationForgotten(t *testing.T) {
	t.Parallel()
	rec := pubRecorder{mu: &sync.Mutex{}, sent: &[]recordedEnvelope{}}
	nodes := startFixNodes(t, func(n string, s storage.Storage) storage.Storage {
		if n == "b" {
			rec.Storage = s
			return rec
		}
		return s
	}, "a", "b")
	// The caller (and the host) is the app server on A; the client is held by B.
	hc := startFixApp(t, nodes["a"].addr, &appserver.Hub{})
	c := dialFix(t, nodes["b"].addr, "u1")
	id := c.ConnectionID()
	held, release := make(chan struct{}, 1), make(chan struct{})
	c.OnResult("add", func(args []hubproto.Raw) (any, error) {
		var x, y int
		_ = c.Unmarshal(args[0], &x)
		_ = c.Unmarshal(args[1], &y)
		if x < 0 {
			held <- struct{}{}
			<-release
		}
		return x + y, nil
	})
	b := nodes["b"].cl
	pending := func() []string {
		b.remoteInvMu.Lock()
		defer b.remoteInvMu.Unlock()
		var out []string
		for key := range b.remoteInv {
			if strings.HasPrefix(key, id+"\x00") {
				out = append(out, key)
			}
		}
		return out
	}
	bc, ok := nodes["b"].s.instances[0].hub("chat").client(id)
	if !ok {
		t.Fatal("node B does not hold the client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), fixWait)
	defer cancel()

	// While the client works on it, node B remembers the invocation for its caller on A.
	res := make(chan error, 1)
	go func() {
		got, err := appserver.InvokeClient[int](ctx, hc, id, "add", -1, 3)
		if err == nil && got != 2 {
			err = errors.New("wrong result " + strconv.Itoa(got))
		}
		res <- err
	}()
	select {
	case <-held:
	case err := <-res:
		t.Fatalf("InvokeClient returned before the client got it: %v", err)
	case <-time.After(fixWait):
		t.Fatal("the invocation did not reach the client")
	}
	if p := pending(); len(p) != 1 || bc.remoteInvs.Load() != 1 {
		t.Fatalf("while the client works: node B remembers %q, counter %d; want one invocation", p, bc.remoteInvs.Load())
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("InvokeClient: %v", err)
	}
	// Node B saw the client's completion before relaying it: nothing left once the caller has it.
	if p := pending(); len(p) != 0 || bc.remoteInvs.Load() != 0 {
		t.Fatalf("after the completion: node B remembers %q, counter %d; want none", p, bc.remoteInvs.Load())
	}
	for i := range 3 {
		got, err := appserver.InvokeClient[int](ctx, hc, id, "add", i, 1)
		if err != nil || got != i+1 {
			t.Fatalf("InvokeClient(add %d 1) = %d, %v", i, got, err)
		}
	}
	if p := pending(); len(p) != 0 || bc.remoteInvs.Load() != 0 {
		t.Fatalf("after more completions: node B remembers %q, counter %d; want none", p, bc.remoteInvs.Load())
	}

	// The client leaves: node B sends no failure for the completed invocations. It would queue
	// them while finishing the client, before ending its registry entry (a tombstone); a fence sent
	// to node A after that is published behind them (one queue per topic).
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node B finishes the client (its registry entry ends)", func() bool {
		v, err := b.store.Get(ctx, keyConn(id))
		return errors.Is(err, storage.ErrNotFound) || err == nil && len(v) == 0
	})
	b.publish(topicNode("node-a"), &envelope{Kind: envRPCReply, Conns: []string{id}, Text: "fence"}) // ID 0: no request
	waitFor(t, "the fence is published", func() bool { return len(rec.find(envRPCReply, id)) > 0 })
	if f := rec.find(envInvokeFailed, id); len(f) != 0 {
		t.Fatalf("node B sent %d invocation failures for completed invocations (first: %+v)", len(f), f[0].e)
	}
}

// subHooks is a storage counting each topic's live subscriptions, calling a hook when one
// closes.
type subHooks struct {
	storage.Storage
	h *hookState
}

type hookState struct {
	mu      sync.Mutex
	active  map[string]int
	most    map[string]int
	onClose map[string]func() // called once, inside Subscription.Close, after the count dropped
}

func (s subHooks) Namespace(name string) storage.Storage {
	return subHooks{s.Storage.Namespace(name), s.h}
}

func (s subHooks) Subscribe(ctx context.Context, topic string, h storage.Handler) (storage.Subscription, error) {
	sub, err := s.Storage.Subscribe(ctx, topic, h)
	if err != nil {
		return nil, err
	}
	s.h.mu.Lock()
	s.h.active[topic]++
	s.h.most[topic] = max(s.h.most[topic], s.h.active[topic])
	s.h.mu.Unlock()
	return &hookSub{Subscription: sub, h: s.h}, nil
}

func (s *hookState) count(topic string) (active, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[topic], s.most[topic]
}

type hookSub struct {
	storage.Subscription
	h    *hookState
	once sync.Once
}

func (s *hookSub) Close() {
	s.once.Do(func() {
		topic := s.Topic()
		s.h.mu.Lock()
		s.h.active[topic]--
		hook := s.h.onClose[topic]
		delete(s.h.onClose, topic)
		s.h.mu.Unlock()
		if hook != nil {
			hook()
		}
		s.Subscription.Close()
	})
}

// TestClusterInterestFlap: a hub, user or group topic that stops being wanted and is wanted
// again at once ends subscribed, and wait returns only once it is subscribed, also when the
// wish comes back while the subscription is being closed.
func TestClusterInterestFlap(t *testing.T) {
	t.Parallel()
	hs := &hookState{active: map[string]int{}, most: map[string]int{}, onClose: map[string]func(){}}
	store := storage.NewMemory(storage.Options{})
	t.Cleanup(func() { _ = store.Close() })
	s, _ := startInternalNode(t, subHooks{store, hs}, "node-f")
	i := s.instances[0].cl.interest
	for _, tc := range []struct{ name, topic, hub, user string }{
		{"hub", topicAll("flap"), "", ""},
		{"user", topicUser("flap", "u"), "flap", "u"},
		{"group", topicGroup("flap", "g"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), fixWait)
			defer cancel()
			subscribedNow := func() bool { return slices.Contains(i.subscribed(), tc.topic) }
			want := func(w bool) { i.set(tc.topic, w, tc.hub, tc.user) }
			expectSubscribed := func(what string) {
				t.Helper()
				i.wait(ctx, tc.topic)
				if active, _ := hs.count(tc.topic); active != 1 || !subscribedNow() {
					t.Fatalf("%s: wait returned with %d live subscriptions (subscribed: %q)", what, active, i.subscribed())
				}
			}
			want(true)
			expectSubscribed("first member")

			// The wish comes back while the subscription is being closed.
			var early bool
			waited := make(chan int, 1)
			hs.mu.Lock()
			hs.onClose[tc.topic] = func() {
				want(true)
				// What wait would find now: a closed ready channel means it returns at once,
				// though the subscription is going away.
				i.mu.Lock()
				var ready chan struct{}
				if st := i.topics[tc.topic]; st != nil && st.want {
					ready = st.ready
				}
				i.mu.Unlock()
				if ready == nil {
					early = true
				} else {
					select {
					case <-ready:
						early = true
					default:
					}
				}
				go func() {
					i.wait(ctx, tc.topic)
					active, _ := hs.count(tc.topic)
					waited <- active
				}()
			}
			hs.mu.Unlock()
			want(false)
			select {
			case active := <-waited:
				if early || active != 1 {
					t.Fatalf("a member arriving during the unsubscribe: wait would return at once: %v; it returned with %d live subscriptions", early, active)
				}
			case <-time.After(fixWait):
				t.Fatal("wait did not return after the topic was wanted again")
			}
			waitFor(t, "the topic is subscribed", subscribedNow)
			expectSubscribed("after the flap during the unsubscribe")

			// Many quick flaps: subscribed at the end, never twice at once.
			for range 200 {
				want(false)
				want(true)
			}
			expectSubscribed("after quick flaps")
			if _, most := hs.count(tc.topic); most != 1 {
				t.Fatalf("the topic had %d subscriptions at once", most)
			}
			for range 50 {
				want(true)
				want(false)
			}
			waitFor(t, "the unwanted topic is unsubscribed and forgotten", func() bool {
				active, _ := hs.count(tc.topic)
				i.mu.Lock()
				_, known := i.topics[tc.topic]
				i.mu.Unlock()
				return active == 0 && !known
			})
		})
	}
}
