package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/router"
	"github.com/signalrd/signalrd/storage"
)

// The hub facade: every send, membership change, existence check and close from an app-server
// link or the REST API goes through these methods. They deliver to this node's connections
// through the router and, in a cluster, reach the other nodes: fan-out sends as one envelope
// on the hub, user or group topic (only nodes with a local member subscribe), operations on one
// connection as a request to the node owning it.

func (h *hubState) cl() *cluster { return h.in.cl }

func (h *hubState) broadcast(p svcproto.Payloads, excluded []string) {
	h.conn.Broadcast(p, excluded)
	if cl := h.cl(); cl != nil {
		e := &envelope{Kind: envSendAll, Hub: h.id, ExclConns: excluded}
		e.setPayloads(p)
		cl.publish(topicAll(h.id), e)
	}
}

func (h *hubState) sendUsers(users []string, p svcproto.Payloads) {
	h.conn.SendUsers(users, p)
	cl := h.cl()
	if cl == nil {
		return
	}
	for i, u := range users {
		if slices.Contains(users[:i], u) {
			continue
		}
		e := &envelope{Kind: envSendUser, Hub: h.id, User: u}
		e.setPayloads(p)
		cl.publish(topicUser(h.id, u), e)
	}
}

func (h *hubState) sendGroup(group string, p svcproto.Payloads, exclConns, exclUsers []string) {
	h.conn.SendGroup(group, p, exclConns, exclUsers)
	if cl := h.cl(); cl != nil {
		e := &envelope{Kind: envSendGroup, Hub: h.id, Group: group, ExclConns: exclConns, ExclUsers: exclUsers}
		e.setPayloads(p)
		cl.publish(topicGroup(h.id, group), e)
	}
}

// sendGroups publishes one envelope (the group list) on every group's topic; a receiving node
// delivers, per topic, only to members not in an earlier group of the list (router.SendGroupOf),
// so a connection in several groups gets one copy.
func (h *hubState) sendGroups(groups []string, p svcproto.Payloads) {
	h.conn.SendGroups(groups, p)
	cl := h.cl()
	if cl == nil {
		return
	}
	e := &envelope{Kind: envSendGroup, Hub: h.id, List: groups}
	e.setPayloads(p)
	e.Origin = cl.node
	b, err := encodeEnvelope(e)
	if err != nil {
		cl.log.Error("backplane envelope", "err", err)
		return
	}
	for i, g := range groups {
		if !slices.Contains(groups[:i], g) {
			cl.pub.send(topicGroup(h.id, g), b)
		}
	}
}

// sendConnections delivers to connections wherever they are: local ones at once, the others
// in one envelope per owning node.
func (h *hubState) sendConnections(ctx context.Context, ids []string, p svcproto.Payloads) {
	cl := h.cl()
	if cl == nil {
		h.conn.SendConnections(ids, p)
		return
	}
	var local []string
	remote := map[string][]string{}
	for i, id := range ids {
		if slices.Contains(ids[:i], id) {
			continue
		}
		if _, ok := h.conn.Conn(id); ok {
			local = append(local, id)
			continue
		}
		if node, ok := cl.ownerForSend(ctx, id); ok && node != cl.node {
			remote[node] = append(remote[node], id)
		}
	}
	h.conn.SendConnections(local, p)
	for node, conns := range remote {
		e := &envelope{Kind: envSendConns, Hub: h.id, Conns: conns}
		e.setPayloads(p)
		cl.publish(topicNode(node), e)
	}
}

// joinGroup adds a connection to a group; in a cluster it returns once the connection's node
// receives the group's messages, so a group send right after the Ack reaches the new member.
func (h *hubState) joinGroup(ctx context.Context, connID, group string) svcproto.AckStatus {
	if h.conn.JoinGroup(connID, group) {
		if cl := h.cl(); cl != nil {
			cl.interest.wait(ctx, topicGroup(h.id, group))
		}
		return svcproto.AckOK
	}
	return h.askOwner(ctx, connID, &envelope{Kind: envJoin, Hub: h.id, Conns: []string{connID}, Group: group})
}

// leaveGroup removes a connection from a group ("" every group).
func (h *hubState) leaveGroup(ctx context.Context, connID, group string) svcproto.AckStatus {
	if h.conn.LeaveGroup(connID, group) {
		return svcproto.AckOK
	}
	return h.askOwner(ctx, connID, &envelope{Kind: envLeave, Hub: h.id, Conns: []string{connID}, Group: group})
}

// askOwner sends a request about a connection to the node owning it. NotFound: no such
// connection; InternalServerError: the registry or the owning node could not be asked (the SDK
// then throws rather than take the operation for a no-op).
func (h *hubState) askOwner(ctx context.Context, connID string, e *envelope) svcproto.AckStatus {
	cl := h.cl()
	if cl == nil {
		return svcproto.AckNotFound
	}
	node, ok, err := cl.ownerOf(ctx, connID)
	if err != nil {
		cl.log.Warn("looking up the node owning a connection failed", "kind", e.Kind, "conn_id", connID, "err", err)
		return svcproto.AckInternalServerError
	}
	if !ok || node == cl.node {
		return svcproto.AckNotFound
	}
	r, err := cl.ask(ctx, node, e)
	if errors.Is(err, errNodeLeft) {
		return svcproto.AckNotFound // the owner left: its connections are gone
	}
	if err != nil {
		cl.log.Warn("request to the node owning a connection failed", "kind", e.Kind, "conn_id", connID, "peer", node, "err", err)
		return svcproto.AckInternalServerError
	}
	if !r.OK {
		return svcproto.AckNotFound
	}
	return svcproto.AckOK
}

// userJoinGroup adds a user (its current and future connections) to a group: on this node at
// once, then elsewhere (userJoinGroupElsewhere).
func (h *hubState) userJoinGroup(ctx context.Context, user, group string, ttl time.Duration) {
	h.conn.UserJoinGroup(user, group, ttl)
	h.userJoinGroupElsewhere(ctx, user, group, ttl)
}

// userJoinGroupElsewhere is the cluster's part of a user join (nothing on a lone node): the
// membership is stored once, with its TTL, and every node with a connection of the user applies
// it (this one included, which then waits for the group's subscription like the others).
func (h *hubState) userJoinGroupElsewhere(ctx context.Context, user, group string, ttl time.Duration) {
	cl := h.cl()
	if cl == nil {
		return
	}
	var exp int64
	if ttl > 0 {
		exp = time.Now().Add(ttl).UnixMilli()
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := cl.store.SetAdd(sctx, keyUserGroups(h.id, user), group, ttl)
	cancel()
	if err != nil {
		cl.log.Warn("storing a user-group membership failed: only connected nodes apply it", "hub", h.id, "user", user, "group", group, "err", err)
	}
	cl.askAll(ctx, &envelope{Kind: envUserJoin, Hub: h.id, User: user, Group: group, Expires: exp})
}

// userLeaveGroup removes a user from a group ("" every group): here at once, then elsewhere.
func (h *hubState) userLeaveGroup(ctx context.Context, user, group string) {
	h.conn.UserLeaveGroup(user, group)
	h.userLeaveGroupElsewhere(ctx, user, group)
}

// userLeaveGroupElsewhere is the cluster's part of a user leave (nothing on a lone node).
func (h *hubState) userLeaveGroupElsewhere(ctx context.Context, user, group string) {
	cl := h.cl()
	if cl == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	var err error
	if group == "" {
		err = cl.store.SetRemoveAll(sctx, keyUserGroups(h.id, user))
	} else {
		err = cl.store.SetRemove(sctx, keyUserGroups(h.id, user), group)
	}
	cancel()
	if err != nil {
		cl.log.Warn("removing a user-group membership failed", "hub", h.id, "user", user, "group", group, "err", err)
	}
	cl.askAll(ctx, &envelope{Kind: envUserLeave, Hub: h.id, User: user, Group: group})
}

// Questions nodes answer about their own connections (envQuery's Text).
const (
	queryUser        = "user"
	queryGroup       = "group"
	queryUserInGroup = "userInGroup"
	queryGroupConns  = "groupConns"
)

func (h *hubState) userInGroup(ctx context.Context, user, group string) bool {
	if h.conn.UserInGroup(user, group) {
		return true
	}
	cl := h.cl()
	if cl == nil {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	ok, err := cl.store.SetContains(sctx, keyUserGroups(h.id, user), group)
	cancel()
	if err == nil && ok {
		return true
	}
	return cl.anyOK(ctx, &envelope{Kind: envQuery, Text: queryUserInGroup, Hub: h.id, User: user, Group: group})
}

func (h *hubState) connExists(ctx context.Context, id string) bool {
	if _, ok := h.conn.Conn(id); ok {
		return true
	}
	if cl := h.cl(); cl != nil {
		node, ok := cl.owner(ctx, id)
		return ok && node != cl.node
	}
	return false
}

func (h *hubState) userExists(ctx context.Context, user string) bool {
	if h.conn.UserExists(user) {
		return true
	}
	cl := h.cl()
	return cl != nil && cl.anyOK(ctx, &envelope{Kind: envQuery, Text: queryUser, Hub: h.id, User: user})
}

func (h *hubState) groupExists(ctx context.Context, group string) bool {
	if h.conn.GroupExists(group) {
		return true
	}
	cl := h.cl()
	return cl != nil && cl.anyOK(ctx, &envelope{Kind: envQuery, Text: queryGroup, Hub: h.id, Group: group})
}

// groupMembers lists the group's connections on every node, sorted by id.
func (h *hubState) groupMembers(ctx context.Context, group string) []groupMember {
	var out []groupMember
	cl := h.cl()
	if cl == nil {
		for _, c := range h.conn.GroupConns(group) {
			out = append(out, groupMember{ConnectionID: c.ID(), UserID: c.UserID()})
		}
	} else {
		for _, r := range cl.askAll(ctx, &envelope{Kind: envQuery, Text: queryGroupConns, Hub: h.id, Group: group}) {
			for _, m := range r.List {
				id, user, _ := strings.Cut(m, "\x00")
				out = append(out, groupMember{ConnectionID: id, UserID: user})
			}
		}
	}
	slices.SortFunc(out, func(a, b groupMember) int { return strings.Compare(a.ConnectionID, b.ConnectionID) })
	return slices.CompactFunc(out, func(a, b groupMember) bool { return a.ConnectionID == b.ConnectionID })
}

// closeConn closes one connection wherever it is.
func (h *hubState) closeConn(ctx context.Context, id, reason string) svcproto.AckStatus {
	if c, ok := h.client(id); ok {
		c.closeWith(closeReasonService, reason, false)
		return svcproto.AckOK
	}
	return h.askOwner(ctx, id, &envelope{Kind: envCloseConn, Hub: h.id, Conns: []string{id}, Text: reason})
}

// closeAll, closeUser and closeGroup close connections on every node.
func (h *hubState) closeAll(reason string, excluded []string) {
	closeConns(h.conn.Conns(), reason, excluded)
	if cl := h.cl(); cl != nil {
		cl.publish(topicAll(h.id), &envelope{Kind: envCloseAll, Hub: h.id, Text: reason, ExclConns: excluded})
	}
}

func (h *hubState) closeUser(user, reason string, excluded []string) {
	closeConns(h.conn.UserConns(user), reason, excluded)
	if cl := h.cl(); cl != nil {
		cl.publish(topicUser(h.id, user), &envelope{Kind: envCloseUser, Hub: h.id, User: user, Text: reason, ExclConns: excluded})
	}
}

func (h *hubState) closeGroup(group, reason string, excluded []string) {
	closeConns(h.conn.GroupConns(group), reason, excluded)
	if cl := h.cl(); cl != nil {
		cl.publish(topicGroup(h.id, group), &envelope{Kind: envCloseGroup, Hub: h.id, Group: group, Text: reason, ExclConns: excluded})
	}
}

// execute runs REST :execute commands on the connections the filter matches, on every node.
func (h *hubState) execute(ctx context.Context, filter string, steps []execStep) error {
	cl := h.cl()
	if cl == nil {
		return h.executeLocal(filter, steps)
	}
	data, err := msgpack.Marshal(encodeSteps(steps))
	if err != nil {
		return err
	}
	cl.askAll(ctx, &envelope{Kind: envExecute, Hub: h.id, Text: filter, Data: data})
	return nil
}

// executeLocal applies :execute steps to this node's matching connections.
func (h *hubState) executeLocal(filterText string, steps []execStep) error {
	var filter *odataFilter
	if filterText != "" {
		var err error
		if filter, err = parseODataFilter(filterText); err != nil {
			return err
		}
	}
	targets := matchFilter(h.conn, filter)
	ids := make([]string, len(targets))
	for i, c := range targets {
		ids[i] = c.ID()
	}
	for _, st := range steps {
		switch st.kind {
		case "sendmessage":
			h.conn.SendConnections(ids, st.payloads)
		case "joingroup":
			for _, id := range ids {
				h.conn.JoinGroup(id, st.group)
			}
		case "leavegroup":
			for _, id := range ids {
				h.conn.LeaveGroup(id, st.group)
			}
		case "closeconnection":
			closeConns(targets, st.reason, nil)
		}
	}
	return nil
}

// wireStep is an execStep on the backplane.
type wireStep struct {
	Kind      string   `msgpack:"k"`
	Group     string   `msgpack:"g,omitempty"`
	Reason    string   `msgpack:"r,omitempty"`
	Protocols []string `msgpack:"p,omitempty"`
	Payloads  [][]byte `msgpack:"d,omitempty"`
}

func encodeSteps(steps []execStep) []wireStep {
	out := make([]wireStep, len(steps))
	for i, st := range steps {
		out[i] = wireStep{Kind: st.kind, Group: st.group, Reason: st.reason}
		for _, p := range st.payloads {
			out[i].Protocols = append(out[i].Protocols, p.Protocol)
			out[i].Payloads = append(out[i].Payloads, p.Data)
		}
	}
	return out
}

func decodeSteps(b []byte) ([]execStep, error) {
	var ws []wireStep
	if err := msgpack.Unmarshal(b, &ws); err != nil {
		return nil, err
	}
	out := make([]execStep, len(ws))
	for i, w := range ws {
		out[i] = execStep{kind: w.Kind, group: w.Group, reason: w.Reason}
		for j := range min(len(w.Protocols), len(w.Payloads)) {
			out[i].payloads = append(out[i].payloads, svcproto.Payload{Protocol: w.Protocols[j], Data: w.Payloads[j]})
		}
	}
	return out, nil
}

// owner returns the live node holding a connection.
func (cl *cluster) owner(ctx context.Context, connID string) (string, bool) {
	node, ok, _ := cl.ownerOf(ctx, connID)
	return node, ok
}

// ownerOf is owner, telling a registry failure (err) from an unknown connection.
func (cl *cluster) ownerOf(ctx context.Context, connID string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	v, err := cl.store.Get(ctx, keyConn(connID))
	if errors.Is(err, storage.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(v) == 0 {
		return "", false, nil // a finished connection's tombstone
	}
	node := string(v)
	return node, cl.isLiveNow(ctx, node), nil
}

// ownerForSend is owner for sends to connections: the node owning a connection never changes
// during its life, so a positive answer is remembered a while (a send to a connection that
// closed meanwhile reaches its former node, which drops it, as it would have anyway).
func (cl *cluster) ownerForSend(ctx context.Context, connID string) (string, bool) {
	now := time.Now()
	cl.ownerMu.Lock()
	e, ok := cl.owners[connID]
	cl.ownerMu.Unlock()
	if ok && now.Before(e.until) && cl.isLive(e.node) {
		return e.node, true
	}
	node, ok := cl.owner(ctx, connID)
	if !ok {
		return "", false
	}
	cl.ownerMu.Lock()
	if len(cl.owners) >= ownerCacheMax {
		clear(cl.owners) // crude but bounded; entries refill on demand
	}
	cl.owners[connID] = ownerEntry{node: node, until: now.Add(ownerCacheTTL)}
	cl.ownerMu.Unlock()
	return node, true
}

// ownerEntry is a cached connection owner.
type ownerEntry struct {
	node  string
	until time.Time
}

const (
	ownerCacheTTL = 30 * time.Second
	ownerCacheMax = 100_000
)

// deliver applies a fan-out envelope to this node's connections.
func (cl *cluster) deliver(topic string, e *envelope) {
	h, ok := cl.in.router.Lookup(e.Hub)
	if !ok {
		return
	}
	switch e.Kind {
	case envSendAll:
		h.Broadcast(e.payloads(), e.ExclConns)
	case envSendUser:
		h.SendUsers([]string{e.User}, e.payloads())
	case envSendGroup:
		if len(e.List) == 0 {
			h.SendGroup(e.Group, e.payloads(), e.ExclConns, e.ExclUsers)
			return
		}
		group := strings.TrimPrefix(topic, topicGroup(e.Hub, ""))
		if i := slices.Index(e.List, group); i >= 0 {
			h.SendGroupOf(e.List, i, e.payloads())
		}
	case envSendConns:
		h.SendConnections(e.Conns, e.payloads())
	case envCloseAll:
		closeConns(h.Conns(), e.Text, e.ExclConns)
	case envCloseUser:
		closeConns(h.UserConns(e.User), e.Text, e.ExclConns)
	case envCloseGroup:
		closeConns(h.GroupConns(e.Group), e.Text, e.ExclConns)
	}
}

// answer handles a request about this node's connections and returns the reply.
func (cl *cluster) answer(ctx context.Context, e *envelope) *envelope {
	r := &envelope{}
	h, ok := cl.in.router.Lookup(e.Hub)
	if !ok {
		return r
	}
	conn := ""
	if len(e.Conns) > 0 {
		conn = e.Conns[0]
	}
	switch e.Kind {
	case envCloseConn:
		if rc, ok := h.Conn(conn); ok {
			if c, ok := rc.(*client); ok {
				c.closeWith(closeReasonService, e.Text, false)
				r.OK = true
			}
		}
	case envJoin:
		if r.OK = h.JoinGroup(conn, e.Group); r.OK {
			cl.interest.wait(ctx, topicGroup(e.Hub, e.Group))
		}
	case envLeave:
		r.OK = h.LeaveGroup(conn, e.Group)
	case envUserJoin:
		var exp time.Time
		if e.Expires > 0 {
			exp = time.UnixMilli(e.Expires)
		}
		h.UserJoinGroupUntil(e.User, e.Group, exp)
		cl.interest.wait(ctx, topicGroup(e.Hub, e.Group))
		r.OK = true
	case envUserLeave:
		h.UserLeaveGroup(e.User, e.Group)
		r.OK = true
	case envJoinUserConns:
		for _, c := range h.UserConns(e.User) {
			h.JoinGroup(c.ID(), e.Group)
		}
		cl.interest.wait(ctx, topicGroup(e.Hub, e.Group))
		r.OK = true
	case envQuery:
		switch e.Text {
		case queryUser:
			r.OK = h.UserExists(e.User)
		case queryGroup:
			r.OK = h.GroupExists(e.Group)
		case queryUserInGroup:
			r.OK = h.UserInGroup(e.User, e.Group)
		case queryGroupConns:
			for _, c := range h.GroupConns(e.Group) {
				r.List = append(r.List, c.ID()+"\x00"+c.UserID())
			}
			r.OK = len(r.List) > 0
		}
	case envExecute:
		steps, err := decodeSteps(e.Data)
		if err != nil {
			cl.log.Warn("bad :execute request from a peer", "peer", e.Origin, "err", err)
			return r
		}
		if err := cl.in.hub(e.Hub).executeLocal(e.Text, steps); err != nil {
			cl.log.Warn(":execute from a peer failed", "peer", e.Origin, "err", err)
			return r
		}
		// Answer once the groups joined here receive their messages, as a JoinGroup does: a
		// group send right after the 202 reaches the new members.
		for _, st := range steps {
			if st.kind == "joingroup" {
				cl.interest.wait(ctx, topicGroup(e.Hub, st.group))
			}
		}
		r.OK = true
	}
	return r
}

var _ router.Observer = (*cluster)(nil)
