package server

import (
	"slices"
	"sync"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Header names the SDK reads on migrated connections (Constants.cs).
const (
	headerMigrateFrom = "Asrs-Migrate-From"
	headerMigrateTo   = "Asrs-Migrate-To"
)

// migration tracks a server's MigrateClients shutdown: the first "shutdown fin:1" starts it,
// every fin of that server is acknowledged once it is over.
type migration struct {
	once sync.Once
	done chan struct{}
}

// onShutdown handles "shutdown fin:N" from a link: the server gets no new clients; with
// MigrateClients (fin:1, and the SDK announced migration in its handshake) its clients move to
// other servers of the hub first. finack goes out when that is done.
func (l *link) onShutdown(value string) {
	h := l.hub
	h.drain(l.serverID)
	if value != "fin:1" || l.migrationLevel < 1 {
		l.log.Info("app server is shutting down", "mode", value)
		l.sendControl(svcproto.Ping{Values: []string{"shutdown", "finack"}})
		return
	}
	m := h.migrationOf(l.serverID)
	m.once.Do(func() {
		l.in.srv.goConn(func() {
			defer close(m.done)
			moved, kept := h.migrateFrom(l.serverID)
			l.log.Info("app server is shutting down; clients migrated", "moved", moved, "kept", kept)
		})
	})
	l.in.srv.goConn(func() {
		select {
		case <-m.done:
			l.sendControl(svcproto.Ping{Values: []string{"shutdown", "finack"}})
		case <-l.ctx.Done():
		}
	})
}

func (h *hubState) migrationOf(serverID string) *migration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.migrations == nil {
		h.migrations = map[string]*migration{}
	}
	m := h.migrations[serverID]
	if m == nil {
		m = &migration{done: make(chan struct{})}
		h.migrations[serverID] = m
	}
	return m
}

// migrateFrom moves every client of a server to another server of the hub.
func (h *hubState) migrateFrom(serverID string) (moved, kept int) {
	for _, c := range h.clientsOfServer(serverID) {
		if c.migrate(serverID) {
			moved++
		} else {
			kept++
		}
	}
	if cl := h.cl(); cl != nil {
		moved += cl.migrateRelayed(h, serverID)
	}
	return moved, kept
}

func (h *hubState) clientsOfServer(serverID string) []*client {
	h.mu.Lock()
	s := h.servers[serverID]
	var links []*link
	if s != nil {
		links = slices.Clone(s.links)
	}
	h.mu.Unlock()
	var out []*client
	for _, l := range links {
		l.mu.Lock()
		for _, c := range l.clients {
			out = append(out, c)
		}
		l.mu.Unlock()
	}
	return out
}

// migrate moves one client to another app server without the client noticing
// (service-protocol §7): client data is held while the old server is told the client migrates
// away and the new one receives the same OpenConnection plus a synthesized handshake. Clients
// bound to their server (sticky Required) stay.
func (c *client) migrate(from string) bool {
	c.inMu.Lock() // pauses client -> server data; it resumes towards the new server
	defer c.inMu.Unlock()
	oldLink, oldRelay := c.link.Load(), c.relay.Load()
	oldID := c.appServerID()
	if c.done() || oldID == "" || oldID != from || c.codec == nil {
		return false
	}
	if mode, _ := c.auth.Sticky(); mode == auth.StickyRequired {
		return false
	}
	next, rt, err := c.hub.route(c.ctx, auth.StickyDisabled, "", oldID)
	if err != nil {
		return false
	}
	nextID := ""
	if next != nil {
		nextID = next.serverID
	} else {
		nextID = rt.serverID
	}
	bye := svcproto.CloseConnection{
		ConnectionID: c.id,
		Headers:      svcproto.Headers{{Name: headerMigrateTo, Values: []string{nextID}}},
	}
	if oldLink != nil {
		oldLink.sendControl(bye)
		oldLink.unbind(c)
		c.hub.released(oldLink)
		c.link.Store(nil)
	} else {
		f, _ := svcproto.AppendFrame(nil, bye)
		c.closeRelay(oldRelay, "", f)
		c.relay.Store(nil)
	}
	open := c.openMessage(oldID)
	hs := hubproto.AppendHandshakeRequest(nil, hubproto.HandshakeRequest{Protocol: c.protocol, Version: 1})
	if next != nil {
		next.bind(c)
		c.link.Store(next)
		err = next.sendData(c.ctx, open)
		if err == nil {
			err = next.sendData(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: hs})
		}
	} else {
		err = c.openRelay(rt, open, hs)
	}
	if err != nil {
		c.closeWith(closeReasonServerLost, reasonServerLost, true)
		return false
	}
	c.in.srv.metrics.migrations.WithLabelValues(c.in.name).Inc()
	return true
}
