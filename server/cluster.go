package server

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/storage"
)

// cluster joins one instance of this node to the same instance on every other node sharing
// its storage (scale-out, docs/architecture.md "Scale-out"). It is nil when the node runs alone.
//
// Everything travels on the storage's pub/sub as msgpack envelopes (cluster_envelope.go):
// fan-out on hub, user and group topics that a node subscribes to only while it has a local
// member, and node-addressed messages on n/{node} (membership commands, queries, the relay
// between a client's node and its app server's node, client results). The registry holds what
// must outlive a message: connection ownership, the app servers of each hub, user-group
// memberships with their TTL, node liveness and addresses.
type cluster struct {
	in        *instance
	node      string
	store     storage.Storage // the instance's namespace
	log       *slog.Logger
	heartbeat time.Duration
	advertise atomic.Value // string: how peers reach this node (set by Serve)

	pub      *publisher
	interest *interest
	nodeSub  storage.Subscription // n/{node}; closed when the node leaves

	rpcMu   sync.Mutex
	rpcSeq  uint64
	pending map[uint64]pendingAsk

	liveMu   sync.RWMutex
	live     map[string]bool
	missing  map[string]int
	lapsed   time.Time // the last successful heartbeat before they started failing (zero: they succeed)
	lastBeat time.Time // the last successful heartbeat

	ownerMu sync.Mutex
	owners  map[string]ownerEntry // connection owners remembered for sends (ownerForSend)
	gone    map[string]time.Time  // nodes found dead or that said they left, and when
	beats   int                   // consecutive successful heartbeats

	relayMu sync.Mutex
	relays  map[string]*relayed // app side: clients of other nodes bound to local links, by id

	remoteInvMu sync.Mutex
	remoteInv   map[string]remoteInvocation // client side: invocations whose caller is elsewhere

	stats clusterStats
	rr    atomic.Uint64 // round robin over remote app servers
}

// clusterStats count backplane traffic for metrics.
type clusterStats struct {
	published, lost, received, bad, forwarded atomic.Uint64
}

// Backplane names. Hub ids never contain '/', so topic and key names cannot collide.
func topicAll(hub string) string          { return "a/" + hub }
func topicUser(hub, user string) string   { return "u/" + hub + "/" + user }
func topicGroup(hub, group string) string { return "g/" + hub + "/" + group }
func topicNode(node string) string        { return "n/" + node }

func keyConn(id string) string              { return "c/" + id }
func keyNodeConns(node string) string       { return "nc/" + node }
func keyAddr(node string) string            { return "addr/" + node }
func keyServers(hub string) string          { return "s/" + hub }
func keyUserGroups(hub, user string) string { return "ug/" + hub + "/" + user }
func keyInvocation(connID, invID string) string {
	return "inv/" + connID + "/" + invID
}

const (
	// rpcTimeout bounds a node-addressed request waiting for its answer.
	rpcTimeout = 5 * time.Second
	// storeTimeout bounds one registry operation.
	storeTimeout = 5 * time.Second
	// publishQueue bounds the envelopes waiting for the backplane, per publisher shard.
	publishQueue  = 2048
	publishShards = 16
)

var errNodeGone = errors.New("server: node did not answer")

func newCluster(in *instance, store storage.Storage, node string, heartbeat time.Duration) *cluster {
	cl := &cluster{
		in:        in,
		node:      node,
		store:     store,
		log:       in.log.With("component", "cluster", "node", node),
		heartbeat: heartbeat,
		pending:   map[uint64]pendingAsk{},
		relays:    map[string]*relayed{},
		owners:    map[string]ownerEntry{},
		remoteInv: map[string]remoteInvocation{},
		live:      map[string]bool{node: true},
		missing:   map[string]int{},
		gone:      map[string]time.Time{},
	}
	cl.pub = newPublisher(store, cl.log, &cl.stats)
	cl.interest = newInterest(cl)
	cl.advertise.Store("")
	return cl
}

// start subscribes to this node's topic and starts the publisher, the interest workers and the
// liveness loop; they stop with ctx.
func (cl *cluster) start(ctx context.Context, goFn func(func())) error {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	sub, err := cl.store.Subscribe(sctx, topicNode(cl.node), cl.onMessage)
	if err != nil {
		return fmt.Errorf("cluster: subscribe to the node topic: %w", err)
	}
	cl.nodeSub = sub
	// Before the node serves anything: remove what an earlier life of this node id left in the
	// registry (done later, it would also remove the connections this life claimed meanwhile,
	// and the address the first beat just stored), renew its liveness entry and address, and
	// read the live peers. Until its first heartbeat tick the node would otherwise take itself
	// for alone: no app server of another node to route clients to (in Auto mode they silently
	// became serverless clients), no peer to ask, no address for peers to forward requests to.
	// An earlier life of this node id that still counted as live, or left connections behind
	// (a restart before its peers declared it dead): they are told now, before this life relays
	// any client, and drop what they relayed or awaited for it (as for a death, with the
	// `offline` ping). Each step has its own bound: a big earlier life takes a while to forget.
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, storeTimeout) }
	lctx, lcancel := step()
	nodes, _ := cl.store.LiveNodes(lctx)
	lcancel()
	restarted := slices.Contains(nodes, cl.node)
	if cl.forgetNode(ctx, cl.node) > 0 {
		restarted = true
	}
	bctx, bcancel := step()
	cl.beat(bctx)
	bcancel()
	pctx, pcancel := step()
	cl.checkPeers(pctx)
	pcancel()
	if restarted {
		cl.tellPeers(ctx, cl.liveNodes(), envNodeRestarted, func(peer string, err error) {
			cl.log.Warn("telling a peer this node restarted failed", "peer", peer, "err", err)
		})
	}
	cl.pub.start(ctx, goFn)
	cl.interest.start(ctx, goFn)
	goFn(func() { cl.runLiveness(ctx) })
	return nil
}

// tellPeers publishes a notice about this node (restarted, left) on each peer's topic, directly:
// the publisher is not running yet at start and has stopped at leave. failed, when set, hears
// of each publish that failed.
func (cl *cluster) tellPeers(ctx context.Context, peers []string, kind envKind, failed func(peer string, err error)) {
	b, err := encodeEnvelope(&envelope{Origin: cl.node, Kind: kind})
	if err != nil {
		return
	}
	for _, n := range peers {
		if n == cl.node {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := cl.store.Publish(pctx, topicNode(n), b)
		cancel()
		if err != nil && failed != nil {
			failed(n, err)
		}
	}
}

// publish queues an envelope for the backplane without waiting; when the queue is full it is
// lost (counted and logged) rather than stalling local delivery.
func (cl *cluster) publish(topic string, e *envelope) {
	e.Origin = cl.node
	b, err := encodeEnvelope(e)
	if err != nil {
		cl.log.Error("backplane envelope", "err", err)
		return
	}
	cl.pub.send(topic, b)
}

// publishWait queues an envelope, waiting while the queue is full (client data relayed to an
// app server: backpressure rather than loss).
func (cl *cluster) publishWait(ctx context.Context, topic string, e *envelope) error {
	e.Origin = cl.node
	b, err := encodeEnvelope(e)
	if err != nil {
		return err
	}
	return cl.pub.sendWait(ctx, topic, b)
}

// ask sends a request to one node and waits for its answer.
func (cl *cluster) ask(ctx context.Context, node string, e *envelope) (*envelope, error) {
	if node == cl.node {
		return cl.answer(ctx, e), nil
	}
	ch := make(chan *envelope, 1)
	cl.rpcMu.Lock()
	cl.rpcSeq++
	id := cl.rpcSeq
	cl.pending[id] = pendingAsk{ch, node}
	cl.rpcMu.Unlock()
	defer func() {
		cl.rpcMu.Lock()
		delete(cl.pending, id)
		cl.rpcMu.Unlock()
	}()
	// Registered first: a node found gone from now on abandons this request (forgetPeer).
	if cl.isGone(node) {
		return nil, fmt.Errorf("%w: %s: %w", errNodeGone, node, errNodeLeft)
	}
	e.ID = id
	if err := cl.publishWait(ctx, topicNode(node), e); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	select {
	case r := <-ch:
		if r == nil {
			return nil, fmt.Errorf("%w: %s: %w", errNodeGone, node, errNodeLeft)
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", errNodeGone, node, ctx.Err())
	}
}

// pendingAsk is a request waiting for a node's answer.
type pendingAsk struct {
	ch   chan *envelope // buffered 1; nil is sent when the node is gone
	node string
}

// errNodeLeft ends the requests to a node found dead or gone while they waited.
var errNodeLeft = errors.New("the node left the cluster")

// forgetPeer takes a node that left or died out of the live nodes and ends the requests
// waiting for its answer, which would otherwise each wait rpcTimeout. It does not block.
func (cl *cluster) forgetPeer(node string) {
	cl.liveMu.Lock()
	delete(cl.live, node)
	delete(cl.missing, node)
	cl.gone[node] = time.Now()
	cl.liveMu.Unlock()
	cl.rpcMu.Lock()
	defer cl.rpcMu.Unlock()
	for _, p := range cl.pending {
		if p.node == node {
			select {
			case p.ch <- nil:
			default:
			}
		}
	}
}

func (cl *cluster) isGone(node string) bool {
	cl.liveMu.RLock()
	defer cl.liveMu.RUnlock()
	_, gone := cl.gone[node]
	return gone
}

// askAll sends a request to every live node, this one included, and returns the answers that
// arrived in time; a node that does not answer is logged and left out.
func (cl *cluster) askAll(ctx context.Context, e *envelope) []*envelope {
	nodes := cl.liveNodesNow(ctx)
	out := make([]*envelope, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		req := *e
		wg.Go(func() {
			r, err := cl.ask(ctx, n, &req)
			if err != nil {
				if !errors.Is(err, errNodeLeft) {
					cl.log.Warn("node did not answer", "peer", n, "kind", e.Kind, "err", err)
				}
				return
			}
			out[i] = r
		})
	}
	wg.Wait()
	res := out[:0]
	for _, r := range out {
		if r != nil {
			res = append(res, r)
		}
	}
	return res
}

// anyOK asks every node and reports whether one answered OK.
func (cl *cluster) anyOK(ctx context.Context, e *envelope) bool {
	for _, r := range cl.askAll(ctx, e) {
		if r.OK {
			return true
		}
	}
	return false
}

// reply answers a request from another node.
func (cl *cluster) reply(req *envelope, r *envelope) {
	r.Kind, r.ID = envRPCReply, req.ID
	cl.publish(topicNode(req.Origin), r)
}

// onMessage handles every envelope this node receives. It runs on the storage's delivery
// goroutine: whatever may wait (requests) moves to a goroutine; deliveries and relay traffic
// stay inline, which keeps them in order.
func (cl *cluster) onMessage(topic string, b []byte) {
	cl.stats.received.Add(1)
	e, err := decodeEnvelope(b)
	if err != nil {
		cl.stats.bad.Add(1)
		cl.log.Warn("dropped a backplane message", "err", err)
		return
	}
	switch e.Kind {
	case envSendAll, envSendUser, envSendGroup, envCloseAll, envCloseUser, envCloseGroup:
		if e.Origin != cl.node {
			cl.deliver(topic, e)
		}
	case envSendConns:
		cl.deliver(topic, e)
	case envRPCReply:
		cl.rpcMu.Lock()
		p, ok := cl.pending[e.ID]
		cl.rpcMu.Unlock()
		if ok {
			select {
			case p.ch <- e:
			default: // abandoned already (forgetPeer)
			}
		}
	case envNodeRestarted:
		// Inline, not on a goroutine: the restarted node's first relayed clients come after this
		// notice on the same topic and must not be dropped with its earlier life's.
		if e.Origin != cl.node {
			cl.log.Info("node restarted: dropping what it held before", "peer", e.Origin)
			cl.dropNode(e.Origin)
		}
	case envNodeLeft:
		if e.Origin != cl.node {
			cl.forgetPeer(e.Origin) // at once: requests in flight to it end now
			cl.spawn(func() { cl.nodeLeft(e.Origin) })
		}
	case envCloseConn, envJoin, envLeave, envUserJoin, envUserLeave, envQuery, envExecute, envJoinUserConns:
		cl.spawn(func() {
			ctx, cancel := context.WithTimeout(cl.in.srv.ctx, rpcTimeout)
			defer cancel()
			cl.reply(e, cl.answer(ctx, e))
		})
	default:
		cl.onRelay(e)
	}
}

// liveNodes is the last known set of live nodes, sorted, this one included.
func (cl *cluster) liveNodes() []string {
	cl.liveMu.RLock()
	defer cl.liveMu.RUnlock()
	return sortedKeys(cl.live)
}

func (cl *cluster) isLive(node string) bool {
	cl.liveMu.RLock()
	defer cl.liveMu.RUnlock()
	return cl.live[node]
}

// isLiveNow is isLive, re-reading the live nodes when node is unknown: a node that joined since
// the last heartbeat reading already owns connections.
func (cl *cluster) isLiveNow(ctx context.Context, node string) bool {
	if cl.isLive(node) {
		return true
	}
	read := time.Now()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	nodes, err := cl.store.LiveNodes(ctx)
	cancel()
	if err != nil || !slices.Contains(nodes, node) {
		return false
	}
	cl.liveMu.Lock()
	defer cl.liveMu.Unlock()
	return cl.adoptLocked(node, read)
}

// adoptLocked marks a node live on the strength of a registry reading started at read, unless
// this node learned since then that the node left or died: a reading taken before that (a
// concurrent one) is stale and would bring the node back, to be found dead again later.
func (cl *cluster) adoptLocked(node string, read time.Time) bool {
	if g, ok := cl.gone[node]; ok {
		if !read.After(g) {
			return false
		}
		delete(cl.gone, node) // it came back (a restart with the same id)
	}
	cl.live[node] = true
	return true
}

// liveNodesNow is liveNodes plus the nodes that joined since the last heartbeat reading: a
// question to every node must not miss the connections of a node that just started.
func (cl *cluster) liveNodesNow(ctx context.Context) []string {
	read := time.Now()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	nodes, err := cl.store.LiveNodes(ctx)
	cancel()
	if err == nil {
		cl.liveMu.Lock()
		for _, n := range nodes {
			cl.adoptLocked(n, read)
		}
		cl.liveMu.Unlock()
	}
	return cl.liveNodes()
}

// storeCtx bounds a registry operation.
func (cl *cluster) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(cl.in.srv.ctx, storeTimeout)
}

// spawn is Server.spawn: backplane handlers run on the storage's delivery goroutine.
func (cl *cluster) spawn(f func()) { cl.in.srv.spawn(f) }

// background runs a registry write that nobody waits for; failures are logged.
func (cl *cluster) background(what string, fn func(ctx context.Context) error) {
	cl.spawn(func() {
		ctx, cancel := cl.storeCtx()
		defer cancel()
		// A write cut short by the node stopping is no failure worth a warning: leave() removes
		// what the node recorded (app servers, connections) anyway.
		if err := fn(ctx); err != nil && cl.in.srv.ctx.Err() == nil {
			cl.log.Warn("cluster registry write failed", "op", what, "err", err)
		}
	})
}

// publisher sends envelopes in order per topic: topics are hashed onto a few queues, each
// drained by one goroutine, so a slow or unreachable backend never blocks the caller.
type publisher struct {
	ps     storage.PubSub
	log    *slog.Logger
	stats  *clusterStats
	queues []chan pubItem
	loss   *lossLogger
}

type pubItem struct {
	topic string
	data  []byte
}

func newPublisher(ps storage.PubSub, log *slog.Logger, st *clusterStats) *publisher {
	p := &publisher{ps: ps, log: log, stats: st, loss: &lossLogger{log: log}}
	for range publishShards {
		p.queues = append(p.queues, make(chan pubItem, publishQueue))
	}
	return p
}

func (p *publisher) queue(topic string) chan pubItem {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	return p.queues[h.Sum32()%uint32(len(p.queues))]
}

func (p *publisher) start(ctx context.Context, goFn func(func())) {
	for _, q := range p.queues {
		goFn(func() {
			var batch []storage.Message // this queue's, reused
			for {
				select {
				case <-ctx.Done():
					p.stats.lost.Add(uint64(len(q))) // queued when the node stopped: never sent
					return
				case it := <-q:
					batch = p.flush(ctx, q, it, batch)
				}
			}
		})
	}
}

// publishBatchMax bounds the envelopes one backend round trip carries.
const publishBatchMax = 128

// flush publishes first and whatever else is queued behind it: in one round trip when the
// storage batches (one pipeline on Redis), else one by one. Under load a queue thereby drains
// at many envelopes per round trip instead of one, in the same order.
func (p *publisher) flush(ctx context.Context, q chan pubItem, first pubItem, buf []storage.Message) []storage.Message {
	pctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	b, ok := p.ps.(storage.Batcher)
	if !ok {
		p.done(ctx, 1, p.ps.Publish(pctx, first.topic, first.data))
		return buf
	}
	msgs := append(buf[:0], storage.Message{Topic: first.topic, Payload: first.data})
drain:
	for len(msgs) < publishBatchMax {
		select {
		case it := <-q:
			msgs = append(msgs, storage.Message{Topic: it.topic, Payload: it.data})
		default:
			break drain
		}
	}
	failed, err := b.PublishBatch(pctx, msgs)
	p.stats.published.Add(uint64(len(msgs) - failed))
	p.done(ctx, failed, err)
	clear(msgs) // drop the payloads
	return msgs[:0]
}

// done counts failed publishes as lost and logs an outage's start and end.
func (p *publisher) done(ctx context.Context, failed int, err error) {
	if err != nil {
		p.stats.lost.Add(uint64(max(failed, 1)))
		if ctx.Err() == nil { // not the node stopping: an outage
			p.loss.fail(err)
		}
		return
	}
	if _, batched := p.ps.(storage.Batcher); !batched {
		p.stats.published.Add(1)
	}
	p.loss.ok()
}

func (p *publisher) send(topic string, data []byte) {
	select {
	case p.queue(topic) <- pubItem{topic, data}:
	default:
		p.stats.lost.Add(1)
		p.loss.fail(errors.New("publish queue full"))
	}
}

func (p *publisher) sendWait(ctx context.Context, topic string, data []byte) error {
	select {
	case p.queue(topic) <- pubItem{topic, data}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lossLogger logs the first failure of an outage, then at most every 10 s, and the recovery.
type lossLogger struct {
	log      *slog.Logger
	mu       sync.Mutex
	failing  bool
	last     time.Time
	failures int
}

func (l *lossLogger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	if l.failing && time.Since(l.last) < 10*time.Second {
		return
	}
	l.log.Warn("backplane publish failed: cross-node messages are being lost", "err", err, "lost_so_far", l.failures)
	l.failing, l.last = true, time.Now()
}

func (l *lossLogger) ok() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		l.log.Info("backplane publish recovered", "lost", l.failures)
		l.failing, l.failures = false, 0
	}
}
