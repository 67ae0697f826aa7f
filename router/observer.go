package router

// Observer learns when this node's interest in a hub, a user or a group starts and ends, so a
// cluster node can subscribe to the matching backplane topics only while it has local members.
// Calls are made with the hub's lock held, in the order the changes happen: implementations must
// not block and must not call back into the router.
type Observer interface {
	// HubActive reports the hub's first connection arriving (true) and its last leaving (false).
	HubActive(hub string, active bool)
	// UserActive reports a user's first local connection arriving and its last leaving.
	UserActive(hub, user string, active bool)
	// GroupActive reports a group gaining its first member (a connection or a user-level
	// member) and losing its last.
	GroupActive(hub, group string, active bool)
}

// Observe installs an observer. With scopedUserGroups, user-level group memberships are kept
// only for users that have a local connection: UserJoinGroup for a user without one does
// nothing, and a user's memberships are forgotten with its last connection (a cluster stores
// them once, in shared storage, and loads them when the user's first local connection arrives).
// It must be called before the first Hub is created.
func (r *Router) Observe(o Observer, scopedUserGroups bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs, r.scoped = o, scopedUserGroups
}

func (h *Hub) hubActive(active bool) {
	if h.obs != nil {
		h.obs.HubActive(h.id, active)
	}
}

func (h *Hub) userActive(user string, active bool) {
	if h.obs != nil {
		h.obs.UserActive(h.id, user, active)
	}
}

func (h *Hub) groupActive(name string, active bool) {
	if h.obs != nil {
		h.obs.GroupActive(h.id, name, active)
	}
}
