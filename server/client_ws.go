package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
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

// serveWebSocket runs a client over a WebSocket: this goroutine reads, a pump writes.
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
	defer c.attached.Store(false)
	if reconnect {
		if !c.reattach() {
			textError(w, http.StatusNotFound, "No Connection with that ID")
			return
		}
		c.in.srv.metrics.reconnects.WithLabelValues(c.in.name).Inc()
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // browsers connect cross-origin by design; tokens authorize
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		if !reconnect {
			c.finish(closeReasonClient, "")
		} else {
			c.detach()
		}
		return
	}
	ws.SetReadLimit(-1) // hub messages are bounded by the splitter, not per WebSocket message
	c.touch()
	actx, acancel := context.WithCancel(c.ctx)
	defer acancel()
	c.attachMu.Lock()
	c.attachCancel = acancel
	c.attachMu.Unlock()

	pumpDone := make(chan struct{})
	s.goConn(func() {
		defer close(pumpDone)
		err := transport.Pump(actx, c.out, c.in.met.toClient.counting(&wsClientWriter{c: c, ws: ws}), c.pumpOptions())
		// Closing here unblocks the reader when the service or the app ends the connection.
		switch {
		case errors.Is(err, transport.ErrOverrun):
			// Unregister and tell the app server at once; the close frame to a client that does
			// not read may take its whole write timeout.
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
	})
	readErr := readStream(actx, ws, c.receive)
	if c.st.enabled && !c.out.Closed() && c.ctx.Err() == nil && !cleanClose(readErr) {
		// The socket broke under a stateful connection: keep it for the client's reconnect.
		acancel()
		<-pumpDone
		c.detach()
		c.log.Debug("client transport lost; waiting for stateful reconnect", "err", readErr)
		return
	}
	if !c.out.Closed() {
		c.out.Discard() // the peer went away or the service is stopping: nothing more to write
	}
	<-pumpDone
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

func (c *client) wsType() websocket.MessageType {
	if c.binary.Load() {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

// wsClientWriter writes a client's batches; the frame type follows the protocol learned at the
// handshake (JSON clients must never get binary frames).
type wsClientWriter struct {
	c  *client
	ws *websocket.Conn
	w  transport.WSWriter
}

func (w *wsClientWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	w.w.Conn, w.w.Type = w.ws, w.c.wsType()
	return w.w.WriteBatch(ctx, frames)
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
