package router

import (
	"strings"
	"sync"
	"time"
)

// Conn is a client connection as the router sees it. Implementations must be comparable
// (pointer types): Remove compares the stored Conn with the one given.
type Conn interface {
	// ID is the public SignalR connection id.
	ID() string
	// UserID is the user the connection belongs to ("" for anonymous).
	UserID() string
	// Protocol is the lower-case hub protocol name ("json", "messagepack", ...).
	Protocol() string
	// Send queues one or more whole framed hub messages. It never blocks and never calls back
	// into the router; it reports false when the connection is closed or was overrun.
	Send(frame []byte) bool
}

// Payloads selects the frame to deliver for a hub protocol; implementations compare names
// case-insensitively and must not allocate.
type Payloads interface {
	Get(protocol string) ([]byte, bool)
}

// Frame is a Payloads holding one frame for one protocol, for single-protocol sends.
type Frame struct {
	Protocol string
	Data     []byte
}

// Get implements Payloads.
func (f Frame) Get(protocol string) ([]byte, bool) {
	if strings.EqualFold(f.Protocol, protocol) {
		return f.Data, true
	}
	return nil, false
}

// Router owns the hubs of one tenant instance.
type Router struct {
	now    func() time.Time
	mu     sync.Mutex
	hubs   map[string]*Hub
	obs    Observer
	scoped bool
}

// New returns an empty router. now may be nil (time.Now).
func New(now func() time.Time) *Router {
	if now == nil {
		now = time.Now
	}
	return &Router{now: now, hubs: make(map[string]*Hub)}
}

// Hub returns the hub with the given id, creating it on first use. Hub ids are compared as given;
// callers lower-case them (Azure treats hub names case-insensitively).
func (r *Router) Hub(id string) *Hub {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hubs[id]
	if !ok {
		h = newHub(id, r.now)
		h.obs, h.scoped = r.obs, r.scoped
		r.hubs[id] = h
	}
	return h
}

// Lookup returns an existing hub without creating it.
func (r *Router) Lookup(id string) (*Hub, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hubs[id]
	return h, ok
}

// Hubs returns a snapshot of the hubs.
func (r *Router) Hubs() []*Hub {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Hub, 0, len(r.hubs))
	for _, h := range r.hubs {
		out = append(out, h)
	}
	return out
}
