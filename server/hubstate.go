package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/router"
)

// hubState is the app-server side of a hub: which app servers serve it through which links.
type hubState struct {
	in   *instance
	id   string
	conn *router.Hub

	mu         sync.Mutex
	servers    map[string]*appServer // by server id (X-ASRS-Server-Id)
	migrations map[string]*migration // MigrateClients shutdowns, by server id
}

// appServer is one app-server process serving the hub, with its sockets.
type appServer struct {
	id       string
	links    []*link
	clients  int
	draining bool // sent shutdown fin: no new clients
}

func newHubState(in *instance, id string) *hubState {
	return &hubState{in: in, id: id, conn: in.router.Hub(id), servers: map[string]*appServer{}}
}

var (
	errNoServer       = errors.New("no app server")
	errStickyRequired = errors.New("sticky server gone")
)

// addLink registers a link after its handshake. It reports whether, in a cluster, the link's
// server is to be announced to the other nodes (a client-carrying link of a server that is not
// draining); the caller does it before answering the handshake, outside the lock.
func (h *hubState) addLink(l *link) (announce bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[l.serverID]
	if s == nil {
		s = &appServer{id: l.serverID}
		h.servers[l.serverID] = s
	}
	s.links = append(s.links, l)
	l.server = s
	return h.cl() != nil && l.connType != svcproto.ConnWeak && !s.draining
}

// removeLink unregisters a link; the server goes away with its last link.
func (h *hubState) removeLink(l *link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[l.serverID]
	if s == nil {
		return
	}
	s.links = slices.DeleteFunc(s.links, func(x *link) bool { return x == l })
	if len(s.links) == 0 {
		delete(h.servers, l.serverID)
		delete(h.migrations, l.serverID) // a restarted server with the same id starts afresh
		if cl := h.cl(); cl != nil {
			cl.announceServer(h.id, l.serverID, false)
		}
	}
}

// hasServer reports whether any app server can take clients, on this node or, in a cluster,
// on another.
func (h *hubState) hasServer() bool {
	if len(h.usableServerIDs()) > 0 {
		return true
	}
	if cl := h.cl(); cl != nil {
		return len(cl.remoteServers(h.in.srv.ctx, h.id)) > 0
	}
	return false
}

// usableServerIDs lists the servers that can take clients through this node.
func (h *hubState) usableServerIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, s := range h.servers {
		if !s.draining && s.usable() != nil {
			out = append(out, id)
		}
	}
	return out
}

// usableLink returns a client-carrying link of a server that is not draining, or nil.
func (h *hubState) usableLink(serverID string) *link {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.servers[serverID]; s != nil && !s.draining {
		return s.usable()
	}
	return nil
}

// counted counts a client against l's server (a relayed client bound here).
func (h *hubState) counted(l *link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.server != nil {
		l.server.clients++
	}
}

// usable returns the client-carrying link of s with the fewest clients, or nil.
func (s *appServer) usable() *link {
	var best *link
	for _, l := range s.links {
		if l.connType == svcproto.ConnWeak || l.isClosed() {
			continue
		}
		if best == nil || l.clientCount() < best.clientCount() {
			best = l
		}
	}
	return best
}

// pick chooses a link for a new client and counts the client against its server. Sticky modes
// follow the SDK's ServerStickyMode: Preferred falls back to any server, Required does not.
func (h *hubState) pick(mode auth.StickyMode, serverID, exclude string) (*link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if mode != auth.StickyDisabled && serverID != "" {
		if s := h.servers[serverID]; s != nil && !s.draining {
			if l := s.usable(); l != nil {
				s.clients++
				return l, nil
			}
		}
		if mode == auth.StickyRequired {
			return nil, fmt.Errorf("%w: server %q required by the client token is not connected", errStickyRequired, serverID)
		}
	}
	var best *appServer
	var bestLink *link
	// Deterministic order keeps load balancing stable when counts tie.
	ids := make([]string, 0, len(h.servers))
	for id := range h.servers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := h.servers[id]
		if s.draining || id == exclude {
			continue
		}
		l := s.usable()
		if l == nil {
			continue
		}
		if best == nil || s.clients < best.clients {
			best, bestLink = s, l
		}
	}
	if best == nil {
		return nil, errNoServer
	}
	best.clients++
	return bestLink, nil
}

// released undoes pick's client count.
func (h *hubState) released(l *link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.server != nil && l.server.clients > 0 {
		l.server.clients--
	}
}

// drain marks a server as shutting down: it gets no new clients.
func (h *hubState) drain(serverID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.servers[serverID]; s != nil {
		s.draining = true
		if cl := h.cl(); cl != nil {
			cl.announceServer(h.id, serverID, false)
		}
	}
}

// serverIDs lists the hub's server ids, sorted (the "servers" ping answer); a cluster adds
// the servers connected to other nodes.
func (h *hubState) serverIDs() []string {
	h.mu.Lock()
	ids := make([]string, 0, len(h.servers))
	for id := range h.servers {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	if cl := h.cl(); cl != nil {
		for _, s := range cl.remoteServers(h.in.srv.ctx, h.id) {
			if !slices.Contains(ids, s.serverID) {
				ids = append(ids, s.serverID)
			}
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return ids
}

// linkToServer returns a live link of a server, for messages addressed to it (client results).
func (h *hubState) linkToServer(serverID string) *link {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[serverID]
	if s == nil {
		return nil
	}
	for _, l := range s.links {
		if !l.isClosed() {
			return l
		}
	}
	return nil
}

func (h *hubState) linkSnapshot() []*link {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*link
	for _, s := range h.servers {
		out = append(out, s.links...)
	}
	return out
}

// client returns a connected client of the hub.
func (h *hubState) client(id string) (*client, bool) {
	c, ok := h.conn.Conn(id)
	if !ok {
		return nil, false
	}
	cc, ok := c.(*client)
	return cc, ok
}

func (h *hubState) clientSnapshot() []*client {
	conns := h.conn.Conns()
	out := make([]*client, 0, len(conns))
	for _, c := range conns {
		if cc, ok := c.(*client); ok {
			out = append(out, cc)
		}
	}
	return out
}

// serverConnected reports whether a server has a client-carrying link and is not draining.
func (h *hubState) serverConnected(serverID string) bool {
	if h.usableLink(serverID) != nil {
		return true
	}
	if cl := h.cl(); cl != nil {
		for _, s := range cl.remoteServers(h.in.srv.ctx, h.id) {
			if s.serverID == serverID {
				return true
			}
		}
	}
	return false
}

// statefulAllowed reports whether an app server of the hub allows stateful reconnect (its
// handshake's allowStatefulReconnects, SDK >= 1.26).
func (h *hubState) statefulAllowed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.servers {
		for _, l := range s.links {
			if l.stateful {
				return true
			}
		}
	}
	return false
}

// serverless reports whether the service itself answers this hub's clients: always in Serverless
// mode, and in Auto mode while no app server can take clients.
func (h *hubState) serverless() bool {
	switch h.in.settings().Mode {
	case ModeServerless:
		return true
	case ModeAuto:
		return !h.hasServer()
	}
	return false
}
