package router

import "time"

// Result counts what a send did.
type Result struct {
	Delivered int // frames queued
	Missing   int // recipients without a payload for their protocol
}

func (r *Result) deliver(c Conn, p Payloads) {
	b, ok := p.Get(c.Protocol())
	if !ok {
		r.Missing++
		return
	}
	if c.Send(b) {
		r.Delivered++
	}
}

// contains is a linear scan: exclusion lists are short in practice, and a scan does not allocate.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SendConnection delivers to one connection. It reports false when the connection is unknown.
func (h *Hub) SendConnection(id string, p Payloads) (Result, bool) {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	m, ok := h.conns[id]
	if !ok {
		return r, false
	}
	r.deliver(m.conn, p)
	return r, true
}

// SendConnections delivers to each listed connection that exists.
func (h *Hub) SendConnections(ids []string, p Payloads) Result {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i, id := range ids {
		if contains(ids[:i], id) {
			continue
		}
		if m, ok := h.conns[id]; ok {
			r.deliver(m.conn, p)
		}
	}
	return r
}

// SendUsers delivers to every connection of each listed user.
func (h *Hub) SendUsers(users []string, p Payloads) Result {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i, u := range users {
		if contains(users[:i], u) {
			continue
		}
		for _, m := range h.users[u] {
			r.deliver(m.conn, p)
		}
	}
	return r
}

// Broadcast delivers to every connection not excluded.
func (h *Hub) Broadcast(p Payloads, excluded []string) Result {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	for id, m := range h.conns {
		if len(excluded) > 0 && contains(excluded, id) {
			continue
		}
		r.deliver(m.conn, p)
	}
	return r
}

// SendGroup delivers to every connection in the group except excluded connections and the
// connections of excluded users.
func (h *Hub) SendGroup(name string, p Payloads, excludedConns, excludedUsers []string) Result {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.eachInGroupLocked(name, h.now(), func(m *member) {
		if len(excludedConns) > 0 && contains(excludedConns, m.conn.ID()) {
			return
		}
		if len(excludedUsers) > 0 && m.conn.UserID() != "" && contains(excludedUsers, m.conn.UserID()) {
			return
		}
		r.deliver(m.conn, p)
	})
	return r
}

// SendGroups delivers once to every connection that is in at least one of the groups.
func (h *Hub) SendGroups(names []string, p Payloads) Result {
	var r Result
	h.mu.RLock()
	defer h.mu.RUnlock()
	// One clock reading for the whole send: a user membership expiring between walking a group
	// and the dedupe check against it would otherwise deliver the frame twice.
	now := h.now()
	for i, name := range names {
		if contains(names[:i], name) {
			continue
		}
		h.eachInGroupLocked(name, now, func(m *member) {
			// A connection in an earlier group of the list already got the message.
			for _, prev := range names[:i] {
				if h.inGroupLocked(m, prev, now) {
					return
				}
			}
			r.deliver(m.conn, p)
		})
	}
	return r
}

func (h *Hub) inGroupLocked(m *member, name string, now time.Time) bool {
	if _, ok := m.groups[name]; ok {
		return true
	}
	g := h.groups[name]
	if g == nil || len(g.users) == 0 {
		return false
	}
	u := m.conn.UserID()
	if u == "" {
		return false
	}
	exp, ok := g.users[u]
	return ok && liveAt(exp, now)
}
