package server

import (
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/signalrd/signalrd/storage"
)

// interest keeps this node subscribed to a hub, user or group topic exactly while it has a
// local member (router.Observer events). The router reports changes under its lock, so set only
// records the wish; a few workers (topics hashed onto them, so one topic's changes stay in order)
// subscribe and unsubscribe.
type interest struct {
	cl     *cluster
	mu     sync.Mutex
	topics map[string]*topicState
	work   []*workQueue
}

type topicState struct {
	want   bool
	queued bool
	sub    storage.Subscription
	ready  chan struct{} // closed once subscribed (while wanted)
	hub    string        // user topics: load the user's groups once subscribed
	user   string
}

// workQueue is an unbounded FIFO of topics with a wake-up signal: set must never block.
type workQueue struct {
	mu    sync.Mutex
	items []string
	wake  chan struct{}
}

func newInterest(cl *cluster) *interest {
	i := &interest{cl: cl, topics: map[string]*topicState{}}
	for range publishShards {
		i.work = append(i.work, &workQueue{wake: make(chan struct{}, 1)})
	}
	return i
}

// set records whether the node wants topic; user and hub name user topics.
func (i *interest) set(topic string, want bool, hub, user string) {
	i.mu.Lock()
	st := i.topics[topic]
	if st == nil {
		if !want {
			i.mu.Unlock()
			return
		}
		st = &topicState{ready: make(chan struct{}), hub: hub, user: user}
		i.topics[topic] = st
	}
	st.want = want
	enqueue := !st.queued
	st.queued = true
	i.mu.Unlock()
	if enqueue {
		h := fnv.New32a()
		_, _ = h.Write([]byte(topic))
		q := i.work[h.Sum32()%uint32(len(i.work))]
		q.mu.Lock()
		q.items = append(q.items, topic)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// wait returns once topic is subscribed, or at once when nothing local wants it.
func (i *interest) wait(ctx context.Context, topic string) {
	i.mu.Lock()
	st := i.topics[topic]
	if st == nil || !st.want {
		i.mu.Unlock()
		return
	}
	ready := st.ready
	i.mu.Unlock()
	// Bounded whatever the caller's context: a link's reader may be the one waiting.
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	select {
	case <-ready:
	case <-ctx.Done():
		if i.cl.in.srv.ctx.Err() == nil {
			i.cl.log.Warn("gave up waiting for a backplane subscription: messages on it may be missed", "topic", topic, "err", ctx.Err())
		}
	}
}

// subscribed lists the topics currently subscribed (tests and the trace page).
func (i *interest) subscribed() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []string
	for t, st := range i.topics {
		if st.sub != nil {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// closeAll ends every subscription when the node leaves (the workers have stopped).
func (i *interest) closeAll() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for t, st := range i.topics {
		if st.sub != nil {
			st.sub.Close()
		}
		delete(i.topics, t)
	}
}

func (i *interest) start(ctx context.Context, goFn func(func())) {
	for _, q := range i.work {
		goFn(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-q.wake:
				}
				for {
					q.mu.Lock()
					if len(q.items) == 0 {
						q.mu.Unlock()
						break
					}
					topic := q.items[0]
					q.items = q.items[1:]
					q.mu.Unlock()
					i.reconcile(ctx, topic)
				}
			}
		})
	}
}

// reconcile brings one topic's subscription in line with the latest wish.
func (i *interest) reconcile(ctx context.Context, topic string) {
	i.mu.Lock()
	st := i.topics[topic]
	if st == nil {
		i.mu.Unlock()
		return
	}
	st.queued = false
	want, sub := st.want, st.sub
	i.mu.Unlock()
	switch {
	case want && sub == nil:
		// Subscribe returns at once with a pending subscription while the backend is down.
		s, err := i.cl.store.Subscribe(ctx, topic, i.cl.onMessage)
		if err != nil {
			if ctx.Err() == nil {
				i.cl.log.Warn("backplane subscribe failed", "topic", topic, "err", err)
			}
			return
		}
		i.mu.Lock()
		st.sub = s
		close(st.ready)
		again := !st.want && !st.queued
		i.mu.Unlock()
		if again {
			i.set(topic, false, "", "")
			return
		}
		if st.user != "" {
			i.cl.loadUserGroups(ctx, st.hub, st.user)
		}
	case want && st.user != "":
		// The user came back while still subscribed: the router forgot its groups meanwhile.
		i.cl.loadUserGroups(ctx, st.hub, st.user)
	case !want && sub != nil:
		// The state changes under the lock before the subscription closes: a member arriving
		// meanwhile then waits on a fresh ready channel (closed only once subscribed again),
		// never on the old closed one while nothing is subscribed.
		i.mu.Lock()
		if st.want {
			i.mu.Unlock() // wanted again meanwhile: keep the subscription
			return
		}
		st.sub = nil
		st.ready = make(chan struct{})
		if !st.queued {
			delete(i.topics, topic)
		}
		i.mu.Unlock()
		sub.Close()
	case !want:
		i.mu.Lock()
		if !st.want && !st.queued && st.sub == nil {
			delete(i.topics, topic)
		}
		i.mu.Unlock()
	}
}

// HubActive implements router.Observer.
func (cl *cluster) HubActive(hub string, active bool) {
	cl.interest.set(topicAll(hub), active, "", "")
}

// UserActive implements router.Observer.
func (cl *cluster) UserActive(hub, user string, active bool) {
	cl.interest.set(topicUser(hub, user), active, hub, user)
}

// GroupActive implements router.Observer.
func (cl *cluster) GroupActive(hub, group string, active bool) {
	cl.interest.set(topicGroup(hub, group), active, "", "")
}

// connReady makes a connection just added to the router reachable through the backplane
// before its app server hears of it: the hub and user topics its arrival subscribed this node
// to are subscribed, and its user's stored group memberships are applied with their topics
// subscribed. Otherwise what the app server sends from OnConnected on (to all, to the user, to
// the user's groups) is published before this node listens, and lost, whenever the connection
// is the first of its hub or user here. Waits only for what is not in place yet.
func (cl *cluster) connReady(ctx context.Context, hub, user string) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	cl.interest.wait(ctx, topicAll(hub))
	if user == "" {
		return
	}
	cl.interest.wait(ctx, topicUser(hub, user))
	groups := cl.loadUserGroups(ctx, hub, user)
	for _, g := range groups {
		cl.interest.wait(ctx, topicGroup(hub, g))
	}
}

// loadUserGroups applies a user's stored group memberships when its first local connection
// arrives (after subscribing to the user's topic, so no later change is missed).
func (cl *cluster) loadUserGroups(ctx context.Context, hub, user string) (groups []string) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	entries, err := cl.store.SetEntries(ctx, keyUserGroups(hub, user))
	if err != nil {
		cl.log.Warn("loading a user's groups failed", "hub", hub, "user", user, "err", err)
		return nil
	}
	h, ok := cl.in.router.Lookup(hub)
	if !ok {
		return nil
	}
	for _, e := range entries {
		h.UserJoinGroupUntil(user, e.Member, e.Expires)
		groups = append(groups, e.Member)
	}
	return groups
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// splitServerMember parses a member of s/{hub}: "node|serverId".
func splitServerMember(m string) (node, serverID string, ok bool) {
	return strings.Cut(m, "|")
}
