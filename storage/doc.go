// Package storage is what the nodes of one deployment share: topic-addressed pub/sub, sets whose
// members expire one by one, keys with a TTL and the list of live nodes, all namespaced by a
// deployment prefix and, below it, by instance (Namespace). It knows nothing about SignalR.
//
// Two backends implement Storage: Memory (one process; NewMemory) and Redis (standalone,
// Sentinel or Cluster through go-redis v9's UniversalClient; NewRedis). The conformance tests
// run one body against both.
//
// # Pub/sub
//
// Publish sends a payload once to the backend, whatever the number of subscribers; every node
// subscribed to the topic (the publisher included) receives it once, and hands it to each of
// its local subscribers. Local subscribers of a topic are reference-counted: the first
// Subscribe subscribes the backend, the last Close unsubscribes it, so a node pays for a topic
// only while it has a local member. Delivery is at most once: Redis pub/sub keeps nothing for
// a disconnected subscriber, so what is published while a node's subscription connection is
// down is lost for that node (a failed Publish is counted in Stats.PublishErrors and logged).
//
// On a Redis Cluster, topics use sharded pub/sub (SSUBSCRIBE/SPUBLISH): a message goes to
// the one shard owning its channel's slot instead of being broadcast over the cluster bus, so
// throughput grows with shards. Topics are hashed into RedisOptions.PubSubShards groups whose
// hash tags spread over the slot range; each group is one subscription connection (see
// redis_pubsub.go for why go-redis needs that). Standalone and Sentinel use plain
// SUBSCRIBE/PUBLISH on one connection.
//
// # Faults (Redis)
//
// Publish fails fast while Redis is unreachable (bounded by ctx and go-redis's dial, read and
// retry settings); nothing queues up. Subscriptions survive outages and restarts by
// themselves: go-redis's PubSub re-dials and resubscribes every channel on its next receive
// after a connection error; the receive loop adds backoff (50 ms doubling to 1 s), counts
// (Stats.ReceiveErrors, Stats.Resubscribes) and logs the outage once and the recovery once.
// A connection that dies silently is caught by the health check (RedisOptions.HealthCheck):
// pinged after HealthCheck of silence, replaced after three times that. A Subscribe while
// Redis is down returns a pending subscription that activates when Redis is back.
//
// Node liveness: Heartbeat(node, ttl) every ttl/3 or so; a node that stops is gone from
// LiveNodes at most ttl after its last Heartbeat (Redis's clock). Set members with a TTL
// expire the same way, so a dead node's entries leave every set within their TTL.
//
// Requirements: Redis 6.2 or later (ZRANGE ... BYSCORE in the set scripts); 7.0 or later for a
// Cluster (sharded pub/sub). Key and channel names are listed in storage.go.
//
// # Goroutines, safety, blocking
//
// Every method of Memory, Redis and their namespaces is safe for concurrent use. Each storage
// owns one delivery goroutine that calls handlers (in order per topic, one at a time, never
// holding a lock); a Redis storage also owns one receive goroutine per subscribed connection
// and one health-check goroutine. Close stops them all and waits for them; it must not be
// called from a Handler. Registry calls and Publish block for one backend round trip (Memory:
// none). Subscribe blocks until the backend confirms (bounded by ctx; at once while Redis is
// down) and never lets the caller's cancellation cut the shared subscription connection.
// Subscription.Close blocks for at most one UNSUBSCRIBE write (2 s bound). No lock is held while a handler runs or, except a
// bucket's opMu around its (un)subscribe writes, across I/O.
package storage
