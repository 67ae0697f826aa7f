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
	if !c.attached.CompareAndSwap(false, true) {
		textError(w, http.StatusConflict, "The connection already has an active WebSocket.")
		return
	}
	defer c.attached.Store(false)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // browsers connect cross-origin by design; tokens authorize
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		c.finish(closeReasonClient, "")
		return
	}
	ws.SetReadLimit(-1) // hub messages are bounded by the splitter, not per WebSocket message
	s.wg.Add(1)
	defer s.wg.Done()

	pumpDone := make(chan struct{})
	s.goConn(func() {
		defer close(pumpDone)
		err := transport.Pump(c.ctx, c.out, &wsClientWriter{c: c, ws: ws}, transport.PumpOptions{})
		// Closing here unblocks the reader when the service or the app ends the connection.
		switch {
		case errors.Is(err, transport.ErrOverrun):
			c.closeKind.CompareAndSwap(nil, closeReasonSlowConsumer)
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
	readErr := readStream(c.ctx, ws, c.receive)
	if !c.out.Closed() {
		c.out.Discard() // the peer went away or the service is stopping: nothing more to write
	}
	<-pumpDone
	reason := ""
	if readErr != nil && websocket.CloseStatus(readErr) == -1 && !errors.Is(readErr, context.Canceled) &&
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
