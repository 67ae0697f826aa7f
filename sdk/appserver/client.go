package appserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Texts ASP.NET Core puts in close messages and completions.
const (
	textConnectionClosedWithError = "Connection closed with an error."
	textClientTimeout             = "Client hasn't sent a message/ping within the configured ClientTimeoutInterval."
	textHandshakeError            = "An unexpected error occurred during connection handshake."
)

// Headers the SDK interprets in OpenConnection / CloseConnection (Constants.cs).
const (
	headerMigrateFrom = "Asrs-Migrate-From"
	headerMigrateTo   = "Asrs-Migrate-To"
	headerInstanceID  = "Asrs-Instance-Id"
)

type evKind uint8

const (
	evData             evKind = iota // client bytes (partial chunks already joined)
	evServiceClose                   // CloseConnection from the service
	evLinkLost                       // socket gone or "offline" ping: no writes possible
	evAbort                          // server-side close (Context.Abort, HubContext.CloseConnection)
	evTimeout                        // ClientTimeoutInterval elapsed
	evHandshakeTimeout               // HandshakeTimeout elapsed before the handshake
)

type event struct {
	kind      evKind
	data      []byte
	migrateTo string
	reason    string
}

// clientConn is a virtual client connection (ClientConnectionContext + HubConnectionContext):
// bytes from the service are queued by the socket reader and consumed by the connection's own
// goroutine, which runs the handshake and the hub; writes go to the socket the client is bound to.
type clientConn struct {
	h            *hubRuntime
	id           string
	instanceID   string
	migratedFrom string
	extProtocol  string // protocol from OpenConnection ext (the SDK's HubProtocol)
	hctx         *Context
	cancel       context.CancelFunc
	opened       int64

	lastRecv    atomic.Int64
	lastWrite   atomic.Int64
	handshaken  atomic.Bool // codec is set and the handshake response was written
	processing  atomic.Bool // a hub method runs: the client timeout is paused
	inHub       atomic.Bool // OnConnected or a hub method runs on the connection's goroutine
	timeoutOn   atomic.Bool // the client sent a Ping: ClientTimeoutInterval is enforced
	closing     atomic.Bool // a terminal event is queued: drop ordinary writes
	pinging     atomic.Bool
	hsTimedOut  atomic.Bool
	abortedOnce sync.Once
	aborted     chan struct{} // ConnectionAborted
	ended       chan struct{} // the connection's goroutine is done

	codec    hubproto.Codec    // written before handshaken is set; read by others after it
	splitter protocol.Splitter // owned by the connection goroutine

	mu        sync.Mutex
	queue     []event
	terminal  bool
	partial   []byte
	routed    map[string]string // client-result invocation id → caller server id
	migrateTo string            // Asrs-Migrate-To of the service's CloseConnection
	wake      chan struct{}

	outMu        sync.Mutex // serializes this client's outgoing frames; guards the fields below
	svc          *svcConn
	paused       bool
	resume       chan struct{}
	outCancelled bool // migrating away: the hub's output must not reach the client
}

// openClient handles OpenConnection (ServiceConnection.OnClientConnectedAsync).
func (h *hubRuntime) openClient(c *svcConn, m svcproto.OpenConnection) {
	cc := newClientConn(h, c, m)
	h.mu.Lock()
	if _, dup := h.clients[m.ConnectionID]; dup {
		h.mu.Unlock()
		h.log.Warn("duplicate OpenConnection ignored", "conn_id", m.ConnectionID)
		cc.cancel()
		return
	}
	h.clients[m.ConnectionID] = cc
	c.clients[m.ConnectionID] = cc
	h.mu.Unlock()
	h.srv.clientCount.Add(1)
	h.srv.wg.Go(cc.run)
}

// closeClientFromService handles CloseConnection (OnClientDisconnectedAsync): the client is gone;
// no CloseConnection is sent back.
func (h *hubRuntime) closeClientFromService(m svcproto.CloseConnection) {
	h.mu.Lock()
	cc := h.clients[m.ConnectionID]
	delete(h.clients, m.ConnectionID)
	h.mu.Unlock()
	if cc == nil {
		return
	}
	ev := event{kind: evServiceClose}
	if to := m.Headers.Get(headerMigrateTo); len(to) > 0 {
		ev.migrateTo = to[0]
		cc.mu.Lock()
		cc.migrateTo = to[0]
		cc.mu.Unlock()
		// Nothing the hub writes from now on may reach the client being migrated.
		cc.outMu.Lock()
		cc.outCancelled = true
		cc.outMu.Unlock()
	}
	// The SDK completes the connection's input after what it already received
	// (PerformDisconnectAsync → CompleteIncoming): the hub still processes the messages that
	// arrived before the close, which for a migrating client means nothing it sent is lost.
	cc.pushAfterData(ev)
}

func newClientConn(h *hubRuntime, c *svcConn, m svcproto.OpenConnection) *clientConn {
	s := h.srv
	cc := &clientConn{
		h:           h,
		id:          m.ConnectionID,
		extProtocol: m.Ext.Protocol,
		opened:      s.now(),
		aborted:     make(chan struct{}),
		ended:       make(chan struct{}),
		wake:        make(chan struct{}, 1),
		svc:         c,
	}
	if v := m.Headers.Get(headerInstanceID); len(v) > 0 {
		cc.instanceID = v[0]
	}
	if v := m.Headers.Get(headerMigrateFrom); len(v) > 0 {
		cc.migratedFrom = v[0]
	}
	hdr := make(http.Header, len(m.Headers))
	for _, x := range m.Headers {
		k := textproto.CanonicalMIMEHeaderKey(x.Name)
		hdr[k] = append(hdr[k], x.Values...)
	}
	query, _ := url.ParseQuery(strings.TrimPrefix(m.QueryString, "?"))
	claims, userID := principal(m.Claims)
	ctx, cancel := context.WithCancel(s.ctx)
	cc.cancel = cancel
	cc.hctx = &Context{
		Context:      ctx,
		ConnectionID: m.ConnectionID,
		UserID:       userID,
		Claims:       claims,
		Headers:      hdr,
		Query:        query,
		Path:         query.Get("asrs.op"),
		MigratedFrom: cc.migratedFrom,
		Clients:      &Clients{h: h, caller: cc},
		Groups:       &Groups{h: h, caller: cc},
		UserGroups:   &UserGroups{h: h, caller: cc},
		Hub:          h.hc,
		conn:         cc,
	}
	cc.lastRecv.Store(cc.opened)
	cc.lastWrite.Store(cc.opened)
	return cc
}

// principal rebuilds what ClaimsUtility.GetUserPrincipal gives the hub: system claims dropped,
// asrs.u.* restored. The user id is asrs.s.uid when present (ServiceUserIdFeature), else the
// principal's NameIdentifier (DefaultUserIdProvider).
func principal(in []svcproto.Claim) ([]auth.Claim, string) {
	var out []auth.Claim
	userID, hasUID := "", false
	for _, c := range in {
		switch {
		case c.Type == auth.ClaimUserID:
			if !hasUID {
				userID, hasUID = c.Value, true
			}
		case c.Type == auth.ClaimAuthenticationType || c.Type == auth.ClaimNameType || c.Type == auth.ClaimRoleType:
		case strings.HasPrefix(c.Type, auth.ClaimUserPrefix):
			out = append(out, auth.Claim{Type: c.Type[len(auth.ClaimUserPrefix):], Value: c.Value})
		case strings.HasPrefix(c.Type, auth.ClaimSysPrefix) || systemClaims[c.Type]:
		default:
			out = append(out, auth.Claim{Type: c.Type, Value: c.Value})
		}
	}
	if !hasUID {
		for _, c := range out {
			if c.Type == auth.ClaimTypeNameIdentifier {
				userID = c.Value
				break
			}
		}
	}
	return out, userID
}

// systemClaims are ClaimsUtility.SystemClaims: never part of the user principal.
var systemClaims = map[string]bool{
	"aud": true, "exp": true, "iat": true, "nbf": true, "iss": true,
	"actort": true, "acr": true, "azp": true, "c_hash": true, "jti": true, "nonce": true,
}

// receive queues client bytes; partial chunks wait for the final one (ProcessConnectionDataMessageAsync).
func (cc *clientConn) receive(payload []byte, partial bool) {
	cc.mu.Lock()
	if cc.terminal {
		cc.mu.Unlock()
		return
	}
	if partial {
		cc.partial = append(cc.partial, payload...)
		cc.mu.Unlock()
		return
	}
	data := payload
	if len(cc.partial) > 0 {
		data = append(cc.partial, payload...)
		cc.partial = nil
	}
	cc.queue = append(cc.queue, event{kind: evData, data: data})
	cc.mu.Unlock()
	cc.lastRecv.Store(cc.h.srv.now())
	cc.signal()
}

func (cc *clientConn) clearPartial() {
	cc.mu.Lock()
	cc.partial = nil
	cc.mu.Unlock()
}

// push queues a terminal event. Only the first one counts; queued data is discarded because the
// hub stops reading once its connection is aborted.
func (cc *clientConn) push(ev event) {
	cc.mu.Lock()
	if cc.terminal {
		cc.mu.Unlock()
		return
	}
	cc.terminal = true
	cc.partial = nil
	cc.queue = append(cc.queue[:0], ev)
	cc.mu.Unlock()
	cc.markClosing()
	cc.signal()
}

// pushAfterData queues a terminal event behind the data already queued; later data is dropped.
// The connection counts as closing once its goroutine reaches the event.
func (cc *clientConn) pushAfterData(ev event) {
	cc.mu.Lock()
	if cc.terminal {
		cc.mu.Unlock()
		return
	}
	cc.terminal = true
	cc.partial = nil
	cc.queue = append(cc.queue, ev)
	cc.mu.Unlock()
	cc.signal()
}

// markClosing drops ordinary writes from now on and signals ConnectionAborted.
func (cc *clientConn) markClosing() {
	cc.closing.Store(true)
	cc.abortedOnce.Do(func() { close(cc.aborted) })
}

func (cc *clientConn) abort(reason *string) {
	ev := event{kind: evAbort}
	if reason != nil {
		ev.reason = *reason
	}
	cc.push(ev)
}

func (cc *clientConn) signal() {
	select {
	case cc.wake <- struct{}{}:
	default:
	}
}

// next blocks until an event is queued.
func (cc *clientConn) next() event {
	for {
		cc.mu.Lock()
		if len(cc.queue) > 0 {
			ev := cc.queue[0]
			cc.queue[0] = event{}
			cc.queue = cc.queue[1:]
			if len(cc.queue) == 0 {
				cc.queue = nil
			}
			cc.mu.Unlock()
			return ev
		}
		cc.mu.Unlock()
		<-cc.wake
	}
}

// run is the connection's goroutine: handshake, OnConnected, message loop, OnDisconnected.
func (cc *clientConn) run() {
	defer cc.finish()
	if cc.handshake() {
		cc.serve()
	}
}

// finish unregisters the connection once its goroutine is done.
func (cc *clientConn) finish() {
	h := cc.h
	cc.push(event{kind: evLinkLost}) // marks terminal so late data is dropped
	cc.markClosing()
	cc.outMu.Lock()
	svc := cc.svc
	cc.outMu.Unlock()
	h.mu.Lock()
	if h.clients[cc.id] == cc {
		delete(h.clients, cc.id)
	}
	if svc.clients[cc.id] == cc {
		delete(svc.clients, cc.id)
	}
	h.mu.Unlock()
	h.srv.clientCount.Add(-1)
	// CleanupInvocationsByConnection: what this process asked the connection fails now.
	h.srv.results.failConnection(cc.id)
	cc.cancel()
	close(cc.ended)
}

// handshake performs the hub handshake (HubConnectionContext.HandshakeAsync) and runs
// OnConnected. It reports whether the connection is up.
func (cc *clientConn) handshake() bool {
	hub := cc.h.hub
	maxSize := hub.maxMessageSize()
	var buf []byte
	for {
		ev := cc.next()
		switch ev.kind {
		case evData:
		case evHandshakeTimeout:
			cc.failHandshake(hubproto.ErrTextHandshakeCanceled)
			return false
		case evAbort:
			cc.sendCloseConnection(ev.reason)
			return false
		default: // the service closed the client or the socket is gone: nothing to say
			return false
		}
		buf = append(buf, ev.data...)
		msg, _, rest, err := protocol.CutText(buf, maxSize)
		if errors.Is(err, protocol.ErrIncomplete) {
			continue
		}
		if err != nil {
			cc.failHandshake(hubproto.ErrTextHandshakeCanceled)
			return false
		}
		req, err := hubproto.ParseHandshakeRequest(msg)
		if err != nil {
			cc.failHandshake(errorMessage(textHandshakeError, invalidData(err.Error()), hub.EnableDetailedErrors))
			return false
		}
		codec := cc.h.codecFor(req.Protocol)
		if codec == nil {
			cc.failHandshake(hubproto.ErrTextProtocolNotSupported(req.Protocol))
			return false
		}
		// ASP.NET Core 8's JSON and MessagePack protocols are version 2 and accept <= 2.
		if req.Version > 2 {
			cc.failHandshake(hubproto.ErrTextVersionNotSupported(req.Protocol, req.Version))
			return false
		}
		cc.codec = codec
		cc.hctx.Protocol = codec.Name()
		cc.splitter = protocol.Splitter{Format: codec.Format(), Max: maxSize}
		cc.splitter.Write(rest)
		// A migrated client already saw a handshake response from its old server.
		if cc.migratedFrom == "" {
			if err := cc.sendData(hubproto.AppendHandshakeResponse(nil, ""), svcproto.DataHandshake); err != nil {
				cc.h.log.Debug("cannot send handshake response", "conn_id", cc.id, "error", err)
			}
		}
		now := cc.h.srv.now()
		cc.lastWrite.Store(now)
		cc.lastRecv.Store(now)
		cc.handshaken.Store(true)
		if hub.OnConnected != nil {
			cc.inHub.Store(true)
			err := safeCall(func() error { return hub.OnConnected(cc.hctx) })
			cc.inHub.Store(false)
			if err != nil {
				cc.h.log.Error("OnConnected failed", "conn_id", cc.id, "error", err)
				cc.writeClose(hubproto.Close{Error: errorMessage(textConnectionClosedWithError, err, hub.EnableDetailedErrors)})
				cc.sendCloseConnection("")
				return false
			}
		}
		return true
	}
}

// failHandshake answers the handshake with an error and ends the connection.
func (cc *clientConn) failHandshake(msg string) {
	cc.h.log.Debug("hub handshake failed", "conn_id", cc.id, "error", msg)
	if cc.migratedFrom == "" {
		if err := cc.sendData(hubproto.AppendHandshakeResponse(nil, msg), svcproto.DataHandshake); err != nil {
			cc.h.log.Debug("cannot send handshake response", "conn_id", cc.id, "error", err)
		}
	}
	cc.sendCloseConnection("")
}

// serve dispatches hub messages until the connection ends (HubConnectionHandler.DispatchMessagesAsync).
func (cc *clientConn) serve() {
	detailed := cc.h.hub.EnableDetailedErrors
	for {
		ev := cc.next()
		switch ev.kind {
		case evData:
			cc.splitter.Write(ev.data)
			for !cc.closing.Load() {
				msg, frame, err := cc.splitter.Next()
				if errors.Is(err, protocol.ErrIncomplete) {
					break
				}
				if err != nil {
					if errors.Is(err, protocol.ErrTooLarge) {
						err = invalidData(fmt.Sprintf("The maximum message size of %dB was exceeded. The message size can be configured in AddHubOptions.", cc.splitter.Max))
					}
					cc.closeWithError(err)
					return
				}
				m, err := cc.codec.Decode(msg)
				if errors.Is(err, hubproto.ErrUnknownType) {
					continue
				}
				if err != nil {
					cc.closeWithError(invalidData(err.Error()))
					return
				}
				if cc.dispatch(m, frame) {
					return
				}
			}
		case evServiceClose:
			cc.markClosing()
			if ev.migrateTo == "" {
				cc.writeClose(hubproto.Close{})
			}
			cc.disconnected(nil)
			return
		case evLinkLost:
			cc.disconnected(nil)
			return
		case evAbort:
			cc.writeClose(hubproto.Close{Error: ev.reason})
			cc.disconnected(nil)
			cc.sendCloseConnection(ev.reason)
			return
		case evTimeout:
			cc.h.log.Debug("client timeout", "conn_id", cc.id)
			err := &dotnetError{"OperationCanceledException", textClientTimeout}
			cc.writeClose(hubproto.Close{Error: errorMessage(textConnectionClosedWithError, err, detailed), AllowReconnect: true})
			cc.disconnected(ErrClientTimeout)
			cc.sendCloseConnection("")
			return
		}
	}
}

// closeWithError ends the connection after a protocol error.
func (cc *clientConn) closeWithError(err error) {
	cc.h.log.Debug("closing client after error", "conn_id", cc.id, "error", err)
	cc.closing.Store(true)
	cc.writeClose(hubproto.Close{Error: errorMessage(textConnectionClosedWithError, err, cc.h.hub.EnableDetailedErrors)})
	cc.disconnected(err)
	cc.sendCloseConnection("")
}

// dispatch handles one hub message; it reports whether the connection ended.
func (cc *clientConn) dispatch(m hubproto.Message, frame []byte) bool {
	switch m := m.(type) {
	case hubproto.Invocation:
		cc.invoke(m)
	case hubproto.Completion:
		if cc.h.srv.results.completeLocal(cc, m) {
			cc.sendLocalCompletion(m.InvocationID)
			return false
		}
		cc.routeCompletion(m, frame)
	case hubproto.Ping:
		// HubConnectionContext.StartClientTimeout: a client that pings gets timed out.
		cc.timeoutOn.Store(true)
	case hubproto.Close:
		// A graceful close by the client (connection.CloseMessage + Abort): the close message
		// sent back carries no error; the client's error, if any, reaches OnDisconnected.
		cc.closing.Store(true)
		cc.writeClose(hubproto.Close{})
		var err error
		if m.Error != "" {
			err = &HubError{Message: m.Error}
		}
		cc.disconnected(err)
		cc.sendCloseConnection("")
		return true
	default:
		// CancelInvocation and StreamItem have no target (no
		// streaming methods); Ack and Sequence belong to the service's stateful reconnect.
	}
	return false
}

// invoke runs a hub method and answers with a completion (DefaultHubDispatcher).
func (cc *clientConn) invoke(inv hubproto.Invocation) {
	hub := cc.h.hub
	detailed := hub.EnableDetailedErrors
	m := hub.method(inv.Target)
	if m == nil {
		cc.sendInvocationError(inv.InvocationID, errorMessage(fmt.Sprintf("Failed to invoke '%s' due to an error on the server.", inv.Target), &HubError{Message: "Method does not exist."}, detailed))
		return
	}
	// Arguments are bound while parsing (binding failures come first), then the invocation
	// mode and the stream count are validated (DefaultHubDispatcher.Invoke).
	args, err := m.bind(cc.codec, inv.Arguments)
	if err != nil {
		cc.sendInvocationError(inv.InvocationID, errorMessage(fmt.Sprintf("Failed to invoke '%s' due to an error on the server.", inv.Target), err, detailed))
		return
	}
	if inv.Stream {
		cc.sendInvocationError(inv.InvocationID, fmt.Sprintf("The client attempted to invoke the non-streaming '%s' method with a streaming invocation.", inv.Target))
		return
	}
	if len(inv.StreamIDs) > 0 {
		cc.sendInvocationError(inv.InvocationID, errorMessage(fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", inv.Target), &HubError{Message: fmt.Sprintf("Client sent %d stream(s), Hub method expects %d.", len(inv.StreamIDs), 0)}, detailed))
		return
	}
	cc.processing.Store(true)
	cc.inHub.Store(true)
	res, err := m.call(cc.hctx, args)
	cc.inHub.Store(false)
	cc.lastRecv.Store(cc.h.srv.now())
	cc.processing.Store(false)
	if err != nil {
		cc.h.log.Debug("hub method failed", "conn_id", cc.id, "method", inv.Target, "error", err)
		cc.sendInvocationError(inv.InvocationID, errorMessage(fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", inv.Target), err, detailed))
		return
	}
	if inv.InvocationID == "" {
		return // non-blocking invocation: no completion
	}
	// CompletionMessage.WithResult for every non-streaming method: void methods complete with
	// "result":null, exactly as ASP.NET Core writes them.
	raw, err := cc.codec.Marshal(res)
	if err != nil {
		cc.h.log.Error("cannot serialize hub method result", "conn_id", cc.id, "method", inv.Target, "error", err)
		cc.sendInvocationError(inv.InvocationID, errorMessage(fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", inv.Target), err, detailed))
		return
	}
	c := hubproto.Completion{InvocationID: inv.InvocationID, HasResult: true, Result: raw}
	cc.writeHub(c, svcproto.DataInvocation)
}

func (cc *clientConn) sendInvocationError(id, msg string) {
	if id == "" {
		return
	}
	cc.writeHub(hubproto.Completion{InvocationID: id, Error: msg}, svcproto.DataInvocation)
}

// routeCompletion forwards a client's completion of an invocation another server made through
// this one (router role of client results) as ClientCompletion with the raw frame.
func (cc *clientConn) routeCompletion(m hubproto.Completion, frame []byte) {
	cc.mu.Lock()
	_, ok := cc.routed[m.InvocationID]
	delete(cc.routed, m.InvocationID)
	cc.mu.Unlock()
	if !ok {
		cc.h.log.Debug("completion for unknown invocation dropped", "conn_id", cc.id, "invocation_id", m.InvocationID)
		return
	}
	name := cc.codec.Name()
	// As in ServiceLifetimeManager.SetConnectionResultAsync, callerServerId is this (the
	// router's) server id, not the invoking server's: the service knows the invocation's caller.
	msg := svcproto.ClientCompletion{
		InvocationID:   m.InvocationID,
		ConnectionID:   cc.id,
		CallerServerID: cc.h.srv.opts.ServerID,
		Protocol:       name,
		Payload:        append([]byte(nil), frame...),
		Ext:            svcproto.Ext{Protocol: name},
	}
	if err := cc.h.writeAny(cc.h.srv.ctx, cc, "", msg); err != nil {
		cc.h.log.Debug("cannot route client completion", "conn_id", cc.id, "error", err)
	}
}

func (cc *clientConn) addRoutedInvocation(invocationID, callerServerID string) {
	cc.mu.Lock()
	if cc.routed == nil {
		cc.routed = make(map[string]string)
	}
	cc.routed[invocationID] = callerServerID
	cc.mu.Unlock()
}

// disconnected runs OnDisconnected.
func (cc *clientConn) disconnected(err error) {
	if f := cc.h.hub.OnDisconnected; f != nil {
		if perr := safeCall(func() error { f(cc.hctx, err); return nil }); perr != nil {
			cc.h.log.Error("OnDisconnected failed", "conn_id", cc.id, "error", perr)
		}
	}
}

// tick is the heartbeat: handshake timeout, keep-alive ping, client timeout.
func (cc *clientConn) tick(now int64) {
	if cc.closing.Load() {
		return
	}
	hub := cc.h.hub
	if !cc.handshaken.Load() {
		if time.Duration(now-cc.opened) > hub.handshakeTimeout() && cc.hsTimedOut.CompareAndSwap(false, true) {
			cc.push(event{kind: evHandshakeTimeout})
		}
		return
	}
	if time.Duration(now-cc.lastWrite.Load()) > hub.keepAlive() && cc.pinging.CompareAndSwap(false, true) {
		cc.h.srv.wg.Go(func() {
			defer cc.pinging.Store(false)
			cc.writeHub(hubproto.Ping{}, svcproto.DataOther)
		})
	}
	if cc.timeoutOn.Load() && !cc.processing.Load() && time.Duration(now-cc.lastRecv.Load()) >= hub.clientTimeout() {
		cc.push(event{kind: evTimeout})
	}
}

// writeHub writes one hub message as one ConnectionData. Ordinary messages are dropped once the
// connection is closing (writes after Abort are ignored by HubConnectionContext).
func (cc *clientConn) writeHub(m hubproto.Message, dt svcproto.DataMessageType) {
	if cc.closing.Load() && dt != svcproto.DataClose {
		return
	}
	frame, err := cc.codec.Append(nil, m)
	if err != nil {
		cc.h.log.Error("cannot encode hub message", "conn_id", cc.id, "type", m.Type(), "error", err)
		return
	}
	if err := cc.sendData(frame, dt); err != nil {
		cc.h.log.Debug("cannot send to client", "conn_id", cc.id, "error", err)
	}
}

func (cc *clientConn) writeClose(m hubproto.Close) { cc.writeHub(m, svcproto.DataClose) }

// sendData wraps a hub frame in ConnectionData with its dataMessageType.
func (cc *clientConn) sendData(frame []byte, dt svcproto.DataMessageType) error {
	ext := svcproto.Ext{DataMessageType: dt}
	if cc.h.srv.opts.LegacyDataExt {
		ext = ext.Legacy()
	}
	return cc.send(cc.h.srv.ctx, svcproto.ConnectionData{ConnectionID: cc.id, Payload: frame, Ext: ext})
}

// sendCloseConnection tells the service the hub ended the connection.
func (cc *clientConn) sendCloseConnection(reason string) {
	if err := cc.send(cc.h.srv.ctx, svcproto.CloseConnection{ConnectionID: cc.id, ErrorMessage: reason}); err != nil {
		cc.h.log.Debug("cannot send CloseConnection", "conn_id", cc.id, "error", err)
	}
}

// send writes m on the client's socket, in order with the client's other output, waiting while
// the service has paused the client (ConnectionFlowControl).
func (cc *clientConn) send(ctx context.Context, m svcproto.Message) error {
	buf, err := svcproto.AppendFrame(nil, m)
	if err != nil {
		return fmt.Errorf("appserver: encode %v: %w", m.Type(), err)
	}
	for {
		cc.outMu.Lock()
		if cc.outCancelled {
			cc.outMu.Unlock()
			return nil
		}
		if !cc.paused {
			err := cc.svc.sendFrame(ctx, buf)
			if err == nil {
				cc.lastWrite.Store(cc.h.srv.now())
			}
			cc.outMu.Unlock()
			return err
		}
		ch := cc.resume
		cc.outMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-cc.ended:
			return fmt.Errorf("appserver: connection %s ended: %w", cc.id, ErrNotConnected)
		}
	}
}

func (cc *clientConn) boundConn() *svcConn {
	cc.outMu.Lock()
	defer cc.outMu.Unlock()
	return cc.svc
}

// pauseAndAck stops the client's output and acknowledges with PauseAck on its socket.
func (cc *clientConn) pauseAndAck() {
	cc.outMu.Lock()
	first := !cc.paused
	if first {
		cc.paused = true
		cc.resume = make(chan struct{})
	}
	svc := cc.svc
	cc.outMu.Unlock()
	if !first {
		return
	}
	msg := svcproto.ConnectionFlowControl{ConnectionID: cc.id, Target: svcproto.FlowClient, Op: svcproto.FlowPauseAck}
	if err := svc.send(cc.h.srv.ctx, msg); err != nil {
		cc.h.log.Debug("cannot send PauseAck", "conn_id", cc.id, "error", err)
	}
}

// resumeOn binds the client to the socket the Resume arrived on and resumes its output.
func (cc *clientConn) resumeOn(c *svcConn) {
	cc.outMu.Lock()
	defer cc.outMu.Unlock()
	if old := cc.svc; old != c {
		h := cc.h
		h.mu.Lock()
		delete(old.clients, cc.id)
		c.clients[cc.id] = cc
		h.mu.Unlock()
		cc.svc = c
	}
	if cc.paused {
		cc.paused = false
		close(cc.resume)
	}
}

// safeCall runs f, turning a panic into an error.
func safeCall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("appserver: panic: %v", r)
		}
	}()
	return f()
}
