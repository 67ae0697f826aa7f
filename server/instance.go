package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/router"
)

// instance is one tenant: its keys, settings, hubs and connections.
type instance struct {
	srv      *Server
	name     string
	settings Settings
	log      *slog.Logger
	verifier *auth.Verifier
	router   *router.Router

	mu      sync.Mutex
	hubs    map[string]*hubState
	pending map[string]*pendingConn // connection token -> negotiated, not yet connected

	invMu       sync.Mutex
	invocations map[string]*pendingInvocation // client-result invocation id -> pending
}

// pendingConn is a negotiated connection waiting for its transport request.
type pendingConn struct {
	id      string // public connection id
	hub     string
	expires time.Time
}

func newInstance(s *Server, ic InstanceConfig, st Settings) *instance {
	var keys []string
	for _, k := range []string{ic.PrimaryKey, ic.SecondaryKey} {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return &instance{
		srv:      s,
		name:     ic.Name,
		settings: st,
		log:      s.log.With("instance", ic.Name),
		verifier: &auth.Verifier{Keys: keys, Skew: st.TokenSkew},
		router:   router.New(nil),
		hubs:     map[string]*hubState{},
		pending:  map[string]*pendingConn{},

		invocations: map[string]*pendingInvocation{},
	}
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

func (in *instance) addPending(token string, p *pendingConn) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pending[token] = p
}

// takePending removes and returns a live negotiated connection.
func (in *instance) takePending(token string) (*pendingConn, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p, ok := in.pending[token]
	if !ok {
		return nil, false
	}
	delete(in.pending, token)
	if time.Now().After(p.expires) {
		return nil, false
	}
	return p, true
}

// housekeeping expires unused negotiations and expired user-group memberships.
func (in *instance) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			in.mu.Lock()
			for tok, p := range in.pending {
				if now.After(p.expires) {
					delete(in.pending, tok)
				}
			}
			in.mu.Unlock()
			for _, h := range in.router.Hubs() {
				h.SweepExpired()
			}
		}
	}
}

// closeAll closes every client with a reconnectable Close and every app-server link.
func (in *instance) closeAll(reason string) {
	for _, h := range in.hubSnapshot() {
		for _, c := range h.clientSnapshot() {
			c.closeWith(closeReasonService, reason, true)
		}
		for _, l := range h.linkSnapshot() {
			l.close()
		}
	}
}
