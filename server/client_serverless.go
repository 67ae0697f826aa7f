package server

import (
	"strings"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/server/upstream"
	"github.com/signalrd/signalrd/transport"
)

// Serverless connections: the service answers the hub handshake, keeps the client alive with
// pings, and turns client messages into upstream webhook calls (client-and-rest §4.5, §7).

// serverlessHandshake accepts the client without an app server (inMu held).
func (c *client) serverlessHandshake(req hubproto.HandshakeRequest) error {
	if req.Version < 1 || req.Version > 2 {
		c.failHandshake(hubproto.ErrTextVersionNotSupported(req.Protocol, req.Version))
		return errHandshakeFailed
	}
	c.serverless.Store(true)
	c.hub.conn.Add(c)
	if cl := c.in.cl; cl != nil {
		// Before the upstream hears of it: a REST send right after `connected` must reach it.
		cl.connReady(c.ctx, c.hub.id, c.userID)
	}
	c.openGauge = c.in.srv.metrics.clientOpened(c.in.name, c.transport, c.protocol)
	c.in.srv.traceClient(traceClientConnected, c, "")
	c.sendFromApp(hubproto.AppendHandshakeResponse(nil, ""))
	if c.transport == transportNameWebSockets {
		c.armKeepAlive()
	}
	c.emit(upstream.Event{Category: "connections", Event: "connected", Body: upstream.ConnectedBody(), ContentType: "application/json"}, nil)
	return nil
}

// serverlessMessage handles one whole client message of a serverless connection (inMu held).
func (c *client) serverlessMessage(msg []byte) {
	t, err := c.codec.PeekType(msg)
	if err != nil || t != hubproto.TypeInvocation {
		// Pings only keep the connection alive; streams and stray completions are dropped like the
		// emulator does; a Close is followed by the transport ending.
		return
	}
	m, err := c.codec.Decode(msg)
	if err != nil {
		return
	}
	inv, ok := m.(hubproto.Invocation)
	if !ok {
		return
	}
	ct := "application/json"
	if c.codec.Format() == protocol.Binary {
		ct = "application/x-msgpack"
	}
	ev := upstream.Event{
		Category: "messages", Event: inv.Target,
		Body: append([]byte(nil), msg...), ContentType: ct, InvocationID: inv.InvocationID,
	}
	c.emit(ev, func(r upstream.Result) {
		if r.Completion != nil {
			c.Send(r.Completion)
			c.traceServiceSend(r.Completion, traceUpstreamServer)
		}
	})
}

// emit sends an upstream event for this connection; events of one connection keep their order.
func (c *client) emit(ev upstream.Event, done func(upstream.Result)) {
	up := c.in.upstream
	if up == nil {
		if done != nil && ev.InvocationID != "" {
			done(upstream.Result{Completion: c.errorCompletion(ev.InvocationID, "No upstream is configured for hub '"+c.hub.id+"', event '"+ev.Event+"'.")})
		}
		return
	}
	ev.Hub = c.hub.id
	ev.ConnectionID = c.id
	ev.UserID = c.userID
	ev.Query = c.startReq.query
	ev.Protocol = c.protocol
	ev.Claims = upstreamClaims(c.auth)
	if done == nil {
		done = func(upstream.Result) {}
	}
	up.Dispatch(ev, done)
}

func (c *client) errorCompletion(id, text string) []byte {
	f, err := c.codec.Append(nil, &hubproto.Completion{InvocationID: id, Error: text})
	if err != nil {
		return nil
	}
	return f
}

// upstreamClaims are the token's user claims (system claims and JWT plumbing left out).
func upstreamClaims(t *auth.Token) []upstream.Claim {
	if t == nil {
		return nil
	}
	out := make([]upstream.Claim, 0, len(t.Claims))
	for _, cl := range t.Claims {
		switch cl.Type {
		case "aud", "exp", "iat", "nbf", "iss":
			continue
		}
		if strings.HasPrefix(cl.Type, auth.ClaimSysPrefix) {
			continue
		}
		out = append(out, upstream.Claim{Type: cl.Type, Value: cl.Value})
	}
	return out
}

// serverlessClosed fires the disconnected event.
func (c *client) serverlessClosed(reason string) {
	c.emit(upstream.Event{Category: "connections", Event: "disconnected", Body: upstream.DisconnectedBody(reason), ContentType: "application/json"}, nil)
}

// keepAliveFrame is the ping a serverless client gets after 15 s of silence; app servers ping
// their own clients in Default mode.
func (c *client) keepAliveFrame() []byte {
	if !c.serverless.Load() {
		return nil
	}
	f, err := c.codec.Append(nil, &hubproto.Ping{})
	if err != nil {
		return nil
	}
	return f
}

// serverlessKeepAlive: serverless clients get a Ping after 15 s without traffic (the official
// clients give up after 30 s of silence).
const serverlessKeepAlive = 15 * time.Second

// pumpOptions are the SSE pump's: its ticker sends the serverless keep-alive.
func (c *client) pumpOptions() transport.PumpOptions {
	return transport.PumpOptions{KeepAlive: serverlessKeepAlive, KeepAliveFunc: c.keepAliveFrame}
}

// armKeepAlive starts the keep-alive of a serverless WebSocket client, whose writes have no
// resident goroutine to tick: a timer that queues a Ping once nothing was written for
// serverlessKeepAlive (finish stops it).
func (c *client) armKeepAlive() {
	c.lastWrite.Store(time.Now().UnixNano())
	t := time.AfterFunc(time.Hour, c.keepAliveTick)
	c.keepAlive.Store(t)
	t.Reset(serverlessKeepAlive)
}

func (c *client) keepAliveTick() {
	if c.done() {
		return
	}
	idle := time.Since(time.Unix(0, c.lastWrite.Load()))
	if idle >= serverlessKeepAlive {
		if f := c.keepAliveFrame(); f != nil {
			c.out.Push(f)
		}
		idle = 0
	}
	c.keepAlive.Load().Reset(serverlessKeepAlive - idle)
}
