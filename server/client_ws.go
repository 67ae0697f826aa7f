package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/transport"
)

// linkBackpressure is how much client data may queue on one app-server link before client
// readers wait (TCP back-pressure to the clients instead of unbounded memory).
const linkBackpressure = 4 << 20

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// serveWebSocket accepts a client's WebSocket and hands it to runWebSocket on a fresh goroutine:
// the HTTP handler returns, so the server's per-request state (request, headers, response
// buffers, the handler's grown stack) is released while the connection lives on.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *client, tok *auth.Token) {
	if !c.claimTransport(w, r, transportNameWebSockets, tok) {
		return
	}
	reconnect := false
	if c.st.enabled {
		// Stateful reconnect: the client comes back with the same token. A half-open old socket
		// may still look attached; the newer one wins.
		c.endAttachment()
		reconnect = true
	}
	if !c.attached.CompareAndSwap(false, true) {
		textError(w, http.StatusConflict, "The connection already has an active WebSocket.")
		return
	}
	if reconnect {
		if !c.reattach() {
			c.attached.Store(false)
			textError(w, http.StatusNotFound, "No Connection with that ID")
			return
		}
		c.in.srv.metrics.reconnects.WithLabelValues(c.in.name).Inc()
	}
	// LeanHijack: an idle client keeps no read or write buffer (see transport.LeanHijack).
	lw := transport.LeanHijack(w)
	ws, err := websocket.Accept(lw, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // browsers connect cross-origin by design; tokens authorize
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		c.attached.Store(false)
		if !reconnect {
			c.finish(closeReasonClient, "")
		} else {
			c.detach()
		}
		return
	}
	ws.SetReadLimit(-1) // hub messages are bounded by the splitter, not per WebSocket message
	c.touch()
	a := c.attachWebSocket(ws, lw.Conn())
	// The hub handshake is read on this goroutine, whose stack has grown for the HTTP request
	// anyway: the handshake's processing is the deepest a connection's reader goes, and the
	// reader that lives on then keeps a small stack while it waits.
	if err := readStreamUntil(context.Background(), ws, c.receive, c.handshakeOver); err != nil {
		defer c.attached.Store(false)
		a.readEnded(err)
		return
	}
	s.goConn(func() {
		defer c.attached.Store(false)
		a.readEnded(readStream(context.Background(), ws, c.receive))
	})
}

// wsAttachment is a WebSocket attached to a client: the socket, and the Drain writing to it.
type wsAttachment struct {
	c     *client
	ws    *websocket.Conn
	d     *transport.Drain
	stop  func() bool
	ended atomic.Bool // closed by the service (attachment or connection ended)
}

// attachWebSocket starts writing the client's outbox to ws, hijacked as conn. Writes are done by
// a transport.Drain, whose goroutine only exists while there is something to write.
func (c *client) attachWebSocket(ws *websocket.Conn, conn net.Conn) *wsAttachment {
	a := &wsAttachment{c: c, ws: ws}
	// Ending the attachment (a newer socket of a stateful client), the connection (c.finish) or
	// the service closes the socket, which ends the reads: no context is watched by every read.
	// The service's context (rather than the connection's) keeps the registration in one shared
	// set instead of a set per connection.
	a.stop = context.AfterFunc(c.in.srv.ctx, a.end)
	c.attachMu.Lock()
	c.attachCancel = a.end
	c.attachMu.Unlock()
	if c.done() { // finished before attachCancel was set: finish did not see it
		a.end()
	}
	a.d = c.out.Attach(c.ctx, &wsClientWriter{c: c, ws: ws, conn: conn}, transport.DrainOptions{End: a.writesEnded})
	return a
}

func (a *wsAttachment) end() {
	a.ended.Store(true)
	a.ws.CloseNow()
}

// writesEnded runs when the drain ends. Closing here unblocks the reader when the service or the
// app ends the connection.
func (a *wsAttachment) writesEnded(err error) {
	c, ws := a.c, a.ws
	switch {
	case errors.Is(err, transport.ErrOverrun):
		// Unregister and tell the app server at once; the close frame to a client that does not
		// read may take its whole write timeout.
		c.closeKind.CompareAndSwap(nil, closeReasonSlowConsumer)
		c.finish(closeReasonSlowConsumer, reasonSlowConsumer)
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = ws.Write(wctx, c.wsType(), c.closeFrame(reasonSlowConsumer, true))
		cancel()
		_ = ws.Close(websocket.StatusNormalClosure, "")
	case err == nil:
		_ = ws.Close(websocket.StatusNormalClosure, "")
	default:
		ws.CloseNow()
	}
}

// readEnded finishes the attachment once its reads ended with readErr.
func (a *wsAttachment) readEnded(readErr error) {
	c, ws := a.c, a.ws
	defer a.stop()
	if a.ended.Load() && websocket.CloseStatus(readErr) == -1 {
		readErr = context.Canceled // our own close, as a cancelled read reports it
	}
	if c.st.enabled && !c.out.Closed() && c.ctx.Err() == nil && !cleanClose(readErr) {
		// The socket broke under a stateful connection: keep it for the client's reconnect.
		a.d.Stop()
		ws.CloseNow()
		c.detach()
		c.debug("client transport lost; waiting for stateful reconnect", "err", readErr)
		return
	}
	if !c.out.Closed() {
		c.out.Discard() // the peer went away or the service is stopping: nothing more to write
	}
	a.d.Wait()
	reason := ""
	if websocket.CloseStatus(readErr) == -1 && !errors.Is(readErr, context.Canceled) &&
		!errors.Is(readErr, errHandshakeFailed) && !errors.Is(readErr, errClientGone) {
		reason = "Client transport failed: " + readErr.Error()
	}
	kind := c.closeKindOr(closeReasonClient)
	if kind == closeReasonSlowConsumer {
		reason = reasonSlowConsumer
	}
	c.finish(kind, reason)
}

// handshakeOver reports whether the hub handshake was processed (successfully or not).
func (c *client) handshakeOver() bool {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	return c.handshaken
}

func (c *client) wsType() websocket.MessageType {
	if c.binary.Load() {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

// wsClientWriter writes a client's batches (and counts them); the frame type follows the
// protocol learned at the handshake (JSON clients must never get binary frames).
type wsClientWriter struct {
	c    *client
	ws   *websocket.Conn
	conn net.Conn // the hijacked connection, for write deadlines (nil: contexts bound writes)
	w    transport.WSWriter
}

func (w *wsClientWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	w.c.lastWrite.Store(time.Now().UnixNano())
	w.w.Conn, w.w.Type = w.ws, w.c.wsType()
	if err := w.w.WriteBatch(ctx, frames); err != nil {
		return err
	}
	w.c.in.met.toClient.addFrames(frames)
	return nil
}

// WriteBatchBy implements transport.DeadlineWriter: a socket write deadline bounds the write,
// so the WebSocket library gets no context (no timer and no allocation per write).
func (w *wsClientWriter) WriteBatchBy(deadline time.Time, frames [][]byte) error {
	if w.conn == nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		return w.WriteBatch(ctx, frames)
	}
	_ = w.conn.SetWriteDeadline(deadline)
	err := w.WriteBatch(context.Background(), frames)
	_ = w.conn.SetWriteDeadline(time.Time{})
	return err
}

// cleanClose reports a deliberate WebSocket close by the client (stop), as opposed to a broken
// transport, which a stateful client recovers from by reconnecting.
func cleanClose(err error) bool {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return true
	}
	return errors.Is(err, errHandshakeFailed) || errors.Is(err, errClientGone)
}

// endAttachment ends the WebSocket currently attached to a stateful connection and waits briefly
// for its goroutines to let go.
func (c *client) endAttachment() {
	c.attachMu.Lock()
	cancel := c.attachCancel
	c.attachMu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	for deadline := time.Now().Add(5 * time.Second); c.attached.Load() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}
