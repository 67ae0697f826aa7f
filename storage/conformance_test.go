package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalrd/signalrd/storage/redistest"
)

// node is one signalrd node's view of a backend.
type node interface {
	Storage
	Close() error
	Stats() Stats
}

// backend makes nodes that share one backend and one deployment prefix; every call of the
// factory is a new, isolated deployment. Nodes are closed by t.Cleanup.
type backend func(t *testing.T) (newNode func() node)

func memoryBackend(t *testing.T) func() node {
	m := NewMemory(Options{})
	t.Cleanup(func() { _ = m.Close() })
	// In-process nodes share one Memory: that is how a Memory is shared.
	return func() node { return m }
}

func redisBackend(srv *redistest.Server) backend {
	return func(t *testing.T) func() node {
		prefix := uniquePrefix(t)
		return func() node {
			r, err := NewRedis(testCtx(t), RedisOptions{Options: Options{Prefix: prefix}, URL: srv.URL()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			return r
		}
	}
}

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	runConformance(t, memoryBackend)
}

func TestConformanceRedis(t *testing.T) {
	t.Parallel()
	runConformance(t, redisBackend(redistest.Start(t)))
}

// runConformance is the one body both backends must pass.
func runConformance(t *testing.T, newBackend backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, newNode func() node)
	}{
		{"PubSubOrderAcrossNodes", testPubSubOrder},
		{"PublishBatch", testPublishBatch},
		{"FanOut", testFanOut},
		{"RefcountedUnsubscribe", testRefcountedUnsubscribe},
		{"NamespaceIsolation", testNamespaceIsolation},
		{"SetTTL", testSetTTL},
		{"SetEntries", testSetEntries},
		{"KeyTTL", testKeyTTL},
		{"PutIfAbsent", testPutIfAbsent},
		{"HeartbeatLiveNodes", testHeartbeat},
		{"SubscribeFromHandler", testSubscribeFromHandler},
		{"SubscribeCanceled", testSubscribeCanceled},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newBackend(t))
		})
	}
}

func mustSubscribe(t *testing.T, s Storage, topic string, h Handler) Subscription {
	t.Helper()
	sub, err := s.Subscribe(testCtx(t), topic, h)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return sub
}

func mustPublish(t *testing.T, s Storage, topic, payload string) {
	t.Helper()
	if err := s.Publish(testCtx(t), topic, []byte(payload)); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func testPubSubOrder(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	in := newInbox()
	sub := mustSubscribe(t, b, "orders", in.handle)
	defer sub.Close()
	want := seq("m", 300)
	buf := make([]byte, 0, 8)
	for _, m := range want {
		// Reusing the buffer checks Publish does not retain it.
		buf = append(buf[:0], m...)
		if err := a.Publish(testCtx(t), "orders", buf); err != nil {
			t.Fatal(err)
		}
	}
	if got := in.waitN(t, len(want)); !slices.Equal(got, want) {
		t.Fatalf("order broken:\n got %q\nwant %q", got, want)
	}
	in.mu.Lock()
	for _, topic := range in.topics {
		if topic != "orders" {
			t.Fatalf("handler got topic %q, want orders", topic)
		}
	}
	in.mu.Unlock()
	if s := a.Stats(); s.Published < uint64(len(want)) {
		t.Fatalf("Published = %d, want >= %d", s.Published, len(want))
	}
	eventually(t, 5*time.Second, "Received counted", func() bool { return b.Stats().Received >= uint64(len(want)) })
}

// testPublishBatch: a batch reaches subscribers like Publish one by one, in order, on the
// namespace it was published in, across topics; namespaces implement it too.
func testPublishBatch(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	ns := a.Namespace("tenant")
	inX, inY, root := newInbox(), newInbox(), newInbox()
	defer mustSubscribe(t, b.Namespace("tenant"), "x", inX.handle).Close()
	defer mustSubscribe(t, b.Namespace("tenant"), "y", inY.handle).Close()
	defer mustSubscribe(t, b, "x", root.handle).Close()
	bp, ok := ns.(Batcher)
	if !ok {
		t.Fatalf("%T does not implement Batcher", ns)
	}
	var msgs []Message
	wantX, wantY := seq("x", 50), seq("y", 50)
	for i := range wantX {
		msgs = append(msgs, Message{Topic: "x", Payload: []byte(wantX[i])}, Message{Topic: "y", Payload: []byte(wantY[i])})
	}
	if failed, err := bp.PublishBatch(testCtx(t), msgs); failed != 0 || err != nil {
		t.Fatalf("PublishBatch = %d, %v", failed, err)
	}
	if got := inX.waitN(t, len(wantX)); !slices.Equal(got, wantX) {
		t.Fatalf("topic x:\n got %q\nwant %q", got, wantX)
	}
	if got := inY.waitN(t, len(wantY)); !slices.Equal(got, wantY) {
		t.Fatalf("topic y:\n got %q\nwant %q", got, wantY)
	}
	mustPublish(t, a, "x", "root-only")
	if got := root.waitN(t, 1); !slices.Equal(got, []string{"root-only"}) {
		t.Fatalf("the root namespace got %q: a batch leaked out of its namespace", got)
	}
	if s := a.Stats(); s.Published < uint64(len(msgs)) {
		t.Fatalf("Published = %d, want >= %d", s.Published, len(msgs))
	}
}

// testPutIfAbsent: one writer wins, an existing value stays, an expired one is replaced,
// namespaces are separate, and racing writers on two nodes make exactly one winner.
func testPutIfAbsent(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	ctx := testCtx(t)
	put := func(s Storage, key, value string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.PutIfAbsent(ctx, key, []byte(value), ttl)
		if err != nil {
			t.Fatalf("PutIfAbsent(%q): %v", key, err)
		}
		return ok
	}
	if !put(a, "k", "first", 0) {
		t.Fatal("PutIfAbsent on an absent key did not store")
	}
	if put(b, "k", "second", 0) {
		t.Fatal("PutIfAbsent on a present key stored")
	}
	if v, err := b.Get(ctx, "k"); err != nil || string(v) != "first" {
		t.Fatalf("Get after a refused PutIfAbsent = %q, %v; want first", v, err)
	}
	if !put(a.Namespace("other"), "k", "ns", 0) {
		t.Fatal("PutIfAbsent in another namespace was refused")
	}
	if !put(a, "short", "v1", 200*time.Millisecond) {
		t.Fatal("PutIfAbsent with a TTL did not store")
	}
	eventually(t, 5*time.Second, "the short key expires", func() bool {
		_, err := a.Get(ctx, "short")
		return errors.Is(err, ErrNotFound)
	})
	if !put(b, "short", "v2", 0) {
		t.Fatal("PutIfAbsent on an expired key did not store")
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		n := node(a)
		if i%2 == 1 {
			n = b
		}
		wg.Go(func() {
			if ok, err := n.PutIfAbsent(ctx, "race", []byte(strconv.Itoa(i)), 0); err == nil && ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d racing PutIfAbsent calls won, want 1", wins.Load())
	}
}

func testFanOut(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	var ins []*inbox
	for _, n := range []node{a, b, b, b} {
		in := newInbox()
		ins = append(ins, in)
		defer mustSubscribe(t, n, "room", in.handle).Close()
	}
	other := newInbox()
	defer mustSubscribe(t, b, "other-room", other.handle).Close()
	want := seq("f", 20)
	for _, m := range want {
		mustPublish(t, a, "room", m)
	}
	for i, in := range ins {
		if got := in.waitN(t, len(want)); !slices.Equal(got, want) {
			t.Fatalf("subscriber %d got %q, want %q", i, got, want)
		}
	}
	mustPublish(t, a, "other-room", "only-other")
	other.waitN(t, 1)
	if got := other.snapshot(); !slices.Equal(got, []string{"only-other"}) {
		t.Fatalf("other topic got %q", got)
	}
}

func testRefcountedUnsubscribe(t *testing.T, newNode func() node) {
	n := newNode()
	base := n.Stats().Topics
	in1, in2 := newInbox(), newInbox()
	s1 := mustSubscribe(t, n, "rc", in1.handle)
	s2 := mustSubscribe(t, n, "rc", in2.handle)
	if s1.Topic() != "rc" {
		t.Fatalf("Topic() = %q", s1.Topic())
	}
	if got := n.Stats().Topics - base; got != 1 {
		t.Fatalf("two subscribers of one topic hold %d topics, want 1", got)
	}
	mustPublish(t, n, "rc", "both")
	in1.waitN(t, 1)
	in2.waitN(t, 1)

	s1.Close()
	s1.Close() // idempotent
	if got := n.Stats().Topics - base; got != 1 {
		t.Fatalf("after one Close: %d topics, want 1", got)
	}
	mustPublish(t, n, "rc", "second")
	// One delivery reaches every current subscriber together, so once s2 has it, s1 would too.
	in2.waitN(t, 2)
	if got := in1.snapshot(); !slices.Equal(got, []string{"both"}) {
		t.Fatalf("closed subscriber got %q", got)
	}

	s2.Close()
	if got := n.Stats().Topics - base; got != 0 {
		t.Fatalf("after the last Close: %d topics, want 0", got)
	}
	// Subscribing again works (a new backend subscription).
	in3 := newInbox()
	s3 := mustSubscribe(t, n, "rc", in3.handle)
	defer s3.Close()
	mustPublish(t, n, "rc", "third")
	in3.waitN(t, 1)
	if got := in2.snapshot(); len(got) != 2 {
		t.Fatalf("closed subscriber 2 got %q", got)
	}
}

func testNamespaceIsolation(t *testing.T, newNode func() node) {
	root := newNode()
	ctx := testCtx(t)
	// Names chosen to collide under naive joining ("a" + ":" + "b:x", "a:b" + ":" + "x", ...).
	spaces := map[string]Storage{
		"root":    root,
		"a":       root.Namespace("a"),
		"b":       root.Namespace("b"),
		"a/b":     root.Namespace("a").Namespace("b"),
		"a:b":     root.Namespace("a:b"),
		"a%2Fb":   root.Namespace("a/b"),
		"empty":   root.Namespace(""),
		"{brace}": root.Namespace("{x}"),
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range spaces {
			if !yield(k) {
				return
			}
		}
	})
	inboxes := map[string]*inbox{}
	for _, name := range names {
		s := spaces[name]
		if err := s.Put(ctx, "k", []byte(name), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetAdd(ctx, "set", "member-"+name, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Heartbeat(ctx, "node-"+name, time.Minute); err != nil {
			t.Fatal(err)
		}
		in := newInbox()
		inboxes[name] = in
		defer mustSubscribe(t, s, "t", in.handle).Close()
	}
	// Keys that would alias the namespaced ones if the namespace were just a key prefix.
	if err := root.Put(ctx, "a:k", []byte("alias"), 0); err != nil {
		t.Fatal(err)
	}
	if err := root.Namespace("a").Put(ctx, "b:k", []byte("alias2"), 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		mustPublish(t, spaces[name], "t", "msg-"+name)
	}
	for _, name := range names {
		mustPublish(t, spaces[name], "t", "end-"+name)
	}
	for _, name := range names {
		s := spaces[name]
		v, err := s.Get(ctx, "k")
		if err != nil || string(v) != name {
			t.Errorf("%s: Get = %q, %v; want %q", name, v, err, name)
		}
		m, err := s.SetMembers(ctx, "set")
		if err != nil || !slices.Equal(m, []string{"member-" + name}) {
			t.Errorf("%s: SetMembers = %q, %v", name, m, err)
		}
		if e, err := s.SetEntries(ctx, "set"); err != nil || len(e) != 1 || e[0].Member != "member-"+name || e[0].Expires.IsZero() {
			t.Errorf("%s: SetEntries = %v, %v", name, e, err)
		}
		nodes, err := s.LiveNodes(ctx)
		if err != nil || !slices.Equal(nodes, []string{"node-" + name}) {
			t.Errorf("%s: LiveNodes = %q, %v", name, nodes, err)
		}
		if got := inboxes[name].waitN(t, 2); !slices.Equal(got, []string{"msg-" + name, "end-" + name}) {
			t.Errorf("%s: received %q", name, got)
		}
	}
	// Same namespace name, same data: views are cheap and equivalent.
	if v, err := root.Namespace("a").Get(ctx, "k"); err != nil || string(v) != "a" {
		t.Errorf("second view of a: %q, %v", v, err)
	}
}

func testSetTTL(t *testing.T, newNode func() node) {
	s := newNode().Namespace("sets")
	ctx := testCtx(t)
	const short = 300 * time.Millisecond
	add := func(m string, ttl time.Duration) {
		t.Helper()
		if err := s.SetAdd(ctx, "g", m, ttl); err != nil {
			t.Fatal(err)
		}
	}
	members := func() []string {
		t.Helper()
		m, err := s.SetMembers(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	add("short", short)
	add("forever", 0)
	add("long", time.Minute)
	add("extended", short)
	add("extended", time.Minute) // moves its expiry
	if got, want := members(), []string{"extended", "forever", "long", "short"}; !slices.Equal(got, want) {
		t.Fatalf("members = %q, want %q", got, want)
	}
	if ok, err := s.SetContains(ctx, "g", "short"); err != nil || !ok {
		t.Fatalf("contains short = %v, %v", ok, err)
	}
	if ok, err := s.SetContains(ctx, "g", "absent"); err != nil || ok {
		t.Fatalf("contains absent = %v, %v", ok, err)
	}
	eventually(t, 5*time.Second, "the short member to expire", func() bool {
		ok, err := s.SetContains(ctx, "g", "short")
		return err == nil && !ok
	})
	if got, want := members(), []string{"extended", "forever", "long"}; !slices.Equal(got, want) {
		t.Fatalf("after expiry members = %q, want %q", got, want)
	}
	if err := s.SetRemove(ctx, "g", "long"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRemove(ctx, "g", "never-there"); err != nil {
		t.Fatal(err)
	}
	if got, want := members(), []string{"extended", "forever"}; !slices.Equal(got, want) {
		t.Fatalf("after remove members = %q, want %q", got, want)
	}
	if err := s.SetRemoveAll(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if got := members(); len(got) != 0 {
		t.Fatalf("after remove all members = %q", got)
	}
	if got, err := s.SetMembers(ctx, "never"); err != nil || len(got) != 0 {
		t.Fatalf("absent set = %q, %v", got, err)
	}
	// A set whose only members expire disappears entirely.
	add("a", short)
	add("b", short)
	eventually(t, 5*time.Second, "the whole set to expire", func() bool { return len(members()) == 0 })
}

func testSetEntries(t *testing.T, newNode func() node) {
	root := newNode()
	s := root.Namespace("entries")
	ctx := testCtx(t)
	const short = 300 * time.Millisecond
	// Expiry is on the backend's clock: Redis's, on this machine in tests, so close to ours.
	// It has millisecond precision on Redis.
	const slack = 2 * time.Second
	add := func(s Storage, m string, ttl time.Duration) {
		t.Helper()
		if err := s.SetAdd(ctx, "g", m, ttl); err != nil {
			t.Fatal(err)
		}
	}
	entries := func(s Storage, key string) []SetEntry {
		t.Helper()
		e, err := s.SetEntries(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// check compares got with want (member -> ttl, 0: none), the expiries against [before, after] + ttl.
	check := func(what string, got []SetEntry, before, after time.Time, want map[string]time.Duration) {
		t.Helper()
		var members, wantMembers []string
		for _, e := range got {
			members = append(members, e.Member)
		}
		for m := range want {
			wantMembers = append(wantMembers, m)
		}
		slices.Sort(wantMembers)
		if !slices.Equal(members, wantMembers) {
			t.Fatalf("%s: members %q, want %q", what, members, wantMembers)
		}
		for _, e := range got {
			ttl := want[e.Member]
			switch {
			case ttl <= 0 && !e.Expires.IsZero():
				t.Errorf("%s: %s expires %v, want never", what, e.Member, e.Expires)
			case ttl > 0 && (e.Expires.Before(before.Add(ttl-slack)) || e.Expires.After(after.Add(ttl+slack))):
				t.Errorf("%s: %s expires %v, want within %v of [%v, %v]", what, e.Member, e.Expires, slack, before.Add(ttl), after.Add(ttl))
			}
		}
	}

	if got := entries(s, "g"); len(got) != 0 {
		t.Fatalf("absent set = %v", got)
	}
	before := time.Now()
	add(s, "short", short)
	add(s, "forever", 0)
	add(s, "long", time.Minute)
	add(s, "b-hour", time.Hour)
	add(s, "extended", short)
	add(s, "extended", time.Minute) // moves its expiry
	add(s, "persisted", time.Minute)
	add(s, "persisted", 0) // drops its expiry
	after := time.Now()
	got := entries(s, "g")
	check("entries", got, before, after, map[string]time.Duration{
		"short": short, "forever": 0, "long": time.Minute, "b-hour": time.Hour,
		"extended": time.Minute, "persisted": 0,
	})
	if m, err := s.SetMembers(ctx, "g"); err != nil || len(m) != len(got) {
		t.Fatalf("SetMembers = %q, %v; SetEntries = %v", m, err, got)
	}

	// Namespaces and keys are isolated.
	other := root.Namespace("entries-other")
	add(other, "elsewhere", time.Minute)
	if got := entries(root, "g"); len(got) != 0 {
		t.Fatalf("root namespace sees %v", got)
	}
	if got := entries(s, "other-key"); len(got) != 0 {
		t.Fatalf("other key sees %v", got)
	}
	check("other namespace", entries(other, "g"), before, time.Now(), map[string]time.Duration{"elsewhere": time.Minute})

	// Expired members are excluded.
	eventually(t, 5*time.Second, "the short member to leave SetEntries", func() bool {
		e, err := s.SetEntries(ctx, "g")
		return err == nil && !slices.ContainsFunc(e, func(e SetEntry) bool { return e.Member == "short" })
	})
	check("after expiry", entries(s, "g"), before, after, map[string]time.Duration{
		"forever": 0, "long": time.Minute, "b-hour": time.Hour, "extended": time.Minute, "persisted": 0,
	})
	if err := s.SetRemove(ctx, "g", "long"); err != nil {
		t.Fatal(err)
	}
	check("after remove", entries(s, "g"), before, after, map[string]time.Duration{
		"forever": 0, "b-hour": time.Hour, "extended": time.Minute, "persisted": 0,
	})
	if err := s.SetRemoveAll(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if got := entries(s, "g"); len(got) != 0 {
		t.Fatalf("after remove all = %v", got)
	}
	// A set of expired members only is empty.
	add(s, "x", short)
	eventually(t, 5*time.Second, "the whole set to expire", func() bool { return len(entries(s, "g")) == 0 })
	check("other namespace at the end", entries(other, "g"), before, time.Now(), map[string]time.Duration{"elsewhere": time.Minute})
}

func testKeyTTL(t *testing.T, newNode func() node) {
	s := newNode().Namespace("keys")
	ctx := testCtx(t)
	const short = 300 * time.Millisecond
	val := []byte("v1")
	if err := s.Put(ctx, "k", val, short); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // Put must not retain it
	got, err := s.Get(ctx, "k")
	if err != nil || string(got) != "v1" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	got[0] = 'Y' // nor share it with Get's result
	if got, _ := s.Get(ctx, "k"); string(got) != "v1" {
		t.Fatalf("Get after mutation = %q", got)
	}
	if err := s.Put(ctx, "persisted", []byte("p"), short); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx, "persisted", 0); err != nil {
		t.Fatalf("Refresh to no expiry: %v", err)
	}
	if err := s.Put(ctx, "refreshed", []byte("r"), short); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx, "refreshed", time.Minute); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if err := s.Put(ctx, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("empty value = %q, %v", got, err)
	}
	eventually(t, 5*time.Second, "the key to expire", func() bool {
		_, err := s.Get(ctx, "k")
		return errors.Is(err, ErrNotFound)
	})
	for _, k := range []string{"persisted", "refreshed"} {
		if _, err := s.Get(ctx, k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if err := s.Refresh(ctx, "k", time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh of an expired key = %v, want ErrNotFound", err)
	}
	if err := s.Refresh(ctx, "never", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh(0) of an absent key = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "persisted"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "persisted"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "persisted"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if err := s.Put(ctx, "refreshed", []byte("r2"), 0); err != nil { // replaces value and expiry
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "refreshed"); string(got) != "r2" {
		t.Fatalf("overwritten value = %q", got)
	}
}

func testHeartbeat(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	ctx := testCtx(t)
	const ttl = 300 * time.Millisecond
	if err := a.Heartbeat(ctx, "node-a", ttl); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx, "node-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx, "node-c", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, n := range []node{a, b} {
		if got, err := n.LiveNodes(ctx); err != nil || !slices.Equal(got, []string{"node-a", "node-b", "node-c"}) {
			t.Fatalf("LiveNodes = %q, %v", got, err)
		}
	}
	start := time.Now()
	eventually(t, 5*time.Second, "node-a to leave LiveNodes", func() bool {
		got, err := b.LiveNodes(ctx)
		return err == nil && slices.Equal(got, []string{"node-b", "node-c"})
	})
	if waited := time.Since(start); waited > ttl+2*time.Second {
		t.Fatalf("node-a left after %v, ttl %v", waited, ttl)
	}
	if err := b.RemoveNode(ctx, "node-c"); err != nil {
		t.Fatal(err)
	}
	if got, err := a.LiveNodes(ctx); err != nil || !slices.Equal(got, []string{"node-b"}) {
		t.Fatalf("LiveNodes after RemoveNode = %q, %v", got, err)
	}
	// A heartbeat brings a node back.
	if err := a.Heartbeat(ctx, "node-a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LiveNodes(ctx); err != nil || !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Fatalf("LiveNodes after a new heartbeat = %q, %v", got, err)
	}
}

func testSubscribeFromHandler(t *testing.T, newNode func() node) {
	n := newNode()
	inner := newInbox()
	subs := make(chan Subscription, 1)
	outer := mustSubscribe(t, n, "outer", func(string, []byte) {
		// A handler may subscribe (and the subscription is confirmed by another goroutine).
		s, err := n.Subscribe(context.Background(), "inner", inner.handle)
		if err != nil {
			t.Error(err)
		}
		subs <- s
	})
	defer outer.Close()
	mustPublish(t, n, "outer", "go")
	var s Subscription
	select {
	case s = <-subs:
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe from a handler did not return")
	}
	defer s.Close()
	mustPublish(t, n, "inner", "hello")
	inner.waitN(t, 1)
}

func testSubscribeCanceled(t *testing.T, newNode func() node) {
	n := newNode()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	base := n.Stats().Topics
	if _, err := n.Subscribe(ctx, "x", func(string, []byte) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a canceled ctx = %v", err)
	}
	if got := n.Stats().Topics; got != base {
		t.Fatalf("canceled Subscribe left %d topics", got-base)
	}
	if _, err := n.Get(ctx, "k"); err == nil {
		t.Fatal("Get with a canceled ctx succeeded")
	}
}

// testConcurrent hammers one topic from many goroutines; -race checks the bookkeeping and
// the final state must be clean.
func testConcurrent(t *testing.T, newNode func() node) {
	a, b := newNode(), newNode()
	base := b.Stats().Topics
	keep := newInbox()
	defer mustSubscribe(t, b, "hot", keep.handle).Close()
	var wg sync.WaitGroup
	ctx := testCtx(t)
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				topic := fmt.Sprintf("hot-%d", i%3)
				s, err := b.Subscribe(ctx, topic, func(string, []byte) {})
				if err != nil {
					t.Error(err)
					return
				}
				if err := a.Publish(ctx, "hot", fmt.Appendf(nil, "g%d-%d", g, i)); err != nil {
					t.Error(err)
				}
				if err := a.Publish(ctx, topic, []byte("x")); err != nil {
					t.Error(err)
				}
				s.Close()
			}
		})
	}
	wg.Wait()
	keep.waitN(t, 80)
	eventually(t, 5*time.Second, "the temporary topics to be gone", func() bool { return b.Stats().Topics == base+1 })
}

func testClosed(t *testing.T, newNode func() node) {
	n := newNode()
	ctx := testCtx(t)
	sub := mustSubscribe(t, n, "c", func(string, []byte) {})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	sub.Close() // after the storage: harmless
	checks := map[string]error{
		"Publish":   n.Publish(ctx, "c", []byte("x")),
		"Put":       n.Put(ctx, "k", nil, 0),
		"SetAdd":    n.Namespace("x").SetAdd(ctx, "s", "m", 0),
		"Heartbeat": n.Heartbeat(ctx, "n", time.Second),
	}
	_, checks["Subscribe"] = n.Subscribe(ctx, "c", func(string, []byte) {})
	_, checks["Get"] = n.Get(ctx, "k")
	_, checks["LiveNodes"] = n.LiveNodes(ctx)
	_, checks["SetEntries"] = n.Namespace("x").SetEntries(ctx, "s")
	_, checks["PutIfAbsent"] = n.PutIfAbsent(ctx, "k", nil, 0)
	_, checks["PublishBatch"] = n.Namespace("x").(Batcher).PublishBatch(ctx, []Message{{Topic: "c"}})
	for op, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
}
