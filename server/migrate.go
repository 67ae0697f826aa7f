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
		if c.migrate() {
			moved++
		} else {
			kept++
		}
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
func (c *client) migrate() bool {
	c.inMu.Lock() // pauses client -> server data; it resumes towards the new server
	defer c.inMu.Unlock()
	old := c.link.Load()
	if c.done() || old == nil || c.codec == nil {
		return false
	}
	if mode, _ := c.auth.Sticky(); mode == auth.StickyRequired {
		return false
	}
	next, err := c.hub.pick(auth.StickyDisabled, "")
	if err != nil || next.serverID == old.serverID {
		if err == nil {
			c.hub.released(next)
		}
		return false
	}
	old.sendControl(svcproto.CloseConnection{
		ConnectionID: c.id,
		Headers:      svcproto.Headers{{Name: headerMigrateTo, Values: []string{next.serverID}}},
	})
	old.unbind(c)
	c.hub.released(old)
	next.bind(c)
	c.link.Store(next)
	headers := append(slices.Clone(c.startReq.headers), svcproto.Header{Name: headerMigrateFrom, Values: []string{old.serverID}})
	open := svcproto.OpenConnection{
		ConnectionID: c.id,
		Claims:       toSvcClaims(auth.OpenConnectionClaims(c.auth)),
		Headers:      headers,
		QueryString:  c.startReq.query,
		Ext:          svcproto.Ext{Protocol: c.protocol},
	}
	err = next.sendData(c.ctx, open)
	if err == nil {
		hs := hubproto.AppendHandshakeRequest(nil, hubproto.HandshakeRequest{Protocol: c.protocol, Version: 1})
		err = next.sendData(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: hs})
	}
	if err != nil {
		c.closeWith(closeReasonServerLost, reasonServerLost, true)
		return false
	}
	c.in.srv.metrics.migrations.WithLabelValues(c.in.name).Inc()
	return true
}
