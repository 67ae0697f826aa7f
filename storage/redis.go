package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure NewRedis. Only URL is required.
type RedisOptions struct {
	Options
	// URL addresses Redis; see parseRedisURL in redisurl.go for every form:
	// redis://[user:pass@]host:port[/db], rediss://... (TLS), host:port, comma-separated
	// addresses for a Cluster (a single address of a Cluster node is detected on connect), and
	// redis-sentinel://[user:pass@]s1:port,s2:port/mastername[/db] for Sentinel. go-redis
	// options may follow '?' (dial_timeout=2s, pool_size=50, ...).
	URL string
	// MasterName, when set, makes URL's hosts Sentinel addresses for this master.
	MasterName string
	// TLS, when set, replaces the TLS configuration a rediss:// URL implies (custom CA, client
	// certificates); it also enables TLS for redis:// URLs.
	TLS *tls.Config
	// PubSubShards is, on a Cluster, the number of channel groups topics are hashed into; each
	// group has its own hash tag, placed so groups spread evenly over the slot range, hence
	// over the shards, and costs a node at most one subscription connection. Every node of a
	// deployment must use the same value. Default 16; at most 1024. Ignored without Cluster.
	PubSubShards int
	// HealthCheck is how long a subscription connection may stay silent before it is pinged;
	// silent for three times this, it is presumed dead and replaced. Default 2s; negative
	// disables the check (go-redis then notices only connection errors).
	HealthCheck time.Duration
}

const (
	defaultPubSubShards = 16
	maxPubSubShards     = 1024
	defaultHealthCheck  = 2 * time.Second
	// opTimeout bounds the (un)subscribe writes that run on no caller's context.
	opTimeout = 2 * time.Second
)

// Validate lists every problem of o, or returns nil.
func (o RedisOptions) Validate() error {
	errs := []error{o.Options.Validate()}
	if strings.TrimSpace(o.URL) == "" {
		errs = append(errs, errors.New("storage: redis URL is empty"))
	} else if _, err := parseRedisURL(o.URL, o.MasterName); err != nil {
		errs = append(errs, fmt.Errorf("storage: redis URL %s: %w", redactURL(o.URL), err))
	}
	if o.PubSubShards < 0 || o.PubSubShards > maxPubSubShards {
		errs = append(errs, fmt.Errorf("storage: pubsub shards %d not in 1..%d", o.PubSubShards, maxPubSubShards))
	}
	return errors.Join(errs...)
}

// Redis is the storage shared by every node of a deployment through Redis (standalone,
// Sentinel or Cluster, through a go-redis UniversalClient). It is the root namespace;
// Namespace returns isolated views.
type Redis struct {
	redisView
}

type redisView struct {
	c  *redisCore
	ns string
}

type redisCore struct {
	opts    RedisOptions
	log     *slog.Logger
	client  redis.UniversalClient
	mode    redisMode
	stats   counters
	disp    *dispatcher
	buckets []*bucket
	tags    []string // Cluster: hash tag per bucket
	pubLoss lossLog
	subLoss lossLog
	drops   lossLog

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var (
	_ Storage = (*Redis)(nil)
	_ Storage = redisView{} // what Namespace returns
)

// NewRedis connects to Redis and checks it answers (bounded by ctx). A single address that
// turns out to be a Cluster node is used as a Cluster seed. Close releases everything.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.Options = opts.Options.withDefaults()
	if opts.PubSubShards == 0 {
		opts.PubSubShards = defaultPubSubShards
	}
	if opts.HealthCheck == 0 {
		opts.HealthCheck = defaultHealthCheck
	}
	target, _ := parseRedisURL(opts.URL, opts.MasterName) // validated above
	client, mode, err := connect(ctx, target, opts)
	if err != nil {
		return nil, fmt.Errorf("storage: connect to redis %s: %w", redactURL(opts.URL), err)
	}
	log := opts.Logger.With("component", "storage", "redis_mode", mode.String())
	c := &redisCore{
		opts:    opts,
		log:     log,
		client:  client,
		mode:    mode,
		pubLoss: lossLog{log: log, what: "redis publish"},
		subLoss: lossLog{log: log, what: "redis subscribe (pending subscriptions activate when redis is back)"},
		drops:   lossLog{log: log, what: "local delivery (queue full, messages dropped)"},
		done:    make(chan struct{}),
	}
	c.disp = newDispatcher(opts.DeliveryBuffer, nil)
	n := 1
	if mode == modeCluster {
		n = opts.PubSubShards
		c.tags = shardTags(n)
	}
	for range n {
		c.buckets = append(c.buckets, newBucket(c))
	}
	if opts.HealthCheck > 0 {
		c.wg.Add(1)
		go c.watchdog()
	}
	log.Info("redis storage connected", "url", redactURL(opts.URL), "prefix", opts.Prefix)
	return &Redis{redisView{c: c}}, nil
}

// defaultDialerRetries replaces go-redis's 5 dial attempts 100 ms apart: while Redis is down
// every command would wait that long before failing, and the caller (or the receive loop)
// retries anyway. A URL's dialer_retries= wins.
const defaultDialerRetries = 1

func connect(ctx context.Context, t *redisTarget, opts RedisOptions) (redis.UniversalClient, redisMode, error) {
	var client redis.UniversalClient
	switch t.mode {
	case modeSingle:
		o := t.single
		o.ContextTimeoutEnabled = true
		if o.DialerRetries == 0 {
			o.DialerRetries = defaultDialerRetries
		}
		if opts.TLS != nil {
			o.TLSConfig = opts.TLS
		}
		client = redis.NewClient(o)
	case modeCluster:
		client = newClusterClient(t.cluster, opts)
	case modeSentinel:
		o := t.failover
		o.ContextTimeoutEnabled = true
		if o.DialerRetries == 0 {
			o.DialerRetries = defaultDialerRetries
		}
		if opts.TLS != nil {
			o.TLSConfig = opts.TLS
		}
		client = redis.NewFailoverClient(o)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, 0, err
	}
	if t.mode != modeSingle || t.asCluster == nil {
		return client, t.mode, nil
	}
	info, err := client.Info(ctx, "cluster").Result()
	if err != nil {
		_ = client.Close()
		return nil, 0, fmt.Errorf("info cluster: %w", err)
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return client, modeSingle, nil
	}
	_ = client.Close()
	co, err := t.asCluster()
	if err != nil {
		return nil, 0, err
	}
	client = newClusterClient(co, opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, 0, err
	}
	return client, modeCluster, nil
}

func newClusterClient(o *redis.ClusterOptions, opts RedisOptions) *redis.ClusterClient {
	o.ContextTimeoutEnabled = true
	if o.DialerRetries == 0 {
		o.DialerRetries = defaultDialerRetries
	}
	if opts.TLS != nil {
		o.TLSConfig = opts.TLS
	}
	return redis.NewClusterClient(o)
}

// Close unsubscribes everything, stops every goroutine of the storage and closes the client.
// Later calls fail with ErrClosed. It must not be called from a Handler.
func (r *Redis) Close() error {
	c := r.c
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		for _, b := range c.buckets {
			b.shutdown()
		}
		c.wg.Wait()
		c.disp.close()
		err = c.client.Close()
	})
	return err
}

// Stats returns the counters of this storage and all its namespaces.
func (r *Redis) Stats() Stats {
	s := r.c.stats.snapshot()
	for _, b := range r.c.buckets {
		b.mu.Lock()
		s.Topics += len(b.topics)
		b.mu.Unlock()
	}
	return s
}

// Ping checks Redis answers (for health endpoints); it does not touch the subscriptions.
func (r *Redis) Ping(ctx context.Context) error {
	if r.c.closed() {
		return ErrClosed
	}
	if err := r.c.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("storage: ping redis: %w", err)
	}
	return nil
}

// Client is the underlying go-redis client (for metrics hooks and diagnostics); the storage
// owns it: do not close it.
func (r *Redis) Client() redis.UniversalClient { return r.c.client }

func (c *redisCore) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (v redisView) Namespace(name string) Storage {
	return redisView{c: v.c, ns: childNamespace(v.ns, name)}
}

func (v redisView) key(kind, name string) string { return joinKey(v.c.opts.Prefix, v.ns, kind, name) }

func ttlMillis(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return max(ttl.Milliseconds(), 1)
}

// The set scripts keep member -> expiry (ms, Redis's clock) in a sorted set; "+inf" means no
// expiry. The key itself expires with its last member so abandoned sets vanish.
var (
	scriptSetAdd = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZADD', KEYS[1], '+inf', ARGV[1])
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now))
end
return 1`)
	scriptSetMembers = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGE', KEYS[1], string.format('(%d', now), '+inf', 'BYSCORE')`)
	// scriptSetEntries is scriptSetMembers with scores: member, score, member, score, ...
	scriptSetEntries = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGE', KEYS[1], string.format('(%d', now), '+inf', 'BYSCORE', 'WITHSCORES')`)
	scriptSetContains = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
if s == 'inf' then return 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(s) > now then return 1 end
return 0`)
	scriptPersist = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1`)
)

func (v redisView) check() error {
	if v.c.closed() {
		return ErrClosed
	}
	return nil
}

func (v redisView) setAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := v.check(); err != nil {
		return err
	}
	return scriptSetAdd.Run(ctx, v.c.client, []string{key}, member, ttlMillis(ttl)).Err()
}

func (v redisView) members(ctx context.Context, key string) ([]string, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	m, err := scriptSetMembers.Run(ctx, v.c.client, []string{key}).StringSlice()
	if err != nil {
		return nil, err
	}
	slices.Sort(m)
	return m, nil
}

func (v redisView) SetAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := v.setAdd(ctx, v.key("s", key), member, ttl); err != nil {
		return fmt.Errorf("storage: set add: %w", err)
	}
	return nil
}

func (v redisView) SetRemove(ctx context.Context, key, member string) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: set remove: %w", err)
	}
	if err := v.c.client.ZRem(ctx, v.key("s", key), member).Err(); err != nil {
		return fmt.Errorf("storage: set remove: %w", err)
	}
	return nil
}

func (v redisView) SetMembers(ctx context.Context, key string) ([]string, error) {
	m, err := v.members(ctx, v.key("s", key))
	if err != nil {
		return nil, fmt.Errorf("storage: set members: %w", err)
	}
	return m, nil
}

func (v redisView) SetEntries(ctx context.Context, key string) ([]SetEntry, error) {
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("storage: set entries: %w", err)
	}
	flat, err := scriptSetEntries.Run(ctx, v.c.client, []string{v.key("s", key)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("storage: set entries: %w", err)
	}
	if len(flat)%2 != 0 {
		return nil, fmt.Errorf("storage: set entries: odd reply length %d", len(flat))
	}
	out := make([]SetEntry, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		// The score is the expiry in ms on Redis's clock, "inf" for none; Redis may format
		// it with an exponent, so parse it as the double it is.
		score, err := strconv.ParseFloat(flat[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("storage: set entries: member %q score %q: %w", flat[i], flat[i+1], err)
		}
		e := SetEntry{Member: flat[i]}
		if !math.IsInf(score, 1) {
			e.Expires = time.UnixMilli(int64(score))
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b SetEntry) int { return strings.Compare(a.Member, b.Member) })
	return out, nil
}

func (v redisView) SetContains(ctx context.Context, key, member string) (bool, error) {
	if err := v.check(); err != nil {
		return false, fmt.Errorf("storage: set contains: %w", err)
	}
	n, err := scriptSetContains.Run(ctx, v.c.client, []string{v.key("s", key)}, member).Int()
	if err != nil {
		return false, fmt.Errorf("storage: set contains: %w", err)
	}
	return n == 1, nil
}

func (v redisView) SetRemoveAll(ctx context.Context, key string) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: set remove all: %w", err)
	}
	if err := v.c.client.Del(ctx, v.key("s", key)).Err(); err != nil {
		return fmt.Errorf("storage: set remove all: %w", err)
	}
	return nil
}

func (v redisView) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: put: %w", err)
	}
	if value == nil {
		value = []byte{}
	}
	if err := v.c.client.Set(ctx, v.key("k", key), value, time.Duration(ttlMillis(ttl))*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("storage: put: %w", err)
	}
	return nil
}

func (v redisView) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := v.check(); err != nil {
		return false, fmt.Errorf("storage: put if absent: %w", err)
	}
	if value == nil {
		value = []byte{}
	}
	ok, err := v.c.client.SetNX(ctx, v.key("k", key), value, time.Duration(ttlMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("storage: put if absent: %w", err)
	}
	return ok, nil
}

func (v redisView) Get(ctx context.Context, key string) ([]byte, error) {
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	b, err := v.c.client.Get(ctx, v.key("k", key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	return b, nil
}

func (v redisView) Delete(ctx context.Context, key string) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	if err := v.c.client.Del(ctx, v.key("k", key)).Err(); err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	return nil
}

func (v redisView) Refresh(ctx context.Context, key string, ttl time.Duration) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: refresh: %w", err)
	}
	k := v.key("k", key)
	var ok bool
	var err error
	if ms := ttlMillis(ttl); ms > 0 {
		ok, err = v.c.client.PExpire(ctx, k, time.Duration(ms)*time.Millisecond).Result()
	} else {
		var n int
		n, err = scriptPersist.Run(ctx, v.c.client, []string{k}).Int()
		ok = n == 1
	}
	if err != nil {
		return fmt.Errorf("storage: refresh: %w", err)
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

func (v redisView) Heartbeat(ctx context.Context, nodeID string, ttl time.Duration) error {
	if err := v.setAdd(ctx, nodesKey(v.c.opts.Prefix, v.ns), nodeID, ttl); err != nil {
		return fmt.Errorf("storage: heartbeat: %w", err)
	}
	return nil
}

func (v redisView) LiveNodes(ctx context.Context) ([]string, error) {
	m, err := v.members(ctx, nodesKey(v.c.opts.Prefix, v.ns))
	if err != nil {
		return nil, fmt.Errorf("storage: live nodes: %w", err)
	}
	return m, nil
}

func (v redisView) RemoveNode(ctx context.Context, nodeID string) error {
	if err := v.check(); err != nil {
		return fmt.Errorf("storage: remove node: %w", err)
	}
	if err := v.c.client.ZRem(ctx, nodesKey(v.c.opts.Prefix, v.ns), nodeID).Err(); err != nil {
		return fmt.Errorf("storage: remove node: %w", err)
	}
	return nil
}

// shardTags returns one hash tag per bucket, the i-th hashing into the i-th of n equal slot
// ranges, so buckets spread over the shards of any contiguous slot assignment.
func shardTags(n int) []string {
	tags := make([]string, n)
	for i := range n {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		for j := 0; ; j++ {
			tag := strconv.Itoa(i) + "." + strconv.Itoa(j)
			if s := int(keySlot(tag)); s >= lo && s < hi {
				tags[i] = tag
				break
			}
		}
	}
	return tags
}
