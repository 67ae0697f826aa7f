package router

import "slices"

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

// smallList is the longest list scanned linearly. Longer lists cost one sorted copy per send (one
// allocation per message, never per recipient), made before the hub lock is taken.
const smallList = 32

// unique returns list without duplicates. Short lists are returned as they are and checked with
// a scan while sending; long ones are sorted copies (recipients are distinct, order is free).
func unique(list []string) []string {
	if len(list) <= smallList {
		return list
	}
	c := slices.Clone(list)
	slices.Sort(c)
	return slices.Compact(c)
}

// seenBefore reports whether list[i] already appeared earlier; lists longer than smallList were
// made unique up front.
func seenBefore(list []string, i int) bool {
	return len(list) <= smallList && contains(list[:i], list[i])
}

// exclusion tests membership in an exclusion list; long lists are searched as a sorted copy.
type exclusion []string

func newExclusion(list []string) exclusion {
	if len(list) > smallList {
		return exclusion(unique(list))
	}
	return exclusion(list)
}

func (e exclusion) has(s string) bool {
	if len(e) > smallList {
		_, ok := slices.BinarySearch(e, s)
		return ok
	}
	return len(e) > 0 && contains(e, s)
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
	ids = unique(ids)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i, id := range ids {
		if seenBefore(ids, i) {
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
	users = unique(users)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i, u := range users {
		if seenBefore(users, i) {
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
	ex := newExclusion(excluded)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for id, m := range h.conns {
		if ex.has(id) {
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
	exConns, exUsers := newExclusion(excludedConns), newExclusion(excludedUsers)
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.eachInGroupLocked(name, h.now(), func(m *member) {
		if exConns.has(m.conn.ID()) {
			return
		}
		if m.conn.UserID() != "" && exUsers.has(m.conn.UserID()) {
			return
		}
		r.deliver(m.conn, p)
	})
	return r
}

// SendGroups delivers once to every connection that is in at least one of the groups.
func (h *Hub) SendGroups(names []string, p Payloads) Result {
	var r Result
	names = unique(names)
	h.mu.RLock()
	defer h.mu.RUnlock()
	// One clock reading for the whole send: a user membership expiring between walking a group
	// and the dedupe check against it would otherwise deliver the frame twice.
	now := h.now()
	for i, name := range names {
		if seenBefore(names, i) {
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

// SendGroupOf delivers the message of a multi-group send (names, deduplicated as SendGroups
// does) for one of its groups only: to the connections in names[i] that are in none of the
// groups before it. A cluster node receiving the send once per subscribed group thereby
// delivers each connection one copy, as SendGroups would.
func (h *Hub) SendGroupOf(names []string, i int, p Payloads) Result {
	var r Result
	if i < 0 || i >= len(names) || seenBefore(names, i) {
		return r
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	now := h.now()
	h.eachInGroupLocked(names[i], now, func(m *member) {
		for _, prev := range names[:i] {
			if h.inGroupLocked(m, prev, now) {
				return
			}
		}
		r.deliver(m.conn, p)
	})
	return r
}
