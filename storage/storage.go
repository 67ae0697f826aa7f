package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors. Errors returned by this package wrap them (or the backend's error) with %w.
var (
	// ErrClosed is returned by every operation on a storage after Close.
	ErrClosed = errors.New("storage: closed")
	// ErrNotFound is returned by Get and Refresh for a key that does not exist or has expired.
	ErrNotFound = errors.New("storage: not found")
	// ErrOverloaded is returned by Memory.Publish when the local delivery queue is over
	// Options.DeliveryBuffer, i.e. a handler is not keeping up.
	ErrOverloaded = errors.New("storage: delivery queue full")
)

// Handler receives one message: the topic as given to Subscribe and the payload as published.
// It runs on a goroutine owned by the storage, one message at a time, in publish order per
// topic. It must return quickly and must not modify payload (every local subscriber of the
// topic gets the same slice); it may keep payload. It may call Subscribe and Close.
type Handler func(topic string, payload []byte)

// Subscription is one local subscriber of a topic.
type Subscription interface {
	// Topic is the topic given to Subscribe.
	Topic() string
	// Close stops delivery to this subscriber; a delivery already under way may still complete.
	// The last Close of a topic on this storage unsubscribes it from the backend. Idempotent.
	Close()
}

// PubSub is topic-addressed publish/subscribe across every node that shares the backend.
type PubSub interface {
	// Publish sends payload to every subscriber of topic on every node, this one included.
	// It does not retain payload. It fails when the backend is unreachable (the message is lost
	// and counted in Stats.PublishErrors); it blocks at most one backend round trip, bounded by
	// ctx and the client's timeouts.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe calls h for each message published to topic. Local subscribers of one topic
	// share one backend subscription. It returns once the backend confirmed the subscription,
	// so messages published after it returns are delivered; when the backend is unreachable it
	// returns at once with a pending subscription that becomes active by itself when the backend
	// is back. It fails only when ctx ends first or the storage is closed.
	Subscribe(ctx context.Context, topic string, h Handler) (Subscription, error)
}

// Message is one message of a PublishBatch.
type Message struct {
	Topic   string
	Payload []byte
}

// Batcher is implemented by the storages that can publish several messages in one backend round
// trip (Memory and Redis and their namespaces). It is not part of Storage: a wrapper embedding a
// Storage does not inherit it, so callers fall back to Publish and see the wrapper's behaviour.
type Batcher interface {
	// PublishBatch publishes msgs in order, as Publish would one by one, and returns how many
	// failed (counted as Publish failures) and the first error.
	PublishBatch(ctx context.Context, msgs []Message) (failed int, err error)
}

// Registry holds membership sets whose members expire one by one, plain keys with a TTL, and
// the node liveness list. A ttl <= 0 means "no expiry". Expiry is measured on the backend's
// clock (Redis's for Redis, so nodes with skewed clocks agree).
type Registry interface {
	// SetAdd adds member to the set key, or moves its expiry to now+ttl when present.
	SetAdd(ctx context.Context, key, member string, ttl time.Duration) error
	// SetRemove removes member from the set key; removing an absent member is not an error.
	SetRemove(ctx context.Context, key, member string) error
	// SetMembers returns the live members of key, sorted; an absent set has none.
	SetMembers(ctx context.Context, key string) ([]string, error)
	// SetEntries returns the live members of key with their expiry (zero Time: no expiry), sorted by member.
	SetEntries(ctx context.Context, key string) ([]SetEntry, error)
	// SetContains reports whether member is a live member of key.
	SetContains(ctx context.Context, key, member string) (bool, error)
	// SetRemoveAll deletes the set key.
	SetRemoveAll(ctx context.Context, key string) error

	// Put stores value under key (replacing any value and expiry). It does not retain value.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// PutIfAbsent stores value under key only when the key does not exist (or has expired), in
	// one atomic step across every node; it reports whether it stored it.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Get returns a copy of key's value, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Refresh sets key's expiry to now+ttl (ttl <= 0: no expiry), or returns ErrNotFound.
	Refresh(ctx context.Context, key string, ttl time.Duration) error

	// Heartbeat marks nodeID alive until now+ttl. A node that stops heartbeating leaves
	// LiveNodes at most ttl after its last successful Heartbeat.
	Heartbeat(ctx context.Context, nodeID string, ttl time.Duration) error
	// LiveNodes returns the nodes whose last Heartbeat has not expired, sorted.
	LiveNodes(ctx context.Context) ([]string, error)
	// RemoveNode removes nodeID from the live nodes at once (graceful shutdown).
	RemoveNode(ctx context.Context, nodeID string) error
}

// SetEntry is one live member of a set and its expiry, on the backend's clock (Redis's for
// Redis); the zero Time means the member does not expire.
type SetEntry struct {
	Member  string
	Expires time.Time
}

// Storage is one namespace of a backend: its keys, sets, nodes and topics are invisible to
// every other namespace. The root namespace is the *Memory or *Redis itself.
type Storage interface {
	PubSub
	Registry
	// Namespace returns the child namespace name of this one (for example one per tenant
	// instance). Any string is a valid name, "" included; each is isolated from its parent,
	// its siblings and its own children. It is cheap and does no I/O.
	Namespace(name string) Storage
}

// Options are common to every backend. The zero value is valid.
type Options struct {
	// Prefix starts every Redis key and channel of this deployment, followed by ':'. Nodes of
	// one deployment must use the same prefix; deployments sharing a Redis must not.
	// Default "signalrd". It may not contain '{', '}' (they would pin every key to one Redis
	// Cluster slot) or whitespace.
	Prefix string
	// Logger receives warnings about lost messages and backend outages. Default: discard.
	Logger *slog.Logger
	// DeliveryBuffer bounds, in payload bytes, the messages received but not yet handed to
	// handlers. Over it, Redis drops incoming messages (counted in Stats.Dropped) and
	// Memory.Publish fails with ErrOverloaded. One message larger than the bound is still
	// accepted into an empty queue. Default 64 MiB.
	DeliveryBuffer int
}

// DefaultPrefix is the key and channel prefix when Options.Prefix is empty.
const DefaultPrefix = "signalrd"

const defaultDeliveryBuffer = 64 << 20

// Validate lists every problem of o, or returns nil.
func (o Options) Validate() error {
	var errs []error
	if strings.ContainsAny(o.Prefix, "{} \t\r\n") {
		errs = append(errs, fmt.Errorf("storage: prefix %q may not contain braces or whitespace", o.Prefix))
	}
	if o.DeliveryBuffer < 0 {
		errs = append(errs, fmt.Errorf("storage: delivery buffer %d is negative", o.DeliveryBuffer))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DeliveryBuffer == 0 {
		o.DeliveryBuffer = defaultDeliveryBuffer
	}
	return o
}

// Stats are counters since the storage was created.
type Stats struct {
	// Published counts successful Publish calls.
	Published uint64
	// PublishErrors counts failed Publish calls: each is a message other nodes never got.
	PublishErrors uint64
	// Received counts messages that arrived for a subscribed topic (once per message, however
	// many local subscribers it has).
	Received uint64
	// Dropped counts received messages thrown away because the delivery queue was full.
	Dropped uint64
	// ReceiveErrors counts failures of a subscription connection (disconnects, dead health checks).
	ReceiveErrors uint64
	// Resubscribes counts subscription connections re-established, with their topics, after a failure.
	Resubscribes uint64
	// Topics is the number of topics currently subscribed on this storage.
	Topics int
}

type counters struct {
	published, publishErrors, received, dropped, receiveErrors, resubscribes atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Published:     c.published.Load(),
		PublishErrors: c.publishErrors.Load(),
		Received:      c.received.Load(),
		Dropped:       c.dropped.Load(),
		ReceiveErrors: c.receiveErrors.Load(),
		Resubscribes:  c.resubscribes.Load(),
	}
}

// Key layout (shared by both backends, so a Memory and a Redis agree on isolation):
//
//	<prefix>:<ns>:k:<key>      plain key (Redis string)
//	<prefix>:<ns>:s:<key>      set (Redis sorted set: member -> expiry in ms, +inf for none)
//	<prefix>:<ns>:n            live nodes (a set like the above)
//	<prefix>:<ns>:p:<topic>    pub/sub channel; on a Cluster <prefix>:<ns>:p:{<tag>}:<topic>
//
// <ns> is "" for the root and "/" + escaped name per namespace level ("/a", "/a/b"); escaping
// turns '%', '/', ':', '{' and '}' into %XX, so a namespace path never contains ':' or a
// brace. The first brace of every channel is therefore ours, and no two (namespace, name)
// pairs share a key: the namespace ends at the first ':' after the prefix.

func childNamespace(ns, name string) string {
	var b strings.Builder
	b.Grow(len(ns) + 1 + len(name))
	b.WriteString(ns)
	b.WriteByte('/')
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '%', '/', ':', '{', '}':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func joinKey(prefix, ns, kind, name string) string {
	return prefix + ":" + ns + ":" + kind + ":" + name
}

func nodesKey(prefix, ns string) string { return prefix + ":" + ns + ":n" }

// lossLog logs a failing operation once when it starts failing, then at most every
// lossLogEvery with the number of failures in between, and once when it recovers, so an
// outage is visible without flooding the log.
type lossLog struct {
	log     *slog.Logger
	what    string
	failing atomic.Bool

	mu         sync.Mutex
	last       time.Time
	suppressed uint64
	total      uint64
}

const lossLogEvery = 10 * time.Second

func (l *lossLog) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	now := time.Now()
	if l.failing.Load() && now.Sub(l.last) < lossLogEvery {
		l.suppressed++
		return
	}
	l.log.Warn(l.what+" failed", "err", err, "failures_since_last_log", l.suppressed)
	l.failing.Store(true)
	l.last = now
	l.suppressed = 0
}

func (l *lossLog) ok() {
	if !l.failing.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing.Swap(false) {
		l.log.Info(l.what+" recovered", "failures", l.total)
		l.total, l.suppressed = 0, 0
	}
}

// GoRedisLogger carries go-redis's own log lines (dial failures, reconnects) into slog at
// Debug level; the storage itself logs outages and recoveries once each at Warn and Info.
// go-redis logs through one process-wide logger (to stderr by default), so the program, not
// this package, installs it once: redis.SetLogger(storage.GoRedisLogger{Logger: log}).
type GoRedisLogger struct{ Logger *slog.Logger }

// Printf implements go-redis's logging interface.
func (g GoRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	g.Logger.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
