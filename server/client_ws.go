package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/transport"
)

// linkBackpressure is how much client data may queue on one app-server link before client
// readers wait (TCP back-pressure to the clients instead of unbounded memory).
const linkBackpressure = 4 << 20

func (s *Server) handleClient(w http.ResponseWriter, r *http.Request, in *instance) {
	if cors(w, r, "GET, POST, DELETE") {
		return
	}
	hub, ok := hubParam(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodDelete:
		// Sends and DELETE belong to Server-Sent Events and long polling, not served by this node.
		textError(w, http.StatusBadRequest, "Only the WebSockets transport is available on this service.")
		return
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		textError(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	if !isWebSocketUpgrade(r) {
		textError(w, http.StatusBadRequest, "Only the WebSockets transport is available on this service.")
		return
	}
	tok, ok := in.verify(w, r, auth.KindClient, hub)
	if !ok {
		return
	}
	id := newID() // skipNegotiation: the transport request creates the connection
	if token := r.URL.Query().Get("id"); token != "" {
		p, ok := in.takePending(token)
		if !ok || p.hub != hub {
			textError(w, http.StatusNotFound, "No Connection with that ID")
			return
		}
		id = p.id
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // browsers connect cross-origin by design; tokens authorize
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		in.log.Debug("client websocket accept failed", "err", err)
		return
	}
	ws.SetReadLimit(-1) // hub messages are bounded by the splitter, not per WebSocket message
	h := in.hub(hub)
	c := newClient(s.ctx, in, h, id, tok)
	s.wg.Add(1)
	defer s.wg.Done()
	s.runWSClient(c, ws, r)
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// handshakeTimeout is the instance default unless the token carries asrs.s.cht (1..30 s).
func (c *client) handshakeTimeout() time.Duration {
	if v, ok := c.token.Claim(auth.ClaimHandshakeTimeout); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 30 {
			return time.Duration(n) * time.Second
		}
	}
	return c.in.settings.HandshakeTimeout
}

// runWSClient owns a client WebSocket: it reads the handshake, binds the client to an app server
// and relays until either side ends.
func (s *Server) runWSClient(c *client, ws *websocket.Conn, r *http.Request) {
	defer c.cancel()
	split := &protocol.Splitter{Format: protocol.Text, Max: c.in.settings.MaxMessageSize}

	// Phase 1: the hub handshake, always JSON text. The timer ends a silent client.
	var (
		hsMu     sync.Mutex
		hsDone   bool
		hsFrame  []byte
		hsReq    hubproto.HandshakeRequest
		hsErr    error
		timedOut bool
	)
	timer := time.AfterFunc(c.handshakeTimeout(), func() {
		hsMu.Lock()
		defer hsMu.Unlock()
		if !hsDone {
			timedOut = true
			writeHandshakeError(ws, hubproto.ErrTextHandshakeCanceled)
		}
	})
	errHandshakeRead := errors.New("handshake read")
	err := readStream(c.ctx, ws, func(p []byte) error {
		split.Write(p)
		_, frame, err := split.Next()
		if errors.Is(err, protocol.ErrIncomplete) {
			return nil
		}
		if err != nil {
			hsErr = err
			return errHandshakeRead
		}
		hsFrame = append([]byte(nil), frame...)
		hsReq, hsErr = hubproto.ParseHandshakeRequest(frame[:len(frame)-1])
		return errHandshakeRead
	})
	hsMu.Lock()
	hsDone = true
	hsMu.Unlock()
	timer.Stop()
	if !errors.Is(err, errHandshakeRead) || timedOut {
		ws.CloseNow()
		return
	}
	if hsErr != nil {
		writeHandshakeError(ws, "Handshake request is invalid: "+hsErr.Error())
		return
	}
	codec, ok := hubproto.CodecFor(hsReq.Protocol)
	if !ok {
		writeHandshakeError(ws, hubproto.ErrTextProtocolNotSupported(hsReq.Protocol))
		return
	}
	c.codec = codec
	c.protocol = strings.ToLower(hsReq.Protocol)
	msgType := websocket.MessageText
	if codec.Format() == protocol.Binary {
		msgType = websocket.MessageBinary
	}

	// Phase 2: bind to an app server and announce the client to it.
	mode, sid := c.token.Sticky()
	l, err := c.hub.pick(mode, sid)
	if err != nil {
		text := noServerText(c.hub.id)
		if errors.Is(err, errStickyRequired) {
			text = "The app server this client must use (sticky mode Required) is not connected to the service."
		}
		writeHandshakeError(ws, text)
		return
	}
	c.link.Store(l)
	l.bind(c)
	c.hub.conn.Add(c)
	c.in.srv.metrics.clients.WithLabelValues(c.in.name, c.protocol).Inc()
	defer c.finish(closeReasonClient, "")
	open := svcproto.OpenConnection{
		ConnectionID: c.id,
		Claims:       toSvcClaims(auth.OpenConnectionClaims(c.token)),
		Headers:      forwardHeaders(r),
		QueryString:  forwardQuery(r),
		Ext:          svcproto.Ext{Protocol: c.protocol},
	}
	err = l.sendData(c.ctx, open)
	if err == nil {
		err = l.sendData(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: hsFrame})
	}

	// Phase 3: relay. The pump owns writes; this goroutine reads.
	split.Format = codec.Format()
	pumpDone := make(chan error, 1)
	s.goConn(func() {
		perr := transport.Pump(c.ctx, c.out, &transport.WSWriter{Conn: ws, Type: msgType}, transport.PumpOptions{})
		// Closing here unblocks the reader when the service or the app ends the connection.
		switch {
		case errors.Is(perr, transport.ErrOverrun):
			c.finish(closeReasonSlowConsumer, reasonSlowConsumer)
			wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = ws.Write(wctx, msgType, c.closeFrame(reasonSlowConsumer, true))
			cancel()
			_ = ws.Close(websocket.StatusNormalClosure, "")
		case perr == nil:
			_ = ws.Close(websocket.StatusNormalClosure, "")
		default:
			ws.CloseNow()
		}
		pumpDone <- perr
	})
	var scratch []byte
	forward := func() error {
		scratch = scratch[:0]
		for {
			_, frame, err := split.Next()
			if errors.Is(err, protocol.ErrIncomplete) {
				break
			}
			if err != nil {
				return err
			}
			scratch = append(scratch, frame...)
		}
		if len(scratch) == 0 {
			return nil
		}
		return l.sendData(c.ctx, svcproto.ConnectionData{ConnectionID: c.id, Payload: scratch})
	}
	readErr := err
	if readErr == nil {
		readErr = forward() // bytes that followed the handshake in the same frame
	}
	if readErr == nil {
		readErr = readStream(c.ctx, ws, func(p []byte) error {
			split.Write(p)
			return forward()
		})
	}
	switch {
	case errors.Is(readErr, protocol.ErrTooLarge):
		c.closeWith(closeReasonTooLarge, reasonTooLarge, false)
	case errors.Is(readErr, errLinkClosed):
		c.closeWith(closeReasonServerLost, reasonServerLost, true)
	default:
		c.out.Discard() // the peer is gone or the service is stopping: nothing more to write
	}
	<-pumpDone
	reason := ""
	if readErr != nil && websocket.CloseStatus(readErr) == -1 && !errors.Is(readErr, context.Canceled) && !errors.Is(readErr, protocol.ErrTooLarge) {
		reason = fmt.Sprintf("Client transport failed: %v", readErr)
	}
	kind, _ := c.closeKind.Load().(string)
	if kind == "" {
		kind = closeReasonClient
	}
	c.finish(kind, reason)
}

// writeHandshakeError answers the hub handshake with an error and closes the socket.
func writeHandshakeError(ws *websocket.Conn, text string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, hubproto.AppendHandshakeResponse(nil, text))
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

// forwardHeaders are the client's request headers for OpenConnection, minus credentials, plus
// X-Forwarded-For with the client address as Azure adds it.
func forwardHeaders(r *http.Request) svcproto.Headers {
	out := make(svcproto.Headers, 0, len(r.Header)+1)
	for name, vals := range r.Header {
		switch strings.ToLower(name) {
		case "authorization", "cookie", "sec-websocket-key", "sec-websocket-extensions", "sec-websocket-version", "connection", "upgrade":
			continue
		}
		out = append(out, svcproto.Header{Name: name, Values: vals})
	}
	xff := clientIP(r.RemoteAddr)
	if prev := r.Header.Get("X-Forwarded-For"); prev != "" {
		xff = prev + ", " + xff
		out = slicesDeleteHeader(out, "X-Forwarded-For")
	}
	out = append(out, svcproto.Header{Name: "X-Forwarded-For", Values: []string{xff}})
	return out
}

func slicesDeleteHeader(h svcproto.Headers, name string) svcproto.Headers {
	out := h[:0]
	for _, x := range h {
		if !strings.EqualFold(x.Name, name) {
			out = append(out, x)
		}
	}
	return out
}

// forwardQuery is the client's query with its leading '?', minus the connection token and access
// token, which are secrets of the service.
func forwardQuery(r *http.Request) string {
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		if p == "" || strings.HasPrefix(p, "id=") || strings.HasPrefix(p, "access_token=") {
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
