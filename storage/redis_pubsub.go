package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis pub/sub is organised in buckets. Standalone and Sentinel have one bucket: one go-redis
// PubSub (one connection) carries every SUBSCRIBE of the node. A Cluster has PubSubShards
// buckets; a topic's channel carries its bucket's hash tag, so every channel of a bucket lives
// in one slot and the bucket's PubSub is one connection to that slot's master using
// SSUBSCRIBE, while SPUBLISH goes to the same master only. That is what makes go-redis's
// reconnect work on a Cluster: it resubscribes every channel of a PubSub with one SSUBSCRIBE
// (which Redis rejects with CROSSSLOT unless they share a slot) on a connection routed by the
// slot of one of them.
//
// Per bucket, one goroutine (run) receives; it never calls handlers, it queues to the
// storage's dispatcher, so a slow handler never stalls a Redis connection and a handler may
// call Subscribe (which waits for this goroutine to see the confirmation).

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

type bucket struct {
	c *redisCore

	// opMu serialises (un)subscribe writes and connection replacement so Redis sees them in
	// the order the topic map changed; it is held across that I/O (bounded by a context).
	// The receive path never takes it. Lock order: opMu, then mu.
	opMu sync.Mutex

	mu            sync.Mutex // guards the fields below; never held across I/O
	ps            *redis.PubSub
	started       bool
	topics        map[string]*rtopic // by channel
	unsubPending  map[string]int     // our UNSUBSCRIBEs not yet confirmed, by channel
	connected     bool               // false from a receive error until the next message
	down          chan struct{}      // closed (and replaced) when connected turns false
	replaceWanted bool               // the watchdog closed ps: run must build a new one

	lastActivity atomic.Int64 // unix nanos of the last thing received
}

type rtopic struct {
	topicEntry
	channel string
	ready   chan struct{} // closed on the backend's subscribe confirmation
	isReady bool
}

func newBucket(c *redisCore) *bucket {
	return &bucket{
		c:            c,
		topics:       make(map[string]*rtopic),
		unsubPending: make(map[string]int),
		connected:    true, // until shown otherwise, so a first Subscribe waits for its confirmation
		down:         make(chan struct{}),
	}
}

// channel names topic's Redis channel and picks its bucket.
func (c *redisCore) channel(ns, topic string) (string, *bucket) {
	base := joinKey(c.opts.Prefix, ns, "p", "")
	if c.mode != modeCluster {
		return base + topic, c.buckets[0]
	}
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(topic))
	i := int(h.Sum32() % uint32(len(c.buckets)))
	return base + "{" + c.tags[i] + "}:" + topic, c.buckets[i]
}

func (c *redisCore) newPubSub() *redis.PubSub {
	// With no channels neither call dials; the connection is made by the first (S)SUBSCRIBE,
	// so on a Cluster it is routed by that channel's slot.
	if c.mode == modeCluster {
		return c.client.SSubscribe(context.Background())
	}
	return c.client.Subscribe(context.Background())
}

// subscribeChans writes (S)SUBSCRIBE. A write that fails on a broken connection makes
// go-redis reconnect and resubscribe what it knew before this call, and only then record
// these channels; trying once more puts them on the new connection (or leaves them recorded
// for the next reconnect if Redis is down).
func (c *redisCore) subscribeChans(ctx context.Context, ps *redis.PubSub, chans ...string) error {
	do := ps.Subscribe
	if c.mode == modeCluster {
		do = ps.SSubscribe
	}
	err := do(ctx, chans...)
	if err != nil && ctx.Err() == nil {
		err = do(ctx, chans...)
	}
	return err
}

func (c *redisCore) unsubscribeChans(ctx context.Context, ps *redis.PubSub, chans ...string) error {
	if c.mode == modeCluster {
		return ps.SUnsubscribe(ctx, chans...)
	}
	return ps.Unsubscribe(ctx, chans...)
}

func (v redisView) Publish(ctx context.Context, topic string, payload []byte) error {
	c := v.c
	if c.closed() {
		c.stats.publishErrors.Add(1)
		return fmt.Errorf("storage: publish %q: %w", topic, ErrClosed)
	}
	ch, _ := c.channel(v.ns, topic)
	var err error
	if c.mode == modeCluster {
		err = c.client.SPublish(ctx, ch, payload).Err()
	} else {
		err = c.client.Publish(ctx, ch, payload).Err()
	}
	if err != nil {
		c.stats.publishErrors.Add(1)
		c.pubLoss.fail(err)
		return fmt.Errorf("storage: publish %q: %w", topic, err)
	}
	c.stats.published.Add(1)
	c.pubLoss.ok()
	return nil
}

// PublishBatch implements Batcher: the messages go out in one pipeline (one round trip per
// Redis node), in order.
func (v redisView) PublishBatch(ctx context.Context, msgs []Message) (int, error) {
	c := v.c
	if c.closed() {
		c.stats.publishErrors.Add(uint64(len(msgs)))
		return len(msgs), fmt.Errorf("storage: publish batch: %w", ErrClosed)
	}
	cmds := make([]*redis.IntCmd, len(msgs))
	_, _ = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			ch, _ := c.channel(v.ns, m.Topic)
			if c.mode == modeCluster {
				cmds[i] = p.SPublish(ctx, ch, m.Payload)
			} else {
				cmds[i] = p.Publish(ctx, ch, m.Payload)
			}
		}
		return nil
	})
	failed := 0
	var first error
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	c.stats.published.Add(uint64(len(msgs) - failed))
	if failed > 0 {
		c.stats.publishErrors.Add(uint64(failed))
		c.pubLoss.fail(first)
		return failed, fmt.Errorf("storage: publish batch: %d of %d failed: %w", failed, len(msgs), first)
	}
	c.pubLoss.ok()
	return 0, nil
}

func (v redisView) Subscribe(ctx context.Context, topic string, h Handler) (Subscription, error) {
	ch, b := v.c.channel(v.ns, topic)
	s, err := b.subscribe(ctx, ch, topic, h)
	if err != nil {
		return nil, fmt.Errorf("storage: subscribe %q: %w", topic, err)
	}
	return s, nil
}

func (b *bucket) subscribe(ctx context.Context, ch, topic string, h Handler) (Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{topic: topic, h: h}
	b.opMu.Lock()
	b.mu.Lock()
	if b.c.closed() {
		b.mu.Unlock()
		b.opMu.Unlock()
		return nil, ErrClosed
	}
	if b.ps == nil {
		b.ps = b.c.newPubSub()
	}
	t := b.topics[ch]
	first := t == nil
	if first {
		t = &rtopic{topicEntry: topicEntry{name: topic}, channel: ch, ready: make(chan struct{})}
		b.topics[ch] = t
	}
	t.add(s)
	s.unsub = func(s *subscription) { b.unsubscribe(t, s) }
	ps := b.ps
	b.mu.Unlock()

	var werr error
	if first {
		// Not the caller's ctx: go-redis treats a write cut by cancellation as a broken
		// connection and reconnects the PubSub, which would drop messages of every topic of
		// the bucket. The caller's ctx bounds the wait for the confirmation below.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		werr = b.c.subscribeChans(wctx, ps, ch)
		cancel()
	}
	b.mu.Lock()
	if !b.started && !b.c.closed() {
		// Started after the first SUBSCRIBE so that its connection, not a receive on an
		// empty PubSub, picks the node (on a Cluster, the slot's master).
		b.started = true
		b.lastActivity.Store(time.Now().UnixNano())
		b.c.wg.Add(1)
		go b.run()
	}
	wait := werr == nil && b.connected
	down, ready := b.down, t.ready
	b.mu.Unlock()
	b.opMu.Unlock()

	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, err
	}
	if werr != nil {
		b.c.subLoss.fail(werr)
	} else if first {
		b.c.subLoss.ok()
	}
	if !wait {
		return s, nil
	}
	select {
	case <-ready:
	case <-down: // pending: go-redis resubscribes on reconnect
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	case <-b.c.done:
		return nil, ErrClosed
	}
	return s, nil
}

func (b *bucket) unsubscribe(t *rtopic, s *subscription) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	last := t.remove(s) == 0 && b.topics[t.channel] == t
	if last {
		delete(b.topics, t.channel)
		b.unsubPending[t.channel]++
	}
	ps := b.ps
	b.mu.Unlock()
	if !last || b.c.closed() {
		return
	}
	// go-redis forgets the channel before writing, so even a failed write leaves it out of
	// the next reconnect's resubscription.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := b.c.unsubscribeChans(ctx, ps, t.channel); err != nil {
		b.c.log.Debug("redis unsubscribe failed", "err", err)
	}
}

// run receives for one bucket until the storage closes. go-redis's Receive reconnects and
// resubscribes by itself after a connection error (its next call dials again); this loop adds
// backoff while Redis is down, counts and logs failures and recoveries, releases Subscribe
// calls waiting for confirmations, and replaces the PubSub when the watchdog found it dead or
// a Cluster moved a slot away (Redis then sends SUNSUBSCRIBE, which go-redis does not follow).
func (b *bucket) run() {
	defer b.c.wg.Done()
	backoff := minBackoff
	failing := false
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		b.mu.Lock()
		ps := b.ps
		b.mu.Unlock()
		msg, err := ps.Receive(context.Background())
		if b.c.closed() {
			return
		}
		if err != nil {
			b.c.stats.receiveErrors.Add(1)
			if !failing {
				failing = true
				b.c.log.Warn("redis subscription connection lost; resubscribing", "err", err)
			}
			b.mu.Lock()
			if b.connected {
				b.connected = false
				close(b.down)
				b.down = make(chan struct{})
			}
			replace := b.replaceWanted
			b.mu.Unlock()
			if cc, ok := b.c.client.(*redis.ClusterClient); ok {
				// The slot's master may have failed over: go-redis routes the reconnect by
				// its cached slot map, which only a reload updates (lazy and coalesced).
				cc.ReloadState(context.Background())
			}
			if replace {
				b.replace()
				continue
			}
			timer.Reset(backoff)
			select {
			case <-timer.C:
			case <-b.c.done:
				return
			}
			backoff = min(2*backoff, maxBackoff)
			if isRedirect(err) {
				// Our SSUBSCRIBE reached a node that no longer owns the slot: go-redis keeps
				// that connection, so build one routed by a fresh view of the cluster.
				b.replace()
			}
			continue
		}
		b.lastActivity.Store(time.Now().UnixNano())
		if failing {
			failing = false
			backoff = minBackoff
			b.c.stats.resubscribes.Add(1)
			b.c.log.Info("redis subscription connection restored")
			b.mu.Lock()
			clear(b.unsubPending) // confirmations of the old connection will never come
			b.mu.Unlock()
		}
		switch m := msg.(type) {
		case *redis.Message:
			b.mu.Lock()
			b.connected = true
			t := b.topics[m.Channel]
			b.mu.Unlock()
			if t == nil {
				continue // unsubscribed meanwhile
			}
			b.c.stats.received.Add(1)
			if b.c.disp.push(&t.topicEntry, []byte(m.Payload)) {
				b.c.drops.ok()
			} else {
				b.c.stats.dropped.Add(1)
				b.c.drops.fail(ErrOverloaded)
			}
		case *redis.Subscription:
			b.onSubscription(m)
		default: // *redis.Pong: activity is all we wanted
			b.mu.Lock()
			b.connected = true
			b.mu.Unlock()
		}
	}
}

func (b *bucket) onSubscription(m *redis.Subscription) {
	unexpected := false
	b.mu.Lock()
	b.connected = true
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if t := b.topics[m.Channel]; t != nil && !t.isReady {
			t.isReady = true
			close(t.ready)
		}
	case "unsubscribe", "sunsubscribe":
		if n := b.unsubPending[m.Channel]; n > 0 {
			if n == 1 {
				delete(b.unsubPending, m.Channel)
			} else {
				b.unsubPending[m.Channel] = n - 1
			}
		} else if b.topics[m.Channel] != nil {
			unexpected = true
		}
	}
	b.mu.Unlock()
	if unexpected {
		b.c.log.Warn("redis dropped a subscription (slot moved?); resubscribing")
		b.c.stats.receiveErrors.Add(1)
		b.replace()
		b.c.stats.resubscribes.Add(1)
	}
}

// replace swaps in a new PubSub subscribed to every topic of the bucket; run calls it.
func (b *bucket) replace() {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	old := b.ps
	b.replaceWanted = false
	chans := slices.Collect(maps.Keys(b.topics))
	clear(b.unsubPending)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if cc, ok := b.c.client.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
	nps := b.c.newPubSub()
	if len(chans) > 0 {
		if err := b.c.subscribeChans(ctx, nps, chans...); err != nil {
			b.c.log.Debug("redis resubscribe failed; retrying on the next receive", "err", err)
		}
	}
	b.mu.Lock()
	if b.c.closed() {
		b.mu.Unlock()
		_ = nps.Close()
		return
	}
	b.ps = nps
	b.mu.Unlock()
	b.lastActivity.Store(time.Now().UnixNano())
	_ = old.Close()
}

func isRedirect(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") || strings.HasPrefix(msg, "CROSSSLOT")
}

// shutdown runs after done is closed: closing the PubSub ends run's Receive.
func (b *bucket) shutdown() {
	b.mu.Lock()
	ps := b.ps
	b.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// watchdog pings subscription connections that have been silent for HealthCheck and closes
// those silent for three times that, which makes their run goroutine build a new one. It
// catches connections that died without an error (a peer gone without RST, a stuck proxy),
// which go-redis's Receive would wait on for ever.
func (c *redisCore) watchdog() {
	defer c.wg.Done()
	hc := c.opts.HealthCheck
	tick := time.NewTicker(max(hc/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-tick.C:
			for _, b := range c.buckets {
				b.healthCheck(now, hc)
			}
		}
	}
}

func (b *bucket) healthCheck(now time.Time, hc time.Duration) {
	b.mu.Lock()
	ps := b.ps
	active := ps != nil && b.started && b.connected && !b.replaceWanted && len(b.topics) > 0
	b.mu.Unlock()
	if !active {
		return
	}
	idle := now.Sub(time.Unix(0, b.lastActivity.Load()))
	switch {
	case idle >= 3*hc:
		b.mu.Lock()
		if b.ps != ps {
			b.mu.Unlock()
			return
		}
		b.replaceWanted = true
		b.mu.Unlock()
		b.c.log.Warn("redis subscription connection silent; replacing it", "silent_for", idle.Round(time.Millisecond))
		_ = ps.Close()
	case idle >= hc:
		ctx, cancel := context.WithTimeout(context.Background(), hc)
		_ = ps.Ping(ctx) // the pong arrives through run; an error shows up there too
		cancel()
	}
}
