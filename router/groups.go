package router

import "time"

// JoinGroup adds a connection to a group. It reports false when the connection is unknown.
func (h *Hub) JoinGroup(connID, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.conns[connID]
	if !ok {
		return false
	}
	h.joinLocked(m, name)
	return true
}

func (h *Hub) joinLocked(m *member, name string) {
	g := h.groupLocked(name)
	g.conns[m.conn.ID()] = m
	if m.groups == nil {
		m.groups = make(map[string]struct{})
	}
	m.groups[name] = struct{}{}
}

// LeaveGroup removes a connection from a group; name "" leaves every group. It reports false when
// the connection is unknown.
func (h *Hub) LeaveGroup(connID, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.conns[connID]
	if !ok {
		return false
	}
	if name == "" {
		for g := range m.groups {
			h.leaveLocked(m, g)
		}
		return true
	}
	h.leaveLocked(m, name)
	return true
}

func (h *Hub) leaveLocked(m *member, name string) {
	delete(m.groups, name)
	g := h.groups[name]
	if g == nil {
		return
	}
	delete(g.conns, m.conn.ID())
	h.dropIfEmptyLocked(name, g)
}

// groupLocked returns the group, creating it (and reporting it active) on first use.
func (h *Hub) groupLocked(name string) *group {
	g := h.groups[name]
	if g == nil {
		g = &group{conns: make(map[string]*member)}
		h.groups[name] = g
		h.groupActive(name, true)
	}
	return g
}

func (h *Hub) dropIfEmptyLocked(name string, g *group) {
	if len(g.conns) == 0 && len(g.users) == 0 {
		delete(h.groups, name)
		h.groupActive(name, false)
	}
}

// UserJoinGroup adds a user to a group: its current and future connections receive the group's
// messages until ttl passes (ttl <= 0: no expiry).
func (h *Hub) UserJoinGroup(user, name string, ttl time.Duration) {
	var exp time.Time
	if ttl > 0 {
		exp = h.now().Add(ttl)
	}
	h.UserJoinGroupUntil(user, name, exp)
}

// UserJoinGroupUntil is UserJoinGroup with an absolute expiry (zero: none), for memberships
// loaded from shared storage.
func (h *Hub) UserJoinGroupUntil(user, name string, exp time.Time) {
	if !exp.IsZero() && !h.live(exp) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.scoped && len(h.users[user]) == 0 {
		return
	}
	g := h.groupLocked(name)
	if g.users == nil {
		g.users = make(map[string]time.Time)
	}
	g.users[user] = exp
	ug := h.userGroups[user]
	if ug == nil {
		ug = make(map[string]time.Time)
		h.userGroups[user] = ug
	}
	ug[name] = exp
}

// UserLeaveGroup removes a user's membership of a group (name "": of every group), both the
// user-level membership and the group memberships of the user's current connections.
func (h *Hub) UserLeaveGroup(user, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name == "" {
		for g := range h.userGroups[user] {
			h.userLeaveLocked(user, g)
		}
		for _, m := range h.users[user] {
			for g := range m.groups {
				h.leaveLocked(m, g)
			}
		}
		return
	}
	h.userLeaveLocked(user, name)
	for _, m := range h.users[user] {
		h.leaveLocked(m, name)
	}
}

func (h *Hub) userLeaveLocked(user, name string) {
	if ug := h.userGroups[user]; ug != nil {
		delete(ug, name)
		if len(ug) == 0 {
			delete(h.userGroups, user)
		}
	}
	if g := h.groups[name]; g != nil {
		delete(g.users, user)
		h.dropIfEmptyLocked(name, g)
	}
}

// UserInGroup reports whether the user is a (non-expired) user-level member of the group or has a
// connection in it.
func (h *Hub) UserInGroup(user, name string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	g := h.groups[name]
	if g == nil {
		return false
	}
	if exp, ok := g.users[user]; ok && h.live(exp) {
		return true
	}
	for id := range h.users[user] {
		if _, ok := g.conns[id]; ok {
			return true
		}
	}
	return false
}

func (h *Hub) live(exp time.Time) bool { return liveAt(exp, h.now()) }

func liveAt(exp, now time.Time) bool { return exp.IsZero() || now.Before(exp) }

// SweepExpired drops expired user-level memberships; sends already ignore them, this frees memory.
func (h *Hub) SweepExpired() {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for user, ug := range h.userGroups {
		for name, exp := range ug {
			if !exp.IsZero() && !now.Before(exp) {
				h.userLeaveLocked(user, name)
			}
		}
	}
}

// eachInGroupLocked calls fn once for every connection in the group: direct members, then the
// connections of user members live at now that are not also direct members. The caller reads the
// clock once per operation so that a membership cannot expire halfway through it.
func (h *Hub) eachInGroupLocked(name string, now time.Time, fn func(*member)) {
	g := h.groups[name]
	if g == nil {
		return
	}
	for _, m := range g.conns {
		fn(m)
	}
	if len(g.users) == 0 {
		return
	}
	for user, exp := range g.users {
		if !liveAt(exp, now) {
			continue
		}
		for id, m := range h.users[user] {
			if _, direct := g.conns[id]; !direct {
				fn(m)
			}
		}
	}
}
