package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/transport"
)

// Close reasons the service itself puts in SignalR Close messages.
const (
	reasonSlowConsumer  = "The client did not read its messages fast enough and was disconnected (slow consumer)."
	reasonServerLost    = "The connection to the app server was lost."
	reasonTooLarge      = "The message exceeded the maximum message size."
	reasonInternalError = "Internal server error."
)

// client is one SignalR client connection held by this node. It implements router.Conn.
type client struct {
	in       *instance
	hub      *hubState
	id       string
	token    *auth.Token
	userID   string
	protocol string // lower-case, set once before the client is registered
	codec    hubproto.Codec
	out      *transport.Outbox
	log      *slog.Logger

	link atomic.Pointer[link] // the app-server socket carrying this client

	// appClosed is set when the app server ended the connection, so it is not told again.
	appClosed atomic.Bool
	// closeKind records why the service or the app ended the connection, for metrics.
	closeKind atomic.Value // string
	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
}

func newClient(ctx context.Context, in *instance, h *hubState, id string, tok *auth.Token) *client {
	c := &client{
		in:     in,
		hub:    h,
		id:     id,
		token:  tok,
		userID: tok.UserID,
		out:    transport.NewOutbox(in.settings.OutboxBytes),
		log:    in.log.With("component", "client", "hub", h.id, "conn_id", id),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	return c
}

// ID implements router.Conn.
func (c *client) ID() string { return c.id }

// UserID implements router.Conn.
func (c *client) UserID() string { return c.userID }

// Protocol implements router.Conn.
func (c *client) Protocol() string { return c.protocol }

// Send implements router.Conn: it queues whole framed hub messages without blocking.
func (c *client) Send(frame []byte) bool { return c.out.Push(frame) }

// closeWith ends the connection with a SignalR Close message after what is already queued. The
// connection stops being addressable at once; the transport flushes and closes in the background.
func (c *client) closeWith(kind, reason string, allowReconnect bool) {
	c.closeKind.CompareAndSwap(nil, kind)
	c.hub.conn.Remove(c)
	if c.codec != nil {
		if f, err := c.codec.Append(nil, hubproto.Close{Error: reason, AllowReconnect: allowReconnect}); err == nil {
			c.out.Push(f)
		}
	}
	c.out.Close()
}

// closeFromApp ends the connection because the app server closed it: it already sent the
// client's Close frame, so flush and close without telling it again.
func (c *client) closeFromApp() {
	c.closeKind.CompareAndSwap(nil, closeReasonApp)
	c.appClosed.Store(true)
	c.hub.conn.Remove(c)
	c.out.Close()
}

// closeFrame encodes a Close message in the client's protocol for writing outside the outbox.
func (c *client) closeFrame(reason string, allowReconnect bool) []byte {
	if c.codec == nil {
		return nil
	}
	f, err := c.codec.Append(nil, hubproto.Close{Error: reason, AllowReconnect: allowReconnect})
	if err != nil {
		return nil
	}
	return f
}

// finish unregisters the client and tells its app server, once. kind is a closeReason* constant.
func (c *client) finish(kind, reason string) {
	c.closeOnce.Do(func() {
		m := c.in.srv.metrics
		m.clientCloses.WithLabelValues(c.in.name, kind).Inc()
		if c.protocol != "" {
			m.clients.WithLabelValues(c.in.name, c.protocol).Dec()
		}
		c.cancel()
		c.out.Discard()
		c.hub.conn.Remove(c)
		c.in.failInvocationsOf(c, reason)
		if l := c.link.Load(); l != nil {
			l.unbind(c)
			c.hub.released(l)
			if !c.appClosed.Load() {
				l.sendControl(svcproto.CloseConnection{ConnectionID: c.id, ErrorMessage: reason})
			}
		}
		c.log.Debug("client closed", "reason", reason)
	})
}
