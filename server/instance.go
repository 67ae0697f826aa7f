package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/router"
	"github.com/signalrd/signalrd/server/upstream"
)

// instance is one tenant: its keys, settings, hubs and connections.
type instance struct {
	srv    *Server
	name   string
	log    *slog.Logger
	router *router.Router
	// cur holds the live Settings and Verifier; Server.Reload swaps them (reload.go).
	cur atomic.Pointer[liveConfig]

	mu    sync.Mutex
	hubs  map[string]*hubState
	conns map[string]*client // by connection token: negotiated or connected

	invMu       sync.Mutex
	invocations map[string]*pendingInvocation // client-result invocation id -> pending

	upstream *upstream.Client // nil without upstream settings
	met      *instanceMetrics
	acl      *acl     // network access control, read-only
	cl       *cluster // nil when the node runs alone
}

func newInstance(s *Server, ic InstanceConfig, st Settings) (*instance, error) {
	st.Mode, _ = canonicalMode(st.Mode) // validated by Config.Validate
	var keys []string
	for _, k := range []string{ic.PrimaryKey, ic.SecondaryKey} {
		if k != "" {
			keys = append(keys, k)
		}
	}
	in := &instance{
		srv:    s,
		name:   ic.Name,
		log:    s.log.With("instance", ic.Name),
		router: router.New(nil),
		hubs:   map[string]*hubState{},
		conns:  map[string]*client{},

		invocations: map[string]*pendingInvocation{},
		acl:         compileACL(ic.Network),
	}
	in.cur.Store(&liveConfig{settings: st, verifier: &auth.Verifier{Keys: keys, Skew: st.TokenSkew}})
	if st.UpstreamFile != "" {
		up, err := upstream.New(upstream.Options{
			SettingsFile: st.UpstreamFile,
			Keys:         func() []string { return in.verifier().Keys },
			Logger:       in.log.With("component", "upstream"),
		})
		if err != nil {
			return nil, fmt.Errorf("instance %s: upstream: %w", ic.Name, err)
		}
		in.upstream = up
	}
	in.met = s.metrics.forInstance(ic.Name, in.upstream)
	return in, nil
}

// hub returns the state of a hub, creating it on first use. ids are lower-case.
func (in *instance) hub(id string) *hubState {
	id = strings.ToLower(id)
	in.mu.Lock()
	defer in.mu.Unlock()
	h, ok := in.hubs[id]
	if !ok {
		h = newHubState(in, id)
		in.hubs[id] = h
	}
	return h
}

func (in *instance) hubSnapshot() []*hubState {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*hubState, 0, len(in.hubs))
	for _, h := range in.hubs {
		out = append(out, h)
	}
	return out
}

// register makes a negotiated connection reachable by its token until it expires unused.
func (in *instance) register(c *client) {
	c.expiresAt.Store(time.Now().Add(in.settings().NegotiateTimeout).UnixNano())
	in.mu.Lock()
	defer in.mu.Unlock()
	in.conns[c.token] = c
}

// lookup finds a connection by its token.
func (in *instance) lookup(token string) (*client, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, ok := in.conns[token]
	return c, ok
}

// forget removes a finished connection.
func (in *instance) forget(c *client) {
	if c.token == "" {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conns[c.token] == c {
		delete(in.conns, c.token)
	}
}

func (in *instance) connSnapshot() []*client {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*client, 0, len(in.conns))
	for _, c := range in.conns {
		out = append(out, c)
	}
	return out
}

// housekeeping runs once a second: it expires unused negotiations, idle long-polling and silent
// clients, and expired user-group memberships.
func (in *instance) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, c := range in.connSnapshot() {
				c.checkLiveness(now)
			}
			in.expireInvocations(now)
			for _, h := range in.router.Hubs() {
				h.SweepExpired()
			}
		}
	}
}
