package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/transport"
)

// errLinkClosed is returned when sending on an app-server link that has gone away.
var errLinkClosed = errors.New("server: app-server link closed")

// link is one WebSocket from an app server (one of the SDK's "server connections").
type link struct {
	in             *instance
	hub            *hubState
	server         *appServer // set by hubState.addLink
	cid            string
	serverID       string
	connType       svcproto.ConnectionType
	migrationLevel int
	// modernExt: the SDK sent a 7-element handshake (>= 1.26) and can skip unknown ext keys.
	modernExt bool
	stateful  bool
	out       *transport.Outbox
	log       *slog.Logger
	lastRead  atomic.Int64 // unix nanos of the last received bytes
	goingAway atomic.Bool  // the node is shutting down: close the socket cleanly (drain.go)

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	clients map[string]*client
	relayed map[string]*relayed // clients of other nodes bound here (cluster_relay.go)
	closed  bool
}

func (l *link) bindRelayed(r *relayed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.relayed == nil {
		l.relayed = map[string]*relayed{}
	}
	l.relayed[r.id] = r
}

func (l *link) unbindRelayed(r *relayed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.relayed[r.id] == r {
		delete(l.relayed, r.id)
	}
}

func (l *link) bind(c *client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clients[c.id] = c
}

func (l *link) unbind(c *client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[c.id] == c {
		delete(l.clients, c.id)
	}
}

func (l *link) clientCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients) + len(l.relayed)
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// sendControl queues a service message without waiting (acks, pings, close notices).
func (l *link) sendControl(m svcproto.Message) {
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		l.log.Error("encode service message", "type", m.Type(), "err", err)
		return
	}
	l.out.Push(f)
}

// sendData queues client data, waiting while the link is congested.
func (l *link) sendData(ctx context.Context, m svcproto.Message) error {
	f, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return fmt.Errorf("encode %v: %w", m.Type(), err)
	}
	if err := l.out.PushWait(ctx, linkBackpressure, f); err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return errLinkClosed
		}
		return err
	}
	return nil
}

func (s *Server) handleServer(w http.ResponseWriter, r *http.Request, in *instance) {

	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		textError(w, http.StatusMethodNotAllowed, "Method not allowed: app servers connect with a WebSocket GET.")
		return
	}
	hub, ok := hubParam(w, r)
	if !ok {
		return
	}
	if !isWebSocketUpgrade(r) {
		textError(w, http.StatusBadRequest, "App servers must connect with a WebSocket upgrade.")
		return
	}
	tok, ok := in.verify(w, r, auth.KindServer, hub)
	if !ok {
		return
	}
	cid := r.URL.Query().Get("cid")
	if cid == "" {
		cid = newID()
	}
	serverID := r.Header.Get("X-ASRS-Server-Id")
	if serverID == "" {
		serverID, _ = tok.Claim("nameid")
	}
	if serverID == "" {
		serverID = cid
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		in.log.Debug("server websocket accept failed", "err", err)
		return
	}
	ws.SetReadLimit(-1)
	h := in.hub(hub)
	l := &link{
		in: in, hub: h, cid: cid, serverID: serverID,
		out:     transport.NewOutbox(0),
		log:     in.log.With("component", "link", "hub", hub, "server_id", serverID, "cid", cid),
		clients: map[string]*client{},
	}
	l.ctx, l.cancel = context.WithCancel(s.ctx)
	defer l.cancel()
	l.lastRead.Store(time.Now().UnixNano())
	s.runLink(l, ws)
}

// runLink performs the service handshake and then relays until the link ends.
func (s *Server) runLink(l *link, ws *websocket.Conn) {
	in := l.in
	reader := &svcproto.Reader{Max: 16 * in.settings().MaxMessageSize}
	// The SDK sends its HandshakeRequest at once and waits 15 s for ours; mirror that bound.
	hsCtx, hsCancel := context.WithTimeout(l.ctx, 15*time.Second)
	var hs svcproto.HandshakeRequest
	errGot := errors.New("got handshake")
	err := readStream(hsCtx, ws, func(p []byte) error {
		reader.Write(p)
		m, err := reader.Next()
		if errors.Is(err, protocol.ErrIncomplete) {
			return nil
		}
		if err != nil {
			return err
		}
		req, ok := m.(svcproto.HandshakeRequest)
		if !ok {
			return fmt.Errorf("expected a HandshakeRequest first, got %v", m.Type())
		}
		hs = req
		return errGot
	})
	hsCancel()
	if !errors.Is(err, errGot) {
		l.log.Info("app server handshake failed", "err", err)
		ws.CloseNow()
		return
	}
	reply := func(m svcproto.Message) {
		f, _ := svcproto.AppendFrame(nil, m)
		wctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
		defer cancel()
		_ = ws.Write(wctx, websocket.MessageBinary, f)
	}
	if hs.Version != 1 {
		reply(svcproto.HandshakeResponse{ErrorMessage: "Version mismatch."})
		_ = ws.Close(websocket.StatusNormalClosure, "")
		return
	}
	if in.settings().Mode == ModeServerless && hs.ConnectionType != svcproto.ConnWeak {
		reply(svcproto.HandshakeResponse{ErrorMessage: "The service is in Serverless mode: app server connections cannot carry clients. Use Default mode, or connect with a Weak (Management SDK) connection."})
		_ = ws.Close(websocket.StatusNormalClosure, "")
		return
	}
	l.connType = hs.ConnectionType
	l.migrationLevel = hs.MigrationLevel
	l.modernExt = hs.Fields >= 7
	l.stateful = hs.AllowStatefulReconnect
	// Register before answering: once the SDK sees the response it may negotiate clients. Anything
	// queued for the link meanwhile waits in the outbox, behind the response written here.
	if l.hub.addLink(l) {
		// The other nodes find app servers in the registry: there too before the answer, or a
		// client negotiating on another node right after would find no server (or not the one
		// its sticky token requires).
		in.cl.announceServerNow(l.ctx, l.hub.id, l.serverID)
	}
	in.srv.metrics.serverSockets.WithLabelValues(in.name).Inc()
	defer in.srv.metrics.serverSockets.WithLabelValues(in.name).Dec()
	reply(svcproto.HandshakeResponse{ConnectionID: l.cid})
	l.log.Info("app server connected", "type", l.connType)
	s.traceLink(traceServerConnected, l, 0)

	keepAlive, _ := svcproto.AppendFrame(nil, svcproto.Ping{})
	pumpDone := make(chan struct{})
	s.goConn(func() {
		defer close(pumpDone)
		err := transport.Pump(l.ctx, l.out, in.met.toServer.counting(&transport.WSWriter{Conn: ws, Type: websocket.MessageBinary}),
			transport.PumpOptions{KeepAlive: in.settings().ServerKeepAlive, KeepAliveFrame: keepAlive})
		if err != nil && !errors.Is(err, context.Canceled) {
			l.log.Info("app server write failed", "err", err)
		}
		l.cancel()
	})
	s.goConn(func() { l.watchdog(ws) })

	msgs, bytes := in.met.fromServer.msgs, in.met.fromServer.bytes
	err = readStream(l.ctx, ws, func(p []byte) error {
		l.lastRead.Store(time.Now().UnixNano())
		bytes.Add(float64(len(p)))
		reader.Write(p)
		for {
			m, err := reader.Next()
			if errors.Is(err, protocol.ErrIncomplete) {
				return nil
			}
			if err != nil {
				return err
			}
			msgs.Inc()
			l.dispatch(m)
		}
	})
	if !errors.Is(err, context.Canceled) && websocket.CloseStatus(err) == -1 {
		l.log.Info("app server link lost", "err", err)
		if errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, svcproto.ErrMalformed) {
			reply(svcproto.ServiceError{ErrorMessage: err.Error()})
		}
	}
	l.shutdown()
	l.closeSocket(ws, pumpDone)
}

// watchdog closes a link that has been silent longer than the server timeout.
func (l *link) watchdog(ws *websocket.Conn) {
	timeout := l.in.settings().ServerTimeout
	t := time.NewTicker(min(timeout/6, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, l.lastRead.Load())) > timeout {
				l.log.Info("app server link timed out", "timeout", timeout)
				l.cancel()
				ws.CloseNow()
				return
			}
		}
	}
}

// shutdown unregisters the link and closes the clients it carried: the SDK drops every client
// of a lost socket, so they must reconnect (through another server if there is one).
func (l *link) shutdown() {
	l.mu.Lock()
	l.closed = true
	clients := make([]*client, 0, len(l.clients))
	for _, c := range l.clients {
		clients = append(clients, c)
	}
	stubs := make([]*relayed, 0, len(l.relayed))
	for _, r := range l.relayed {
		stubs = append(stubs, r)
	}
	l.mu.Unlock()
	for _, r := range stubs {
		l.in.cl.dropRelay(r, true)
	}
	l.cancel()
	l.out.Discard()
	l.hub.removeLink(l)
	for _, c := range clients {
		c.appClosed.Store(true) // nobody to tell
		c.closeWith(closeReasonServerLost, reasonServerLost, true)
	}
	l.in.failInvocationsVia(l)
	l.log.Info("app server disconnected", "clients_closed", len(clients))
	l.in.srv.traceLink(traceServerDisconnected, l, len(clients))
}

// pingReply answers the ping keys of service-protocol §2.3.
func (l *link) onPing(p svcproto.Ping) {
	if _, ok := p.Get("echo"); ok {
		l.sendControl(p)
		return
	}
	if v, ok := p.Get("shutdown"); ok {
		if strings.HasPrefix(v, "fin") && v != "finack" {
			l.onShutdown(v)
		}
		return
	}
	if _, ok := p.Get("status"); ok {
		// "1" keeps the SDK's endpoint active; the count helps its endpoint metrics.
		l.sendControl(svcproto.Ping{Values: []string{"status", "1", "clientcount", fmt.Sprint(l.hub.conn.Count())}})
		return
	}
	if _, ok := p.Get("servers"); ok {
		l.sendControl(svcproto.Ping{Values: []string{"servers", fmt.Sprintf("%d:%s", time.Now().UnixMilli(), strings.Join(l.hub.serverIDs(), ";"))}})
	}
}
