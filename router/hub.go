package router

import (
	"sync"
	"time"
)

// Hub indexes the connections of one hub by id, user and group.
type Hub struct {
	id     string
	now    func() time.Time
	obs    Observer // nil: nobody watches
	scoped bool     // user-level memberships only for users with a local connection

	mu     sync.RWMutex
	conns  map[string]*member
	users  map[string]map[string]*member // user -> conn id -> member
	groups map[string]*group
	// userGroups remembers user-level memberships so that a user's future connections are in the
	// group too; the expiry is zero for memberships without a TTL.
	userGroups map[string]map[string]time.Time // user -> group -> expiry
}

type member struct {
	conn   Conn
	groups map[string]struct{}
}

type group struct {
	conns map[string]*member
	users map[string]time.Time // user -> expiry (zero = none)
}

func newHub(id string, now func() time.Time) *Hub {
	return &Hub{
		id:         id,
		now:        now,
		conns:      make(map[string]*member),
		users:      make(map[string]map[string]*member),
		groups:     make(map[string]*group),
		userGroups: make(map[string]map[string]time.Time),
	}
}

// ID is the hub id.
func (h *Hub) ID() string { return h.id }

// Add registers a connection. A connection id already present is replaced.
func (h *Hub) Add(c Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.conns[c.ID()]; ok {
		h.removeLocked(old)
	}
	m := &member{conn: c}
	h.conns[c.ID()] = m
	if len(h.conns) == 1 {
		h.hubActive(true)
	}
	if u := c.UserID(); u != "" {
		byID := h.users[u]
		if byID == nil {
			byID = make(map[string]*member)
			h.users[u] = byID
			h.userActive(u, true)
		}
		byID[c.ID()] = m
	}
}

// Remove unregisters a connection and drops its group memberships. It reports whether c was
// registered (a newer connection with the same id is left alone).
func (h *Hub) Remove(c Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.conns[c.ID()]
	if !ok || m.conn != c {
		return false
	}
	h.removeLocked(m)
	return true
}

func (h *Hub) removeLocked(m *member) {
	id := m.conn.ID()
	delete(h.conns, id)
	for g := range m.groups {
		h.leaveLocked(m, g)
	}
	if u := m.conn.UserID(); u != "" {
		if byID := h.users[u]; byID != nil {
			delete(byID, id)
			if len(byID) == 0 {
				delete(h.users, u)
				if h.scoped {
					for g := range h.userGroups[u] {
						h.userLeaveLocked(u, g)
					}
				}
				h.userActive(u, false)
			}
		}
	}
	if len(h.conns) == 0 {
		h.hubActive(false)
	}
}

// Conn returns the connection with the given id.
func (h *Hub) Conn(id string) (Conn, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	m, ok := h.conns[id]
	if !ok {
		return nil, false
	}
	return m.conn, true
}

// Count is the number of connections.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// Conns returns a snapshot of every connection.
func (h *Hub) Conns() []Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Conn, 0, len(h.conns))
	for _, m := range h.conns {
		out = append(out, m.conn)
	}
	return out
}

// UserConns returns a snapshot of the connections of a user.
func (h *Hub) UserConns(user string) []Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]Conn, 0, len(h.users[user]))
	for _, m := range h.users[user] {
		out = append(out, m.conn)
	}
	return out
}

// GroupConns returns a snapshot of the connections in a group, including those of user members.
func (h *Hub) GroupConns(name string) []Conn {
	var out []Conn
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.eachInGroupLocked(name, h.now(), func(m *member) { out = append(out, m.conn) })
	return out
}

// UserExists reports whether the user has a connection.
func (h *Hub) UserExists(user string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user]) > 0
}

// GroupExists reports whether the group has a connection, directly or through a user member.
func (h *Hub) GroupExists(name string) bool {
	found := false
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.eachInGroupLocked(name, h.now(), func(*member) { found = true })
	return found
}
