package appserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// svcConn is one server connection (ServiceConnection): a WebSocket to the service that carries
// client connections of one hub.
type svcConn struct {
	h      *hubRuntime
	cid    string
	ws     *websocket.Conn
	ctx    context.Context // cancelled when the socket is finished
	cancel context.CancelFunc

	// wlock serializes writes; a channel so a writer can give up when its context ends and the
	// keep-alive ping can skip a busy socket (_writeLock.Wait(0)).
	wlock chan struct{}

	active   atomic.Bool  // writable: connected, no ServiceError, not offline
	lastRecv atomic.Int64 // srv.now() of the last received WebSocket message
	lastPing atomic.Int64 // srv.now() of the last keep-alive ping

	finackOnce sync.Once
	finack     chan struct{} // closed on ["shutdown","finack"]
	done       chan struct{} // closed when the read loop has ended

	clients map[string]*clientConn // bound clients ("#client" count); guarded by h.mu
}

// connectAndServe dials, performs the service handshake and serves the socket until it ends.
// It reports whether the handshake succeeded.
func (h *hubRuntime) connectAndServe(ctx context.Context) bool {
	s := h.srv
	cid := newUUID()
	log := h.log.With("cid", cid)
	token, err := auth.IssueToken(s.cs.AccessKey, auth.IssueOptions{
		Audience:  s.cs.ServerAudience(h.id),
		Lifetime:  s.opts.AccessTokenLifetime,
		Algorithm: s.opts.Algorithm,
		Claims:    auth.ServerClaims(s.opts.ServerID),
	})
	if err != nil {
		log.Error("cannot issue server token", "error", err)
		return false
	}
	hdr := http.Header{}
	// Set directly, not with Header.Set, to keep the SDK's spelling "X-ASRS-Server-Id" on the wire.
	hdr["Authorization"] = []string{"Bearer " + token}
	hdr["X-ASRS-Server-Id"] = []string{s.opts.ServerID}
	hdr["Asrs-User-Agent"] = []string{s.opts.UserAgent}
	hdr["X-Requested-With"] = []string{"XMLHttpRequest"}

	hctx, hcancel := context.WithTimeout(ctx, s.opts.Timing.Handshake)
	defer hcancel()
	u := s.cs.ServerURL(h.id, cid)
	ws, resp, err := websocket.Dial(hctx, u, &websocket.DialOptions{
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			log.Warn("service rejected the server token (401)", "error", err)
		} else if ctx.Err() == nil {
			log.Warn("cannot connect to the service", "url", u, "error", err)
		}
		return false
	}
	ws.SetReadLimit(-1)

	c := &svcConn{
		h:       h,
		cid:     cid,
		ws:      ws,
		wlock:   make(chan struct{}, 1),
		finack:  make(chan struct{}),
		done:    make(chan struct{}),
		clients: make(map[string]*clientConn),
	}
	var rd svcproto.Reader
	if err := c.handshake(hctx, &rd); err != nil {
		if ctx.Err() == nil {
			log.Warn("service handshake failed", "error", err)
		}
		_ = ws.Close(websocket.StatusNormalClosure, "")
		return false
	}
	hcancel()
	log.Debug("service connection connected")

	c.ctx, c.cancel = context.WithCancel(ctx)
	now := s.now()
	c.lastRecv.Store(now)
	c.lastPing.Store(now)
	c.active.Store(true)
	h.addConn(c)
	s.wg.Go(c.keepAliveLoop)
	c.serve(&rd)
	return true
}

// handshake sends the 7-element HandshakeRequest and requires a HandshakeResponse as the first
// message (ServiceConnectionBase.HandshakeAsync).
func (c *svcConn) handshake(ctx context.Context, rd *svcproto.Reader) error {
	o := c.h.srv.opts
	req, err := svcproto.AppendFrame(nil, svcproto.HandshakeRequest{
		Version:                1,
		ConnectionType:         svcproto.ConnDefault,
		MigrationLevel:         o.MigrationLevel,
		AllowStatefulReconnect: o.AllowStatefulReconnects,
		Fields:                 7,
	})
	if err != nil {
		return fmt.Errorf("encode handshake request: %w", err)
	}
	if err := c.ws.Write(ctx, websocket.MessageBinary, req); err != nil {
		return fmt.Errorf("send handshake request: %w", err)
	}
	for {
		m, err := rd.Next()
		if errors.Is(err, protocol.ErrIncomplete) {
			_, data, err := c.ws.Read(ctx)
			if err != nil {
				return fmt.Errorf("service disconnected before sending a handshake response: %w", err)
			}
			rd.Write(data)
			continue
		}
		if err != nil {
			return fmt.Errorf("read handshake response: %w", err)
		}
		resp, ok := m.(svcproto.HandshakeResponse)
		if !ok {
			return fmt.Errorf("%v received when waiting for handshake response", m.Type())
		}
		if resp.ErrorMessage != "" {
			return fmt.Errorf("service rejected the handshake: %s", resp.ErrorMessage)
		}
		return nil
	}
}

// serve is ProcessIncomingAsync: read, note liveness, maybe ping, dispatch. When it returns the
// socket is closed and its clients are disconnected (CleanupClientConnections).
func (c *svcConn) serve(rd *svcproto.Reader) {
	h := c.h
	defer func() {
		c.active.Store(false)
		h.removeConn(c)
		c.cancel()
		_ = c.ws.CloseNow()
		close(c.done)
		c.cleanupClients("", true)
	}()
	for {
		for {
			m, err := rd.Next()
			if errors.Is(err, protocol.ErrIncomplete) {
				break
			}
			if err != nil {
				if errors.Is(err, svcproto.ErrMalformed) {
					// The SDK logs and skips a malformed frame.
					h.log.Warn("malformed service message skipped", "cid", c.cid, "error", err)
					continue
				}
				h.log.Warn("service stream broken", "cid", c.cid, "error", err)
				return
			}
			c.dispatch(m)
		}
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil && websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				h.log.Info("service connection dropped", "cid", c.cid, "error", err)
			}
			return
		}
		c.lastRecv.Store(h.srv.now())
		// "No matter what kind of message come in, trigger send ping check."
		c.trySendPing()
		rd.Write(data)
	}
}

// keepAliveLoop closes the socket when nothing was received for Timing.ServiceTimeout.
func (c *svcConn) keepAliveLoop() {
	s := c.h.srv
	t := time.NewTicker(s.opts.Timing.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if time.Duration(s.now()-c.lastRecv.Load()) > s.opts.Timing.ServiceTimeout {
				c.h.log.Warn("service timeout: nothing received", "cid", c.cid, "timeout", s.opts.Timing.ServiceTimeout)
				c.active.Store(false)
				c.h.removeConn(c)
				_ = c.ws.Close(websocket.StatusNormalClosure, "")
				c.cancel()
				return
			}
		}
	}
}

// trySendPing sends the keep-alive ping [3,"#clientInHub",n,"#client",m] if the last one is older
// than Timing.KeepAlive, skipping it when another write holds the socket.
func (c *svcConn) trySendPing() {
	s := c.h.srv
	now := s.now()
	if time.Duration(now-c.lastPing.Load()) <= s.opts.Timing.KeepAlive {
		return
	}
	select {
	case c.wlock <- struct{}{}:
	default:
		return
	}
	defer func() { <-c.wlock }()
	c.h.mu.Lock()
	onSocket := len(c.clients)
	c.h.mu.Unlock()
	buf, err := svcproto.AppendFrame(nil, svcproto.Ping{Values: []string{
		"#clientInHub", strconv.FormatInt(s.clientCount.Load(), 10),
		"#client", strconv.Itoa(onSocket),
	}})
	if err != nil {
		return
	}
	if err := c.writeLocked(buf); err != nil {
		c.h.log.Debug("keep-alive ping failed", "cid", c.cid, "error", err)
		return
	}
	c.lastPing.Store(now)
}

// usable reports whether writes may be routed to the socket.
func (c *svcConn) usable() bool { return c.active.Load() }

// send encodes and writes m (SafeWriteAsync).
func (c *svcConn) send(ctx context.Context, m svcproto.Message) error {
	buf, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return fmt.Errorf("appserver: encode %v: %w", m.Type(), err)
	}
	return c.sendFrame(ctx, buf)
}

// sendFrame writes one framed message as one binary WebSocket message. It fails with
// ErrNotConnected when the socket is not writable; ctx only bounds the wait for the write lock
// (a cancelled context must not tear down a socket shared by many clients).
func (c *svcConn) sendFrame(ctx context.Context, buf []byte) error {
	if !c.active.Load() {
		return ErrNotConnected
	}
	select {
	case c.wlock <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.ctx.Done():
		return ErrNotConnected
	}
	defer func() { <-c.wlock }()
	if !c.active.Load() {
		return ErrNotConnected
	}
	return c.writeLocked(buf)
}

// writeLocked writes with the write lock held.
func (c *svcConn) writeLocked(buf []byte) error {
	wctx, cancel := context.WithTimeout(c.ctx, c.h.srv.opts.Timing.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageBinary, buf); err != nil {
		c.active.Store(false)
		c.h.removeConn(c)
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	return nil
}

// dispatch handles one message from the service (ServiceConnection.DispatchMessageAsync).
func (c *svcConn) dispatch(m svcproto.Message) {
	h := c.h
	switch m := m.(type) {
	case svcproto.Ping:
		c.onPing(m)
	case svcproto.OpenConnection:
		h.openClient(c, m)
	case svcproto.CloseConnection:
		h.closeClientFromService(m)
	case svcproto.ConnectionData:
		if cc := h.client(m.ConnectionID); cc != nil {
			cc.receive(m.Payload, m.Ext.IsPartial)
		} else {
			h.log.Debug("data for unknown connection dropped", "conn_id", m.ConnectionID)
		}
	case svcproto.ConnectionReconnect:
		if cc := h.client(m.ConnectionID); cc != nil {
			cc.clearPartial()
		}
	case svcproto.Ack:
		h.srv.acks.resolve(m.AckID, m.Status)
	case svcproto.ServiceError:
		if m.ErrorMessage != "" {
			// Stop writing, keep reading: the service closes the socket when it is done.
			h.log.Warn("service error", "cid", c.cid, "message", m.ErrorMessage)
			c.active.Store(false)
			h.removeConn(c)
		}
	case svcproto.ConnectionFlowControl:
		c.onFlowControl(m)
	case svcproto.ClientInvocation:
		// Router role: remember who invoked, so the client's completion can be routed back.
		if cc := h.client(m.ConnectionID); cc != nil {
			cc.addRoutedInvocation(m.InvocationID, m.CallerServerID)
		}
	case svcproto.ClientCompletion:
		// Caller role: a client hosted by another server answered (OnClientCompletionAsync).
		h.srv.results.completeRemote(m)
	case svcproto.ErrorCompletion:
		h.srv.results.fail(m.InvocationID, m.ConnectionID, &HubError{Message: m.Error})
	case svcproto.ServiceEvent:
		h.log.Info("service event", "object_type", m.ObjectType, "id", m.ID, "kind", m.Kind, "message", m.Message)
	case svcproto.HandshakeResponse:
		h.log.Debug("unexpected handshake response ignored", "cid", c.cid)
	default:
		// AccessKeyResponse, and ServiceMapping (only used to fail invocations on an "offline"
		// ping naming a service instance; a single-endpoint SDK has no instance to name).
	}
}

// onPing reacts to service pings in the SDK's order: echo, offline, finack, then container keys.
func (c *svcConn) onPing(p svcproto.Ping) {
	if _, ok := p.Get("echo"); ok {
		if err := c.send(c.ctx, p); err != nil {
			c.h.log.Debug("echo failed", "cid", c.cid, "error", err)
		}
		return
	}
	if inst, ok := p.Get("offline"); ok {
		c.h.log.Info("service instance offline", "cid", c.cid, "instance", inst)
		c.cleanupClients(inst, false)
		return
	}
	if v, ok := p.Get("shutdown"); ok && v == "finack" {
		c.finackOnce.Do(func() { close(c.finack) })
		return
	}
	// status / servers / clientcount / servercount / capacity / d-m / target: informational for
	// a single-endpoint server (on-demand "target" sockets are not opened).
}

func (c *svcConn) onFlowControl(m svcproto.ConnectionFlowControl) {
	h := c.h
	switch m.Target {
	case svcproto.FlowServer:
		if m.ConnectionID == c.cid && m.Op == svcproto.FlowOffline {
			h.log.Info("service connection set offline", "cid", c.cid)
			c.active.Store(false)
			h.removeConn(c)
		}
	case svcproto.FlowClient:
		cc := h.client(m.ConnectionID)
		if cc == nil {
			return
		}
		switch m.Op {
		case svcproto.FlowPause:
			h.srv.wg.Go(cc.pauseAndAck)
		case svcproto.FlowResume:
			cc.resumeOn(c)
		}
	}
}

// cleanupClients disconnects the clients bound to this socket, or only those whose
// Asrs-Instance-Id is inst (the "offline" ping; "" means all).
func (c *svcConn) cleanupClients(inst string, all bool) {
	h := c.h
	h.mu.Lock()
	var gone []*clientConn
	for id, cc := range c.clients {
		if all || inst == "" || cc.instanceID == inst {
			gone = append(gone, cc)
			delete(c.clients, id)
			delete(h.clients, id)
		}
	}
	h.mu.Unlock()
	for _, cc := range gone {
		cc.push(event{kind: evLinkLost})
	}
}

// closeGracefully closes the socket with 1000 (Close / end of Shutdown) and waits for its reader.
func (c *svcConn) closeGracefully() {
	c.active.Store(false)
	c.h.removeConn(c)
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	c.cancel()
	<-c.done
}

// offline is RemoveConnectionAsync: send ["shutdown", fin] and wait for finack or the socket's
// end, re-sending every FinAckAttempt, at most 24 times, bounded by ctx.
func (c *svcConn) offline(ctx context.Context, fin string) {
	s := c.h.srv
	for range 24 {
		if ctx.Err() != nil {
			return
		}
		if err := c.send(ctx, svcproto.Ping{Values: []string{"shutdown", fin}}); err != nil {
			c.h.log.Debug("shutdown ping failed", "cid", c.cid, "error", err)
		}
		t := time.NewTimer(s.opts.Timing.FinAckAttempt)
		select {
		case <-c.finack:
			t.Stop()
			return
		case <-c.done:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	c.h.log.Warn("timed out waiting for finack", "cid", c.cid)
}
