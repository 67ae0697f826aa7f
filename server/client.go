package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
	"github.com/signalrd/signalrd/transport"
)

// Close reasons the service itself puts in SignalR Close messages.
const (
	reasonSlowConsumer  = "The client did not read its messages fast enough and was disconnected (slow consumer)."
	reasonServerLost    = "The connection to the app server was lost."
	reasonTooLarge      = "The message exceeded the maximum message size."
	reasonClientTimeout = "Client hasn't sent a message/ping within the configured ClientTimeoutInterval."
	reasonAuthExpired   = "The access token has expired."
)

// Transport names as negotiate lists them.
const (
	transportNameWebSockets  = "WebSockets"
	transportNameSSE         = "ServerSentEvents"
	transportNameLongPolling = "LongPolling"
)

// client is one SignalR client connection held by this node, from negotiate to close. It
// implements router.Conn. Transports attach to it: a WebSocket, or an SSE stream plus POSTs, or
// long polls plus POSTs.
type client struct {
	in    *instance
	hub   *hubState
	id    string // public connection id
	token string // connection token (the transport's id= parameter)
	out   *transport.Outbox

	// Set by the first transport request, before any other use.
	hsTimer   *time.Timer // handshake timeout, stopped once the handshake is over
	transport string
	auth      *auth.Token
	startReq  requestInfo

	// Set while processing the handshake, before the client is registered anywhere.
	userID   string
	protocol string // lower-case
	codec    hubproto.Codec
	binary   atomic.Bool // frames go out as binary WebSocket messages
	// openGauge is the connections gauge counting this client once its handshake completed
	// (set under inMu; finish reads it after waiting for inMu).
	openGauge prometheus.Gauge

	link       atomic.Pointer[link]        // the app-server socket carrying this client
	relay      atomic.Pointer[relayTarget] // or, in a cluster, the node holding one (cluster_relay.go)
	early      earlyFanout                 // relayed: fan-out that overtook the handshake response
	serverless atomic.Bool                 // the service itself answers this client (no app server)
	ready      atomic.Bool                 // the handshake response is queued: fan-out may deliver

	// inMu serializes inbound data (one WebSocket reader, or concurrent POSTs).
	inMu       sync.Mutex
	split      protocol.Splitter
	handshaken bool
	scratch    []byte

	lastRecv  atomic.Int64 // unix nanos of the last inbound bytes (or poll)
	attached  atomic.Bool  // a transport request currently holds the connection
	expiresAt atomic.Int64 // unix nanos: negotiated-but-unused deadline, 0 once connected

	// appClosed is set when the app server ended the connection, so it is not told again.
	appClosed atomic.Bool
	// closeKind records why the service or the app ended the connection, for metrics;
	// closeReason the text given to the client, also told to the app server.
	closeKind   atomic.Value // string
	closeReason atomic.Value // string
	closeOnce   sync.Once
	ctx         context.Context
	cancel      context.CancelFunc

	// Cluster: the connection token's expiry, and whether this node recorded its ownership.
	tokenExpires time.Time
	claimed      atomic.Bool
	remoteInvs   atomic.Int32 // invocations of callers on other nodes awaiting this client (invocation.go)

	calls serviceCalls  // invocations sent by the service itself (REST :invoke)
	poll  pollState     // long polling only
	st    statefulState // stateful reconnect (WebSockets only)

	attachMu     sync.Mutex
	attachCancel func() // ends the current WebSocket attachment

	lastWrite atomic.Int64               // unix nanos of the last batch written to a WebSocket
	keepAlive atomic.Pointer[time.Timer] // serverless WebSockets: Ping after serverlessKeepAlive of silence
}

// debug logs at debug level with the connection's attributes. A logger per connection would
// cost every idle connection its preformatted attributes; this builds one only when it logs.
func (c *client) debug(msg string, args ...any) {
	if l := c.in.log; l.Enabled(context.Background(), slog.LevelDebug) {
		l.With("component", "client", "hub", c.hub.id, "conn_id", c.id).Debug(msg, args...)
	}
}

func newClient(in *instance, h *hubState, id, token string) *client {
	c := &client{
		in:    in,
		hub:   h,
		id:    id,
		token: token,
		out:   transport.NewOutbox(in.settings().OutboxBytes),
		split: protocol.Splitter{Format: protocol.Text, Max: in.settings().MaxMessageSize},
	}
	c.ctx, c.cancel = context.WithCancel(in.srv.ctx)
	c.touch()
	return c
}

func (c *client) touch() { c.lastRecv.Store(time.Now().UnixNano()) }

// ID implements router.Conn.
func (c *client) ID() string { return c.id }

// UserID implements router.Conn.
func (c *client) UserID() string { return c.userID }

// Protocol implements router.Conn.
func (c *client) Protocol() string { return c.protocol }

// Send implements router.Conn: it queues whole framed hub messages without blocking. Until the
// hub handshake response has been queued the client is not connected yet, so fan-out skips it
// (as ASP.NET Core adds a connection to "All" only after its handshake): the handshake response
// must be the first thing the client reads.
func (c *client) Send(frame []byte) bool {
	if !c.ready.Load() {
		if c.relay.Load() != nil {
			return c.holdEarly(frame) // cluster_relay.go
		}
		return false
	}
	return c.push(frame)
}

func (c *client) push(frame []byte) bool {
	if c.st.enabled {
		return c.sendStateful(frame)
	}
	return c.out.Push(frame)
}

// sendFromApp queues data the app server addressed to this connection on its own socket; the
// first such message is the hub handshake response, after which the client is ready.
func (c *client) sendFromApp(frame []byte) bool {
	ok := c.push(frame)
	if c.relay.Load() != nil && !c.ready.Load() {
		c.releaseEarly() // cluster_relay.go
	}
	c.ready.Store(true)
	return ok
}

// closeWith ends the connection with a SignalR Close message after what is already queued. The
// connection stops being addressable at once; the transport flushes and closes in the background.
func (c *client) closeWith(kind, reason string, allowReconnect bool) {
	c.closeKind.CompareAndSwap(nil, kind)
	c.closeReason.CompareAndSwap(nil, reason)
	c.hub.conn.Remove(c)
	if f := c.closeFrame(reason, allowReconnect); f != nil {
		c.out.Push(f)
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

// closeFrame encodes a Close message in the client's protocol (nil before the handshake).
func (c *client) closeFrame(reason string, allowReconnect bool) []byte {
	if c.codec == nil {
		return nil
	}
	f, err := c.codec.Append(nil, &hubproto.Close{Error: reason, AllowReconnect: allowReconnect})
	if err != nil {
		return nil
	}
	return f
}

// closeKindOr returns the recorded close kind, or def when none was recorded.
func (c *client) closeKindOr(def string) string {
	if k, _ := c.closeKind.Load().(string); k != "" {
		return k
	}
	return def
}

// finish unregisters the client and tells its app server, once. kind is a closeReason* constant.
func (c *client) finish(kind, reason string) {
	c.closeOnce.Do(func() {
		// Cancel first (it unblocks a receive waiting on a congested link), then wait for any
		// receive in progress: a handshake that was binding the client completes before cleanup.
		c.cancel()
		c.attachMu.Lock()
		endAttachment := c.attachCancel
		c.attachMu.Unlock()
		if endAttachment != nil {
			endAttachment() // closes the WebSocket, as cancelling ctx does for other transports
		}
		c.inMu.Lock() // also waits for a receive in progress
		c.stopHandshakeTimer()
		if t := c.keepAlive.Load(); t != nil {
			t.Stop()
		}
		c.inMu.Unlock()
		if r, _ := c.closeReason.Load().(string); reason == "" && r != "" {
			reason = r
		}
		m := c.in.srv.metrics
		m.clientCloses.WithLabelValues(c.in.name, kind).Inc()
		c.out.Discard()
		c.in.forget(c)
		c.hub.conn.Remove(c)
		c.in.failInvocationsOf(c)
		if c.openGauge != nil {
			c.openGauge.Dec()
			c.in.srv.traceClient(traceClientDisconnected, c, traceReason(kind, reason))
		}
		// In a cluster the registry forgets the connection before its app server hears of the
		// close (which may ask any node whether the connection still exists).
		c.releaseOwnership()
		if c.serverless.Load() {
			c.serverlessClosed(reason)
		}
		if rt := c.relay.Load(); rt != nil && !c.appClosed.Load() {
			c.closeRelay(rt, reason, nil)
		}
		if l := c.link.Load(); l != nil {
			l.unbind(c)
			c.hub.released(l)
			if !c.appClosed.Load() {
				l.sendControl(svcproto.CloseConnection{ConnectionID: c.id, ErrorMessage: reason})
			}
		}
		c.debug("client closed", "kind", kind, "reason", reason)
	})
}

// done reports whether the connection has finished.
func (c *client) done() bool { return c.ctx.Err() != nil }

// checkLiveness ends connections that negotiated but never connected, long-polling clients that
// stopped polling, silent clients, and clients whose authentication expired (asrs.s.coae).
func (c *client) checkLiveness(now time.Time) {
	if c.done() {
		return
	}
	if exp := c.expiresAt.Load(); exp != 0 {
		if now.UnixNano() > exp {
			c.finish(closeReasonTimeout, "")
		}
		return
	}
	// The fields set while starting and handshaking are guarded by inMu; a client busy receiving
	// (its link congested) is simply checked on a later tick.
	if !c.inMu.TryLock() {
		return
	}
	transportName, stateful, tok := c.transport, c.st.enabled, c.auth
	c.inMu.Unlock()
	if stateful {
		c.statefulTick(now)
		if c.detached() || c.done() {
			return
		}
	}
	idle := now.Sub(time.Unix(0, c.lastRecv.Load()))
	switch transportName {
	case transportNameLongPolling:
		if c.poll.active.Load() == 0 && idle > c.maxPollInterval(tok) {
			c.out.Discard()
			c.finish(closeReasonTimeout, "The long polling client stopped polling.")
			return
		}
	case transportNameWebSockets, transportNameSSE:
		if idle > c.in.settings().ClientTimeout {
			c.closeWith(closeReasonTimeout, reasonClientTimeout, false)
			return
		}
	}
	if tok != nil {
		if v, _ := tok.Claim(auth.ClaimCloseOnAuthExpire); strings.EqualFold(v, "true") {
			if exp, ok := tok.AuthExpiry(); ok && now.After(exp) {
				c.closeWith(closeReasonAuthExpired, reasonAuthExpired, true)
			}
		}
	}
}

// maxPollInterval is how long a long-polling client may go without polling (asrs.s.ttl, 1-300 s,
// default 5 s).
func (c *client) maxPollInterval(tok *auth.Token) time.Duration {
	if d, ok := tok.MaxPollInterval(); ok && d > 0 {
		return d
	}
	return c.in.settings().MaxPollInterval
}

// detached reports whether a stateful connection is waiting for its client to reconnect.
func (c *client) detached() bool {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	return !c.st.detachedAt.IsZero()
}
