package server

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Group membership operations (§6.4) and the paged group listing (§6.6).

func restConnJoin(q *restReq) {
	// Through the hub facade: in a cluster it answers once this node receives the group's
	// messages, so a group send right after the 200, on any node, reaches the new member.
	switch q.hubState().joinGroup(q.r.Context(), q.conn, q.group) {
	case svcproto.AckOK:
	case svcproto.AckNotFound:
		q.fail(http.StatusNotFound, codeErrorConnectionNotExisted, "Connection '"+q.conn+"' does not exist.", "connectionId")
		return
	default:
		q.fail(http.StatusServiceUnavailable, codeInternal, "The service node holding connection '"+q.conn+"' could not be reached; retry.", "connectionId")
		return
	}
	q.done(http.StatusOK)
}

// restConnLeave answers 200 even for unknown connections: the Management SDK throws on any
// non-2xx here (the emulator's 404 is not copied).
func restConnLeave(q *restReq) {
	q.hubState().conn.LeaveGroup(q.conn, q.group)
	q.done(http.StatusOK)
}

func restConnLeaveAll(q *restReq) {
	q.hubState().conn.LeaveGroup(q.conn, "")
	q.done(http.StatusOK)
}

// restUserJoin adds a user to a group. ttl (seconds) bounds the membership; without it the
// membership does not expire; ttl=0 only adds the user's current connections.
func restUserJoin(q *restReq) {
	hs := q.hubState()
	h := hs.conn
	if v := q.r.URL.Query().Get("ttl"); v != "" {
		ttl, err := strconv.ParseInt(v, 10, 32)
		if err != nil || ttl < 0 {
			q.invalid("Invalid ttl '"+v+"': it must be a whole number of seconds between 0 and 2147483647.", "ttl")
			return
		}
		if ttl == 0 {
			// Only the user's current connections, on this node and (in a cluster) the others.
			for _, c := range h.UserConns(q.user) {
				h.JoinGroup(c.ID(), q.group)
			}
			if cl := hs.cl(); cl != nil {
				cl.askAll(q.r.Context(), &envelope{Kind: envJoinUserConns, Hub: hs.id, User: q.user, Group: q.group})
			}
			q.done(q.status(http.StatusOK, http.StatusAccepted))
			return
		}
		hs.userJoinGroup(q.r.Context(), q.user, q.group, time.Duration(ttl)*time.Second)
	} else {
		hs.userJoinGroup(q.r.Context(), q.user, q.group, 0)
	}
	q.done(q.status(http.StatusOK, http.StatusAccepted))
}

func restUserLeave(q *restReq) {
	q.hubState().userLeaveGroup(q.r.Context(), q.user, q.group)
	q.done(q.status(http.StatusNoContent, http.StatusAccepted))
}

func restUserLeaveAll(q *restReq) {
	q.hubState().userLeaveGroup(q.r.Context(), q.user, "")
	q.done(q.status(http.StatusNoContent, http.StatusOK))
}

func restUserInGroup(q *restReq) {
	if !q.hubState().userInGroup(q.r.Context(), q.user, q.group) {
		q.fail(http.StatusNotFound, codeUserNotInGroup, "User '"+q.user+"' is not in group '"+q.group+"'.", "user")
		return
	}
	q.done(http.StatusOK)
}

// Paging of GET groups/{group}/connections.
const (
	listDefaultPageSize = 200
	listMaxPageSize     = 200
)

type groupMember struct {
	ConnectionID string `json:"connectionId"`
	UserID       string `json:"userId,omitempty"`
}

type groupMemberPage struct {
	Value    []groupMember `json:"value"`
	NextLink string        `json:"nextLink,omitempty"`
}

// restListGroup lists the group's connections ordered by connection id. The continuation token
// is opaque: how many connections earlier pages returned (for top) and the last id returned, so
// pages stay consistent while connections come and go.
func restListGroup(q *restReq) {
	qs := q.r.URL.Query()
	pageSize, ok := q.intParam(qs, "maxpagesize", listDefaultPageSize, 1, listMaxPageSize)
	if !ok {
		return
	}
	top, ok := q.intParam(qs, "top", 0, 1, 1<<31-1)
	if !ok {
		return
	}
	seen, after := 0, ""
	if tok := qs.Get("continuationToken"); tok != "" {
		if seen, after, ok = parseContinuation(tok); !ok {
			q.invalid("Invalid continuationToken: use the nextLink of the previous page.", "continuationToken")
			return
		}
	}
	conns := q.hubState().groupMembers(q.r.Context(), q.group)
	start, _ := slices.BinarySearchFunc(conns, after, func(c groupMember, id string) int { return strings.Compare(c.ConnectionID, id) })
	if after != "" && start < len(conns) && conns[start].ConnectionID == after {
		start++
	}
	limit := pageSize
	if top > 0 {
		limit = min(limit, top-seen)
	}
	page := groupMemberPage{Value: []groupMember{}}
	for i := start; i < len(conns) && len(page.Value) < limit; i++ {
		page.Value = append(page.Value, conns[i])
	}
	end := start + len(page.Value)
	if n := seen + len(page.Value); end < len(conns) && (top == 0 || n < top) && len(page.Value) > 0 {
		next := url.Values{}
		for k, v := range qs {
			next[k] = v
		}
		next.Set("continuationToken", formatContinuation(n, page.Value[len(page.Value)-1].ConnectionID))
		page.NextLink = q.in.srv.requestScheme(q.r) + "://" + q.in.srv.requestHost(q.r) + q.r.URL.EscapedPath() + "?" + next.Encode()
	}
	writeJSON(q.w, http.StatusOK, page)
}

// intParam parses an optional integer query parameter within [lo, hi]; def when absent.
func (q *restReq) intParam(qs url.Values, name string, def, lo, hi int) (int, bool) {
	v := qs.Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		q.invalid("Invalid "+name+" '"+v+"': it must be an integer between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi)+".", name)
		return 0, false
	}
	return n, true
}

func formatContinuation(seen int, lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(seen) + ":" + lastID))
}

func parseContinuation(tok string) (int, string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", false
	}
	n, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return 0, "", false
	}
	seen, err := strconv.Atoi(n)
	if err != nil || seen < 0 {
		return 0, "", false
	}
	return seen, id, true
}
