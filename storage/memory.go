package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is the in-process storage of a single node (or of several in-process nodes that
// share it, as tests do). It is the root namespace; Namespace returns isolated views.
type Memory struct {
	memView
}

type memView struct {
	c  *memCore
	ns string
}

type memCore struct {
	opts  Options
	disp  *dispatcher
	stats counters

	mu        sync.Mutex
	closed    bool
	topics    map[string]*topicEntry
	values    map[string]memValue
	sets      map[string]map[string]time.Time // member -> expiry; zero: none
	nextSweep time.Time
}

type memValue struct {
	v       []byte
	expires time.Time // zero: none
}

// memSweepEvery bounds how long expired entries that nobody reads stay in memory.
const memSweepEvery = time.Second

var (
	_ Storage = (*Memory)(nil)
	_ Storage = memView{} // what Namespace returns
)

// NewMemory returns an empty in-memory storage with its delivery goroutine started; Close
// stops it. Invalid options panic (call opts.Validate first to report them).
func NewMemory(opts Options) *Memory {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts = opts.withDefaults()
	c := &memCore{
		opts:   opts,
		topics: make(map[string]*topicEntry),
		values: make(map[string]memValue),
		sets:   make(map[string]map[string]time.Time),
	}
	c.disp = newDispatcher(opts.DeliveryBuffer, &c.stats.received)
	return &Memory{memView{c: c}}
}

// Close drops undelivered messages, stops the delivery goroutine and makes every later call
// fail with ErrClosed. It must not be called from a Handler.
func (m *Memory) Close() error {
	m.c.mu.Lock()
	if m.c.closed {
		m.c.mu.Unlock()
		return nil
	}
	m.c.closed = true
	m.c.topics = nil
	m.c.mu.Unlock()
	m.c.disp.close()
	return nil
}

// Stats returns the counters of this storage and all its namespaces.
func (m *Memory) Stats() Stats {
	s := m.c.stats.snapshot()
	m.c.mu.Lock()
	s.Topics = len(m.c.topics)
	m.c.mu.Unlock()
	return s
}

func (v memView) Namespace(name string) Storage {
	return memView{c: v.c, ns: childNamespace(v.ns, name)}
}

// lock takes the core lock after checking ctx, and sweeps expired entries now and then.
func (v memView) lock(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	v.c.mu.Lock()
	if v.c.closed {
		v.c.mu.Unlock()
		return time.Time{}, ErrClosed
	}
	now := time.Now()
	if !now.Before(v.c.nextSweep) {
		v.c.sweepLocked(now)
		v.c.nextSweep = now.Add(memSweepEvery)
	}
	return now, nil
}

func (c *memCore) sweepLocked(now time.Time) {
	for k, val := range c.values {
		if expired(val.expires, now) {
			delete(c.values, k)
		}
	}
	for k, set := range c.sets {
		for m, exp := range set {
			if expired(exp, now) {
				delete(set, m)
			}
		}
		if len(set) == 0 {
			delete(c.sets, k)
		}
	}
}

func expired(exp, now time.Time) bool { return !exp.IsZero() && !now.Before(exp) }

func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

func (v memView) Publish(ctx context.Context, topic string, payload []byte) error {
	if _, err := v.lock(ctx); err != nil {
		v.c.stats.publishErrors.Add(1)
		return fmt.Errorf("storage: publish %q: %w", topic, err)
	}
	t := v.c.topics[joinKey(v.c.opts.Prefix, v.ns, "p", topic)]
	v.c.mu.Unlock()
	if t != nil && !v.c.disp.push(t, slices.Clone(payload)) {
		v.c.stats.publishErrors.Add(1)
		return fmt.Errorf("storage: publish %q: %w", topic, ErrOverloaded)
	}
	v.c.stats.published.Add(1)
	return nil
}

// PublishBatch implements Batcher.
func (v memView) PublishBatch(ctx context.Context, msgs []Message) (int, error) {
	failed := 0
	var first error
	for _, m := range msgs {
		if err := v.Publish(ctx, m.Topic, m.Payload); err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return failed, first
}

func (v memView) Subscribe(ctx context.Context, topic string, h Handler) (Subscription, error) {
	if _, err := v.lock(ctx); err != nil {
		return nil, fmt.Errorf("storage: subscribe %q: %w", topic, err)
	}
	defer v.c.mu.Unlock()
	ch := joinKey(v.c.opts.Prefix, v.ns, "p", topic)
	t := v.c.topics[ch]
	if t == nil {
		t = &topicEntry{name: topic}
		v.c.topics[ch] = t
	}
	s := &subscription{topic: topic, h: h}
	s.unsub = func(s *subscription) {
		v.c.mu.Lock()
		defer v.c.mu.Unlock()
		if t.remove(s) == 0 && v.c.topics[ch] == t {
			delete(v.c.topics, ch)
		}
	}
	t.add(s)
	return s, nil
}

func (v memView) SetAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	now, err := v.lock(ctx)
	if err != nil {
		return fmt.Errorf("storage: set add: %w", err)
	}
	defer v.c.mu.Unlock()
	v.c.setAddLocked(joinKey(v.c.opts.Prefix, v.ns, "s", key), member, expiry(now, ttl))
	return nil
}

func (c *memCore) setAddLocked(k, member string, exp time.Time) {
	set := c.sets[k]
	if set == nil {
		set = make(map[string]time.Time)
		c.sets[k] = set
	}
	set[member] = exp
}

func (v memView) SetRemove(ctx context.Context, key, member string) error {
	if _, err := v.lock(ctx); err != nil {
		return fmt.Errorf("storage: set remove: %w", err)
	}
	defer v.c.mu.Unlock()
	v.c.setRemoveLocked(joinKey(v.c.opts.Prefix, v.ns, "s", key), member)
	return nil
}

func (c *memCore) setRemoveLocked(k, member string) {
	if set := c.sets[k]; set != nil {
		delete(set, member)
		if len(set) == 0 {
			delete(c.sets, k)
		}
	}
}

func (v memView) SetMembers(ctx context.Context, key string) ([]string, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: set members: %w", err)
	}
	defer v.c.mu.Unlock()
	return v.c.membersLocked(joinKey(v.c.opts.Prefix, v.ns, "s", key), now), nil
}

func (c *memCore) membersLocked(k string, now time.Time) []string {
	var out []string
	for m, exp := range c.sets[k] {
		if !expired(exp, now) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func (v memView) SetEntries(ctx context.Context, key string) ([]SetEntry, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: set entries: %w", err)
	}
	defer v.c.mu.Unlock()
	var out []SetEntry
	for m, exp := range v.c.sets[joinKey(v.c.opts.Prefix, v.ns, "s", key)] {
		if !expired(exp, now) {
			out = append(out, SetEntry{Member: m, Expires: exp})
		}
	}
	slices.SortFunc(out, func(a, b SetEntry) int { return strings.Compare(a.Member, b.Member) })
	return out, nil
}

func (v memView) SetContains(ctx context.Context, key, member string) (bool, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return false, fmt.Errorf("storage: set contains: %w", err)
	}
	defer v.c.mu.Unlock()
	exp, ok := v.c.sets[joinKey(v.c.opts.Prefix, v.ns, "s", key)][member]
	return ok && !expired(exp, now), nil
}

func (v memView) SetRemoveAll(ctx context.Context, key string) error {
	if _, err := v.lock(ctx); err != nil {
		return fmt.Errorf("storage: set remove all: %w", err)
	}
	defer v.c.mu.Unlock()
	delete(v.c.sets, joinKey(v.c.opts.Prefix, v.ns, "s", key))
	return nil
}

func (v memView) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	now, err := v.lock(ctx)
	if err != nil {
		return fmt.Errorf("storage: put: %w", err)
	}
	defer v.c.mu.Unlock()
	v.c.values[joinKey(v.c.opts.Prefix, v.ns, "k", key)] = memValue{slices.Clone(value), expiry(now, ttl)}
	return nil
}

func (v memView) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return false, fmt.Errorf("storage: put if absent: %w", err)
	}
	defer v.c.mu.Unlock()
	k := joinKey(v.c.opts.Prefix, v.ns, "k", key)
	if old, ok := v.c.values[k]; ok && !expired(old.expires, now) {
		return false, nil
	}
	v.c.values[k] = memValue{slices.Clone(value), expiry(now, ttl)}
	return true, nil
}

func (v memView) Get(ctx context.Context, key string) ([]byte, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	defer v.c.mu.Unlock()
	val, ok := v.c.values[joinKey(v.c.opts.Prefix, v.ns, "k", key)]
	if !ok || expired(val.expires, now) {
		return nil, ErrNotFound
	}
	if val.v == nil {
		return []byte{}, nil
	}
	return slices.Clone(val.v), nil
}

func (v memView) Delete(ctx context.Context, key string) error {
	if _, err := v.lock(ctx); err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	defer v.c.mu.Unlock()
	delete(v.c.values, joinKey(v.c.opts.Prefix, v.ns, "k", key))
	return nil
}

func (v memView) Refresh(ctx context.Context, key string, ttl time.Duration) error {
	now, err := v.lock(ctx)
	if err != nil {
		return fmt.Errorf("storage: refresh: %w", err)
	}
	defer v.c.mu.Unlock()
	k := joinKey(v.c.opts.Prefix, v.ns, "k", key)
	val, ok := v.c.values[k]
	if !ok || expired(val.expires, now) {
		return ErrNotFound
	}
	val.expires = expiry(now, ttl)
	v.c.values[k] = val
	return nil
}

func (v memView) Heartbeat(ctx context.Context, nodeID string, ttl time.Duration) error {
	now, err := v.lock(ctx)
	if err != nil {
		return fmt.Errorf("storage: heartbeat: %w", err)
	}
	defer v.c.mu.Unlock()
	v.c.setAddLocked(nodesKey(v.c.opts.Prefix, v.ns), nodeID, expiry(now, ttl))
	return nil
}

func (v memView) LiveNodes(ctx context.Context) ([]string, error) {
	now, err := v.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: live nodes: %w", err)
	}
	defer v.c.mu.Unlock()
	return v.c.membersLocked(nodesKey(v.c.opts.Prefix, v.ns), now), nil
}

func (v memView) RemoveNode(ctx context.Context, nodeID string) error {
	if _, err := v.lock(ctx); err != nil {
		return fmt.Errorf("storage: remove node: %w", err)
	}
	defer v.c.mu.Unlock()
	v.c.setRemoveLocked(nodesKey(v.c.opts.Prefix, v.ns), nodeID)
	return nil
}
