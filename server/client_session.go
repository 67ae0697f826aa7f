package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// errHandshakeFailed ends a connection whose handshake was answered with an error.
var errHandshakeFailed = errors.New("server: hub handshake failed")

// start attaches the first transport: it records the transport and the request's token, and
// arms the handshake timeout. r is the transport request (headers and query go to the app server).
func (c *client) start(transportName string, tok *auth.Token, r *http.Request) {
	c.transport = transportName
	c.auth = tok
	c.expiresAt.Store(0)
	c.startReq = requestInfo{headers: forwardHeaders(r, c.in.srv.forwardedFor(r)), query: forwardQuery(r)}
	// A timer rather than a goroutine: a connected client costs no goroutine for its handshake.
	c.hsTimer = time.AfterFunc(c.handshakeTimeout(), func() {
		c.inMu.Lock()
		defer c.inMu.Unlock()
		if !c.handshaken && !c.done() {
			c.failHandshake(hubproto.ErrTextHandshakeCanceled)
		}
	})
}

// requestInfo is what the app server learns of the client's transport request.
type requestInfo struct {
	headers svcproto.Headers
	query   string
}

// handshakeTimeout is the instance default unless the token carries asrs.s.cht (1..30 s).
func (c *client) handshakeTimeout() time.Duration {
	if _, ok := c.auth.Claim(auth.ClaimHandshakeTimeout); ok {
		return c.auth.HandshakeTimeout()
	}
	return c.in.settings().HandshakeTimeout
}

// failHandshake answers the handshake with an error and ends the connection (inMu held).
func (c *client) failHandshake(text string) {
	c.handshaken = true // nothing more is read
	c.stopHandshakeTimer()
	c.closeKind.CompareAndSwap(nil, closeReasonHandshake)
	c.out.Push(hubproto.AppendHandshakeResponse(nil, text))
	c.out.Close()
}

// receive processes inbound transport bytes in order: the handshake first, then whole hub
// messages forwarded to the app server. An error ends the connection (the caller closes).
func (c *client) receive(p []byte) error {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	c.touch()
	if c.done() {
		return errClientGone
	}
	msgs := 0
	defer func() { c.in.met.fromClient.add(msgs, len(p)) }()
	c.split.Write(p)
	if !c.handshaken {
		_, frame, err := c.split.Next()
		if errors.Is(err, protocol.ErrIncomplete) {
			return nil
		}
		if err != nil {
			c.failHandshake(hubproto.ErrTextHandshakeCanceled)
			return errHandshakeFailed
		}
		if err := c.handshake(frame); err != nil {
			return err
		}
	}
	c.scratch = c.scratch[:0]
	for {
		msg, frame, err := c.split.Next()
		if errors.Is(err, protocol.ErrIncomplete) {
			break
		}
		if err != nil {
			c.closeWith(closeReasonTooLarge, reasonTooLarge, false)
			return err
		}
		msgs++
		c.traceInbound(msg)
		if c.st.enabled {
			forward, err := c.filterInbound(msg)
			if err != nil {
				c.closeWith(closeReasonService, err.Error(), false)
				return err
			}
			if !forward {
				continue
			}
		}
		if c.takeCompletion(msg) {
			continue
		}
		c.noteRemoteCompletion(msg)
		if c.serverless.Load() {
			c.serverlessMessage(msg)
			continue
		}
		c.scratch = append(c.scratch, frame...)
	}
	if len(c.scratch) == 0 {
		return nil
	}
	if err := c.toApp(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: c.scratch}); err != nil {
		if errors.Is(err, errLinkClosed) {
			c.closeWith(closeReasonServerLost, reasonServerLost, true)
		}
		return err
	}
	if cap(c.scratch) > 64<<10 {
		c.scratch = nil
	}
	return nil
}

var errClientGone = errors.New("server: client connection closed")

// handshake parses the client's hub handshake, binds the client to an app-server socket and
// announces it (inMu held).
func (c *client) handshake(frame []byte) error {
	req, err := hubproto.ParseHandshakeRequest(frame[:len(frame)-1])
	if err != nil {
		c.failHandshake("Handshake request is invalid: " + err.Error())
		return errHandshakeFailed
	}
	codec, ok := hubproto.CodecFor(req.Protocol)
	if !ok {
		c.failHandshake(hubproto.ErrTextProtocolNotSupported(req.Protocol))
		return errHandshakeFailed
	}
	if codec.Format() == protocol.Binary && c.transport == transportNameSSE {
		c.failHandshake(hubproto.ErrTextTransferFormat(req.Protocol))
		return errHandshakeFailed
	}
	if c.hub.serverless() {
		c.accept(req, codec)
		return c.serverlessHandshake(req)
	}
	mode, sid := c.auth.Sticky()
	l, rt, err := c.hub.route(c.ctx, mode, sid, "")
	if err != nil {
		text := noServerText(c.hub.id)
		if errors.Is(err, errStickyRequired) {
			text = stickyGoneText
		}
		c.failHandshake(text)
		return errHandshakeFailed
	}
	c.accept(req, codec)
	if l != nil {
		c.link.Store(l)
		l.bind(c)
	} else {
		c.relay.Store(rt) // before Add: fan-out from now on is held until the handshake response
	}
	c.hub.conn.Add(c)
	if cl := c.in.cl; cl != nil {
		cl.connReady(c.ctx, c.hub.id, c.userID) // before the app server can send it anything
	}
	c.openGauge = c.in.srv.metrics.clientOpened(c.in.name, c.transport, c.protocol)
	c.in.srv.traceClient(traceClientConnected, c, "")
	open := c.openMessage("")
	if rt != nil {
		err = c.openRelay(rt, open, c.handshakeForApp(req, frame))
	} else {
		err = l.sendData(c.ctx, open)
		if err == nil {
			err = l.sendData(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: c.handshakeForApp(req, frame)})
		}
	}
	if err != nil {
		c.closeWith(closeReasonServerLost, reasonServerLost, true)
		return err
	}
	return nil
}

// openMessage is the OpenConnection announcing the client to an app server; migratedFrom, when
// set, is the server it migrates from. In a cluster it names the node holding the client
// (Asrs-Instance-Id), so an `offline` ping for that node drops exactly its clients.
func (c *client) openMessage(migratedFrom string) svcproto.OpenConnection {
	headers := c.startReq.headers
	if migratedFrom != "" || c.in.cl != nil {
		headers = slices.Clone(headers)
	}
	if migratedFrom != "" {
		headers = append(headers, svcproto.Header{Name: headerMigrateFrom, Values: []string{migratedFrom}})
	}
	if c.in.cl != nil {
		headers = append(headers, svcproto.Header{Name: headerInstanceID, Values: []string{c.in.cl.node}})
	}
	return svcproto.OpenConnection{
		ConnectionID: c.id,
		Claims:       toSvcClaims(auth.OpenConnectionClaims(c.auth)),
		Headers:      headers,
		QueryString:  c.startReq.query,
		Ext:          svcproto.Ext{Protocol: c.protocol},
	}
}

// headerInstanceID names the service instance (node) holding a client.
const headerInstanceID = "Asrs-Instance-Id"

const stickyGoneText = "The app server this client must use (sticky mode Required) is not connected to the service."

// forwardHeaders are the client's request headers for OpenConnection, minus credentials, plus
// X-Forwarded-For (xff: the client address as Azure adds it, see Server.forwardedFor).
func forwardHeaders(r *http.Request, xff string) svcproto.Headers {
	out := make(svcproto.Headers, 0, len(r.Header)+1)
	for name, vals := range r.Header {
		switch strings.ToLower(name) {
		case "authorization", "cookie", "sec-websocket-key", "sec-websocket-extensions", "sec-websocket-version", "connection", "upgrade", "x-forwarded-for":
			continue
		}
		out = append(out, svcproto.Header{Name: name, Values: vals})
	}
	return append(out, svcproto.Header{Name: "X-Forwarded-For", Values: []string{xff}})
}

// forwardQuery is the client's query with its leading '?', minus the connection token, the
// access token and the long-polling cache buster.
func forwardQuery(r *http.Request) string {
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		if p == "" || strings.HasPrefix(p, "id=") || strings.HasPrefix(p, "access_token=") || strings.HasPrefix(p, "_=") {
			continue
		}
		kept = append(kept, p)
	}
	return "?" + strings.Join(kept, "&")
}

func toSvcClaims(cs []auth.Claim) []svcproto.Claim {
	out := make([]svcproto.Claim, len(cs))
	for i, c := range cs {
		out[i] = svcproto.Claim{Type: c.Type, Value: c.Value}
	}
	return out
}

// stopHandshakeTimer ends the handshake timeout (inMu held).
func (c *client) stopHandshakeTimer() {
	if c.hsTimer != nil {
		c.hsTimer.Stop()
		c.hsTimer = nil // an idle connection keeps no spent timer
	}
}

// accept records an accepted handshake: the protocol, the user, and whether stateful reconnect
// applies (negotiated, version 2, WebSockets). Called with inMu held, before the client is
// registered anywhere.
func (c *client) accept(req hubproto.HandshakeRequest, codec hubproto.Codec) {
	c.handshaken = true
	c.stopHandshakeTimer()
	c.st.enabled = c.st.negotiated && req.Version >= 2 && c.transport == transportNameWebSockets
	c.codec = codec
	c.protocol = strings.ToLower(req.Protocol)
	c.userID = c.auth.UserID
	c.binary.Store(codec.Format() == protocol.Binary)
	c.split.Format = codec.Format()
}
