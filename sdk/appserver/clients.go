package appserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// HubContext is IHubContext<THub>: the hub's clients, groups and management operations, usable
// from anywhere (HTTP handlers, timers). Obtain it from MapHub or Server.Hub.
type HubContext struct {
	// Name is the hub name as mapped; ID is the hub id on the wire.
	Name, ID string

	Clients    *Clients
	Groups     *Groups
	UserGroups *UserGroups

	h *hubRuntime
}

// Clients addresses connections of one hub. From a Context it is caller-aware (Caller, Others,
// OthersInGroup) and writes on the caller's socket; from a HubContext it is not.
type Clients struct {
	h      *hubRuntime
	caller *clientConn
}

type targetKind uint8

const (
	targetAll targetKind = iota
	targetAllExcept
	targetCaller
	targetOthers
	targetOthersInGroup
	targetClient
	targetClients
	targetUser
	targetUsers
	targetGroup
	targetGroups
	targetGroupExcept
)

// ClientProxy is a set of recipients (IClientProxy). The zero value is not usable.
type ClientProxy struct {
	c    *Clients
	kind targetKind
	name string
	ids  []string
}

// All is every connection of the hub (BroadcastData).
func (c *Clients) All() ClientProxy { return ClientProxy{c: c, kind: targetAll} }

// AllExcept is every connection except the listed ones (BroadcastData with exclusions).
func (c *Clients) AllExcept(connectionIDs ...string) ClientProxy {
	return ClientProxy{c: c, kind: targetAllExcept, ids: connectionIDs}
}

// Caller is the connection of the Context (ErrNoCaller outside one).
func (c *Clients) Caller() ClientProxy { return ClientProxy{c: c, kind: targetCaller} }

// Others is every connection except the caller (AllExcept(caller)).
func (c *Clients) Others() ClientProxy { return ClientProxy{c: c, kind: targetOthers} }

// OthersInGroup is the group without the caller (GroupExcept(group, caller)).
func (c *Clients) OthersInGroup(group string) ClientProxy {
	return ClientProxy{c: c, kind: targetOthersInGroup, name: group}
}

// Client is one connection. A connection of this process gets a MultiConnectionData with only
// its own protocol's payload, on its own socket (ordered with its completions).
func (c *Clients) Client(connectionID string) ClientProxy {
	return ClientProxy{c: c, kind: targetClient, name: connectionID}
}

// Clients is a list of connections (MultiConnectionData).
func (c *Clients) Clients(connectionIDs ...string) ClientProxy {
	return ClientProxy{c: c, kind: targetClients, ids: connectionIDs}
}

// User is every connection of a user id (UserData).
func (c *Clients) User(userID string) ClientProxy {
	return ClientProxy{c: c, kind: targetUser, name: userID}
}

// Users is every connection of several users (MultiUserData).
func (c *Clients) Users(userIDs ...string) ClientProxy {
	return ClientProxy{c: c, kind: targetUsers, ids: userIDs}
}

// Group is every connection in a group (GroupBroadcastData).
func (c *Clients) Group(group string) ClientProxy {
	return ClientProxy{c: c, kind: targetGroup, name: group}
}

// Groups is every connection in any of the groups (MultiGroupBroadcastData).
func (c *Clients) Groups(groups ...string) ClientProxy {
	return ClientProxy{c: c, kind: targetGroups, ids: groups}
}

// GroupExcept is a group without the listed connections.
func (c *Clients) GroupExcept(group string, excludedConnectionIDs ...string) ClientProxy {
	return ClientProxy{c: c, kind: targetGroupExcept, name: group, ids: excludedConnectionIDs}
}

// Send invokes method on the recipients with args (SendAsync / SendCoreAsync). args are
// serialized once per hub protocol with hubproto's codecs (encoding/json rules; MessagePack
// honours json tags). It returns when the message is written to a socket, not when clients got it.
// Empty lists (Clients(), Users(), Groups()) send nothing, like the SDK.
func (p ClientProxy) Send(ctx context.Context, method string, args ...any) error {
	if p.c == nil {
		return fmt.Errorf("appserver: send: zero ClientProxy: %w", ErrInvalidArgument)
	}
	if method == "" {
		return fmt.Errorf("appserver: send: method name: %w", ErrInvalidArgument)
	}
	h, scope := p.c.h, p.c.caller
	if args == nil {
		args = []any{}
	}
	switch p.kind {
	case targetCaller, targetOthers, targetOthersInGroup:
		if scope == nil {
			return fmt.Errorf("appserver: send %q: %w", method, ErrNoCaller)
		}
	case targetClient, targetUser, targetGroup, targetGroupExcept:
		if p.name == "" {
			return fmt.Errorf("appserver: send %q: recipient: %w", method, ErrInvalidArgument)
		}
	}
	if p.kind == targetOthersInGroup && p.name == "" {
		return fmt.Errorf("appserver: send %q: group: %w", method, ErrInvalidArgument)
	}
	switch p.kind {
	case targetCaller:
		return h.sendConnection(ctx, scope, scope.id, method, args)
	case targetClient:
		return h.sendConnection(ctx, scope, p.name, method, args)
	case targetClients, targetUsers, targetGroups:
		if len(p.ids) == 0 {
			return nil
		}
	}
	payloads, err := h.payloads(method, args, nil)
	if err != nil {
		return err
	}
	var m svcproto.Message
	key := ""
	switch p.kind {
	case targetAll:
		m = svcproto.BroadcastData{Payloads: payloads}
	case targetAllExcept:
		m = svcproto.BroadcastData{ExcludedConnections: p.ids, Payloads: payloads}
	case targetOthers:
		m = svcproto.BroadcastData{ExcludedConnections: []string{scope.id}, Payloads: payloads}
	case targetClients:
		m = svcproto.MultiConnectionData{ConnectionIDs: p.ids, Payloads: payloads}
	case targetUser:
		m, key = svcproto.UserData{UserID: p.name, Payloads: payloads}, p.name
	case targetUsers:
		m = svcproto.MultiUserData{UserIDs: p.ids, Payloads: payloads}
	case targetGroup:
		m, key = svcproto.GroupBroadcastData{Group: p.name, Payloads: payloads}, p.name
	case targetGroupExcept:
		m, key = svcproto.GroupBroadcastData{Group: p.name, ExcludedConnections: p.ids, Payloads: payloads}, p.name
	case targetOthersInGroup:
		m, key = svcproto.GroupBroadcastData{Group: p.name, ExcludedConnections: []string{scope.id}, Payloads: payloads}, p.name
	case targetGroups:
		m = svcproto.MultiGroupBroadcastData{Groups: p.ids, Payloads: payloads}
	default:
		return fmt.Errorf("appserver: send %q: unknown target %d", method, p.kind)
	}
	return h.writeAny(ctx, scope, key, m)
}

// sendConnection is ServiceLifetimeManager.SendConnectionAsync: a client of this process gets a
// single-protocol MultiConnectionData on its own socket; any other a full one on any socket.
func (h *hubRuntime) sendConnection(ctx context.Context, scope *clientConn, id, method string, args []any) error {
	if cc := h.client(id); cc != nil {
		if codec := h.codecFor(cc.extProtocol); codec != nil {
			payloads, err := h.payloads(method, args, codec)
			if err != nil {
				return err
			}
			m := svcproto.MultiConnectionData{ConnectionIDs: []string{id}, Payloads: payloads}
			err = cc.send(ctx, m)
			if errors.Is(err, ErrNotConnected) {
				// Fall back to any socket (the service may have moved the client).
				return h.writeAny(ctx, scope, id, m)
			}
			return err
		}
	}
	payloads, err := h.payloads(method, args, nil)
	if err != nil {
		return err
	}
	return h.writeAny(ctx, scope, id, svcproto.MultiConnectionData{ConnectionIDs: []string{id}, Payloads: payloads})
}

// Groups manages connection group membership (IGroupManager) with JoinGroupWithAck /
// LeaveGroupWithAck.
type Groups struct {
	h      *hubRuntime
	caller *clientConn
}

// Add adds a connection to a group and waits for the service's Ack. Like ASP.NET Core it
// ignores whether the connection existed (Ok and NotFound both return nil); a missing or
// Timeout/InternalServerError Ack returns an error wrapping ErrAckTimeout.
func (g *Groups) Add(ctx context.Context, connectionID, group string) error {
	st, id, err := g.add(ctx, connectionID, group)
	return ackOutcome("JoinGroupWithAck", st, id, err)
}

// Remove removes a connection from a group; results as for Add.
func (g *Groups) Remove(ctx context.Context, connectionID, group string) error {
	st, id, err := g.remove(ctx, connectionID, group)
	return ackOutcome("LeaveGroupWithAck", st, id, err)
}

// AddWithStatus is Add returning the Ack's status (AckOK, AckNotFound, ...). err is non-nil only
// when no Ack arrived (write failure, ErrAckTimeout, ctx).
func (g *Groups) AddWithStatus(ctx context.Context, connectionID, group string) (AckStatus, error) {
	st, _, err := g.add(ctx, connectionID, group)
	return st, err
}

// RemoveWithStatus is Remove returning the Ack's status.
func (g *Groups) RemoveWithStatus(ctx context.Context, connectionID, group string) (AckStatus, error) {
	st, _, err := g.remove(ctx, connectionID, group)
	return st, err
}

// RemoveFromAll removes a connection from every group (LeaveGroupWithAck with a nil group, as
// the Management SDK sends).
func (g *Groups) RemoveFromAll(ctx context.Context, connectionID string) error {
	if connectionID == "" {
		return fmt.Errorf("appserver: remove from all groups: connection id: %w", ErrInvalidArgument)
	}
	st, id, err := g.h.writeAck(ctx, g.caller, "", "LeaveGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.LeaveGroupWithAck{ConnectionID: connectionID, AckID: ackID}
	})
	return ackOutcome("LeaveGroupWithAck", st, id, err)
}

func (g *Groups) add(ctx context.Context, connectionID, group string) (AckStatus, int, error) {
	if connectionID == "" || group == "" {
		return 0, 0, fmt.Errorf("appserver: add to group: %w", ErrInvalidArgument)
	}
	return g.h.writeAck(ctx, g.caller, group, "JoinGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.JoinGroupWithAck{ConnectionID: connectionID, Group: group, AckID: ackID}
	})
}

func (g *Groups) remove(ctx context.Context, connectionID, group string) (AckStatus, int, error) {
	if connectionID == "" || group == "" {
		return 0, 0, fmt.Errorf("appserver: remove from group: %w", ErrInvalidArgument)
	}
	return g.h.writeAck(ctx, g.caller, group, "LeaveGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.LeaveGroupWithAck{ConnectionID: connectionID, Group: group, AckID: ackID}
	})
}

// ackOutcome ignores Ok/NotFound like the ASP.NET Core group APIs and maps the rest.
func ackOutcome(op string, st AckStatus, id int, err error) error {
	if err != nil {
		return err
	}
	switch st {
	case AckOK, AckNotFound:
		return nil
	}
	return fmt.Errorf("appserver: %w", ackError(op, id, st))
}

// UserGroups manages user group membership (the Management SDK's IUserGroupManager).
type UserGroups struct {
	h      *hubRuntime
	caller *clientConn
}

// Add adds every connection of a user to a group, now and later, until ttl passes
// (UserJoinGroupWithAck; ttl 0 means no expiry, negative is an error). Ok and NotFound return nil.
func (u *UserGroups) Add(ctx context.Context, userID, group string, ttl time.Duration) error {
	if userID == "" || group == "" {
		return fmt.Errorf("appserver: add user to group: %w", ErrInvalidArgument)
	}
	if ttl < 0 {
		return fmt.Errorf("appserver: add user to group: Ttl cannot be less than 0: %w", ErrInvalidArgument)
	}
	var ext svcproto.Ext
	if ttl > 0 {
		ext = svcproto.Ext{TTL: int32(ttl / time.Second), HasTTL: true}
	}
	st, id, err := u.h.writeAck(ctx, u.caller, group, "UserJoinGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.UserJoinGroupWithAck{UserID: userID, Group: group, AckID: ackID, Ext: ext}
	})
	return ackOutcome("UserJoinGroupWithAck", st, id, err)
}

// Remove removes a user from a group (UserLeaveGroupWithAck).
func (u *UserGroups) Remove(ctx context.Context, userID, group string) error {
	if userID == "" || group == "" {
		return fmt.Errorf("appserver: remove user from group: %w", ErrInvalidArgument)
	}
	st, id, err := u.h.writeAck(ctx, u.caller, group, "UserLeaveGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.UserLeaveGroupWithAck{UserID: userID, Group: group, AckID: ackID}
	})
	return ackOutcome("UserLeaveGroupWithAck", st, id, err)
}

// RemoveFromAll removes a user from every group (UserLeaveGroupWithAck with a nil group).
func (u *UserGroups) RemoveFromAll(ctx context.Context, userID string) error {
	if userID == "" {
		return fmt.Errorf("appserver: remove user from all groups: %w", ErrInvalidArgument)
	}
	st, id, err := u.h.writeAck(ctx, u.caller, "", "UserLeaveGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.UserLeaveGroupWithAck{UserID: userID, AckID: ackID}
	})
	return ackOutcome("UserLeaveGroupWithAck", st, id, err)
}

// IsUserInGroup asks the service (CheckUserInGroupWithAck): Ok → true, NotFound → false.
func (u *UserGroups) IsUserInGroup(ctx context.Context, userID, group string) (bool, error) {
	if userID == "" || group == "" {
		return false, fmt.Errorf("appserver: is user in group: %w", ErrInvalidArgument)
	}
	return u.h.ackBool(ctx, u.caller, group, "CheckUserInGroupWithAck", func(ackID int) svcproto.Message {
		return svcproto.CheckUserInGroupWithAck{UserID: userID, Group: group, AckID: ackID}
	})
}

// ConnectionExists asks the service whether a connection exists (CheckConnectionExistenceWithAck).
func (hc *HubContext) ConnectionExists(ctx context.Context, connectionID string) (bool, error) {
	if connectionID == "" {
		return false, fmt.Errorf("appserver: connection exists: %w", ErrInvalidArgument)
	}
	return hc.h.ackBool(ctx, nil, "", "CheckConnectionExistenceWithAck", func(ackID int) svcproto.Message {
		return svcproto.CheckConnectionExistenceWithAck{ConnectionID: connectionID, AckID: ackID}
	})
}

// UserExists asks whether a user has connections (CheckUserExistenceWithAck).
func (hc *HubContext) UserExists(ctx context.Context, userID string) (bool, error) {
	if userID == "" {
		return false, fmt.Errorf("appserver: user exists: %w", ErrInvalidArgument)
	}
	return hc.h.ackBool(ctx, nil, userID, "CheckUserExistenceWithAck", func(ackID int) svcproto.Message {
		return svcproto.CheckUserExistenceWithAck{UserID: userID, AckID: ackID}
	})
}

// GroupExists asks whether a group has members (CheckGroupExistenceWithAck).
func (hc *HubContext) GroupExists(ctx context.Context, group string) (bool, error) {
	if group == "" {
		return false, fmt.Errorf("appserver: group exists: %w", ErrInvalidArgument)
	}
	return hc.h.ackBool(ctx, nil, group, "CheckGroupExistenceWithAck", func(ackID int) svcproto.Message {
		return svcproto.CheckGroupExistenceWithAck{Group: group, AckID: ackID}
	})
}

// CloseConnection closes a client connection. A connection of this process is aborted like
// Context.Abort (close message with reason as its error, OnDisconnected, CloseConnection); any
// other is closed by sending CloseConnection(id, reason) to the service. It does not wait.
func (hc *HubContext) CloseConnection(ctx context.Context, connectionID, reason string) error {
	if connectionID == "" {
		return fmt.Errorf("appserver: close connection: %w", ErrInvalidArgument)
	}
	if cc := hc.h.client(connectionID); cc != nil {
		cc.abort(&reason)
		return nil
	}
	return hc.h.writeAny(ctx, nil, connectionID, svcproto.CloseConnection{ConnectionID: connectionID, ErrorMessage: reason})
}

// CloseUserConnections closes every connection of a user except the excluded ones
// (CloseUserConnectionsWithAck) and waits for the Ack.
func (hc *HubContext) CloseUserConnections(ctx context.Context, userID, reason string, excludedConnectionIDs ...string) error {
	if userID == "" {
		return fmt.Errorf("appserver: close user connections: %w", ErrInvalidArgument)
	}
	st, id, err := hc.h.writeAck(ctx, nil, userID, "CloseUserConnectionsWithAck", func(ackID int) svcproto.Message {
		return svcproto.CloseUserConnectionsWithAck{UserID: userID, Reason: reason, AckID: ackID, ExcludedConnections: excludedConnectionIDs}
	})
	return ackOutcome("CloseUserConnectionsWithAck", st, id, err)
}

// CloseGroupConnections closes every connection in a group except the excluded ones
// (CloseGroupConnectionsWithAck) and waits for the Ack.
func (hc *HubContext) CloseGroupConnections(ctx context.Context, group, reason string, excludedConnectionIDs ...string) error {
	if group == "" {
		return fmt.Errorf("appserver: close group connections: %w", ErrInvalidArgument)
	}
	st, id, err := hc.h.writeAck(ctx, nil, group, "CloseGroupConnectionsWithAck", func(ackID int) svcproto.Message {
		return svcproto.CloseGroupConnectionsWithAck{Group: group, Reason: reason, AckID: ackID, ExcludedConnections: excludedConnectionIDs}
	})
	return ackOutcome("CloseGroupConnectionsWithAck", st, id, err)
}

// Connected reports whether the hub has at least one usable socket (the endpoint is online).
func (hc *HubContext) Connected() bool { return hc.h.activeCount.Load() > 0 }
