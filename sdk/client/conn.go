package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
)

// Conn is one SignalR hub connection over a WebSocket. All methods are safe for concurrent use.
type Conn struct {
	codec   hubproto.Codec
	ws      *websocket.Conn
	msgType websocket.MessageType // Text for JSON, Binary for MessagePack
	log     *slog.Logger
	id      string

	keepAlive     time.Duration // <= 0: disabled
	serverTimeout time.Duration // <= 0: disabled
	maxMsg        int           // <= 0: unlimited

	// ctx is canceled when the connection starts shutting down; internal writes use it.
	ctx    context.Context
	cancel context.CancelFunc

	// wsem is a one-slot semaphore serializing writes (a mutex that honours contexts); it
	// guards wbuf, wargs and winv.
	wsem  chan struct{}
	wbuf  []byte
	wargs []hubproto.Raw
	winv  hubproto.Invocation

	// Monotonic nanoseconds since epoch of the last successful send / last received frame.
	epoch    time.Time
	lastSend atomic.Int64
	lastRecv atomic.Int64

	mu       sync.Mutex // guards the fields below
	handlers map[string][]func([]hubproto.Raw)
	results  map[string]func([]hubproto.Raw) (any, error)
	pending  map[string]chan completion
	nextID   uint64
	ended    bool  // no new invocations; pending ones have been failed
	errSet   bool  // err holds the final reason (nil after Close)
	err      error // why the connection ended

	// Reader goroutine state.
	rbuf  []byte            // bytes received but not yet cut into messages
	lower map[string]string // target -> lower-case target, saves an allocation per message

	wg        sync.WaitGroup // keep-alive and OnResult goroutines
	done      chan struct{}
	closeOnce sync.Once

	// sink replaces the WebSocket write in unit tests, fuzz targets and benchmarks; nil in
	// real connections.
	sink func([]byte) error
}

type completion struct {
	result hubproto.Raw
	err    error
}

// readChunk is the minimum free space kept in rbuf for one Read call.
const readChunk = 4096

// Dial negotiates, opens the WebSocket and completes the hub handshake. ctx bounds only the
// establishment of the connection; use Close to end it.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	codec, _ := hubproto.CodecFor(o.Protocol)
	format, msgType := "Text", websocket.MessageText
	if codec.Format() == protocol.Binary {
		format, msgType = "Binary", websocket.MessageBinary
	}

	ts := &tokenSource{factory: o.AccessToken}
	ep := endpoint{url: o.URL}
	if !o.SkipNegotiation {
		var err error
		if ep, err = negotiate(ctx, &o, ts, format); err != nil {
			return nil, err
		}
	}
	accessToken, err := ts.token(ctx)
	if err != nil {
		return nil, err
	}
	header := http.Header{}
	for k, vs := range o.Headers {
		header[k] = append([]string(nil), vs...)
	}
	if accessToken != "" && !o.AccessTokenInQuery {
		header.Set("Authorization", "Bearer "+accessToken)
	}
	wsURL := connectURL(ep.url, ep.token, accessToken, o.AccessTokenInQuery)
	ws, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: o.HTTPClient, HTTPHeader: header})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body := ""
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				body = string(b)
			}
			return nil, &StatusError{Op: "connect", StatusCode: resp.StatusCode, Body: body}
		}
		return nil, fmt.Errorf("client: connect: %w", err)
	}
	ws.SetReadLimit(o.MaxMessageSize)

	c := newConn(codec, o.Logger.With("component", "sdk/client", "conn_id", ep.connectionID))
	c.ws, c.msgType, c.id = ws, msgType, ep.connectionID
	c.keepAlive, c.serverTimeout = o.KeepAliveInterval, o.ServerTimeout
	c.maxMsg = int(max(o.MaxMessageSize, 0))
	if err := c.handshake(ctx, o.HandshakeTimeout); err != nil {
		c.cancel()
		_ = ws.CloseNow()
		return nil, err
	}
	if c.keepAlive > 0 {
		// Like the JS client, ping right away so the server sees the client is alive. A write
		// stuck past ctx closes the socket, which fails Dial as it should.
		if err := c.writeMsg(ctx, ctx, hubproto.Ping{}); err != nil {
			c.cancel()
			_ = ws.CloseNow()
			return nil, err
		}
	}
	if c.keepAlive > 0 || c.serverTimeout > 0 {
		c.wg.Add(1)
		go c.keepAliveLoop()
	}
	go c.readLoop()
	c.log.Debug("connected", "url", ep.url, "protocol", codec.Name())
	return c, nil
}

// newConn returns a Conn without a WebSocket, keep-alive or timeouts.
func newConn(codec hubproto.Codec, log *slog.Logger) *Conn {
	c := &Conn{
		codec:    codec,
		log:      log,
		msgType:  websocket.MessageText,
		wsem:     make(chan struct{}, 1),
		epoch:    time.Now(),
		handlers: map[string][]func([]hubproto.Raw){},
		results:  map[string]func([]hubproto.Raw) (any, error){},
		pending:  map[string]chan completion{},
		lower:    map[string]string{},
		done:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// handshake sends the handshake request and reads the response. Bytes after the response are
// kept in rbuf for the reader goroutine.
func (c *Conn) handshake(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := hubproto.AppendHandshakeRequest(nil, hubproto.HandshakeRequest{Protocol: c.codec.Name(), Version: 1})
	// The JS client sends the handshake as a string, i.e. a Text frame, for every protocol.
	if err := c.ws.Write(ctx, websocket.MessageText, req); err != nil {
		return fmt.Errorf("client: handshake: send: %w", err)
	}
	for {
		// A short-lived read context closes the socket on expiry, which is what a handshake
		// timeout should do anyway.
		if err := c.readFrame(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("client: handshake: no response within %v: %w", timeout, ctx.Err())
			}
			return fmt.Errorf("client: handshake: %w", err)
		}
		msg, _, rest, err := protocol.CutText(c.rbuf, c.maxMsg)
		if errors.Is(err, protocol.ErrIncomplete) {
			continue
		}
		if err != nil {
			return fmt.Errorf("client: handshake: %w", err)
		}
		errMsg, err := hubproto.ParseHandshakeResponse(msg)
		if err != nil {
			return fmt.Errorf("client: handshake: %w", err)
		}
		if errMsg != "" {
			return &HandshakeError{Message: errMsg}
		}
		c.rbuf = c.rbuf[:copy(c.rbuf, rest)]
		return nil
	}
}

// now is monotonic nanoseconds since c.epoch.
func (c *Conn) now() int64 { return int64(time.Since(c.epoch)) }

// readFrame appends one WebSocket message to rbuf.
func (c *Conn) readFrame(ctx context.Context) error {
	_, r, err := c.ws.Reader(ctx)
	if err != nil {
		return err
	}
	c.lastRecv.Store(c.now())
	for {
		if cap(c.rbuf)-len(c.rbuf) < readChunk {
			c.rbuf = append(c.rbuf, make([]byte, readChunk)...)[:len(c.rbuf)]
		}
		n, err := r.Read(c.rbuf[len(c.rbuf):cap(c.rbuf)])
		c.rbuf = c.rbuf[:len(c.rbuf)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLoop is the reader goroutine: it dispatches every received message and, when the
// connection ends for any reason, tears it down.
func (c *Conn) readLoop() {
	defer c.teardown()
	for {
		if stop := c.dispatchBuffered(); stop {
			return
		}
		// Never a deadline here: expiry would close the socket (server timeout is separate).
		if err := c.readFrame(context.Background()); err != nil {
			c.fail(fmt.Errorf("client: read: %w", err))
			return
		}
	}
}

// dispatchBuffered handles every whole message in rbuf and keeps the incomplete remainder.
func (c *Conn) dispatchBuffered() (stop bool) {
	b := c.rbuf
	defer func() {
		if cap(c.rbuf) > maxKeptBuf && len(b) <= maxKeptBuf/2 {
			// Let a buffer grown by one large message go.
			c.rbuf = append(make([]byte, 0, readChunk+len(b)), b...)
			return
		}
		c.rbuf = c.rbuf[:copy(c.rbuf, b)]
	}()
	for len(b) > 0 {
		msg, _, rest, err := c.codec.Cut(b, c.maxMsg)
		if errors.Is(err, protocol.ErrIncomplete) {
			return false
		}
		if err != nil {
			c.fail(fmt.Errorf("client: read: %w", err))
			return true
		}
		b = rest
		if c.dispatch(msg) {
			return true
		}
	}
	return false
}

// dispatch handles one hub message; it reports whether the connection must end.
func (c *Conn) dispatch(msg []byte) (stop bool) {
	m, err := c.codec.Decode(msg)
	if errors.Is(err, hubproto.ErrUnknownType) {
		// Newer protocol versions may add types; the JS client skips them too.
		c.log.Debug("skipping message of unknown type")
		return false
	}
	if err != nil {
		c.fail(fmt.Errorf("client: decode: %w", err))
		return true
	}
	switch m := m.(type) {
	case hubproto.Invocation:
		if !m.Stream {
			c.invokeClient(&m)
		}
	case hubproto.Completion:
		c.complete(&m)
	case hubproto.Close:
		c.fail(&CloseError{Message: m.Error, AllowReconnect: m.AllowReconnect})
		return true
	case hubproto.Ping:
		// lastRecv is already updated.
	default:
		// StreamItem, CancelInvocation, Ack, Sequence: streaming and stateful reconnect are
		// not implemented.
		c.log.Debug("ignoring message", "type", m.Type().String())
	}
	return false
}

// fail records why the connection ends; the first reason wins (Close records nil).
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if !c.errSet {
		c.errSet, c.err = true, err
	}
	c.mu.Unlock()
}

// teardown runs on the reader goroutine when it exits.
func (c *Conn) teardown() {
	c.cancel()
	c.mu.Lock()
	c.ended = true
	if !c.errSet {
		c.errSet, c.err = true, ErrClosed
	}
	reason := c.err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()

	perr := ErrClosed
	if reason != nil {
		perr = fmt.Errorf("%w: %w", ErrClosed, reason)
	}
	for _, ch := range pending {
		ch <- completion{err: perr}
	}
	if reason != nil {
		c.log.Debug("connection ended", "err", reason)
	}
	// Closes with 1000 after a server Close message, a no-op if the socket is already closed.
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	c.wg.Wait()
	close(c.done)
}

// keepAliveLoop pings after KeepAliveInterval of send idleness and ends the connection after
// ServerTimeout of receive silence.
func (c *Conn) keepAliveLoop() {
	defer c.wg.Done()
	t := time.NewTimer(c.nextTick(c.now()))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		if c.serverTimeout > 0 && time.Duration(now-c.lastRecv.Load()) >= c.serverTimeout {
			c.fail(ErrServerTimeout)
			if c.ws != nil {
				_ = c.ws.CloseNow() // the reader goroutine then tears down
			}
			return
		}
		pinged := true
		if c.keepAlive > 0 && time.Duration(now-c.lastSend.Load()) >= c.keepAlive {
			pinged = c.ping()
		}
		wait := c.nextTick(c.now())
		if !pinged {
			// A write holds the lock (possibly stuck on a full socket): look again later
			// rather than spinning.
			wait = max(wait, c.keepAlive/16)
		}
		t.Reset(wait)
	}
}

// nextTick is the time until the next keep-alive or server-timeout deadline.
func (c *Conn) nextTick(now int64) time.Duration {
	d := time.Duration(1<<63 - 1)
	if c.keepAlive > 0 {
		d = min(d, c.keepAlive-time.Duration(now-c.lastSend.Load()))
	}
	if c.serverTimeout > 0 {
		d = min(d, c.serverTimeout-time.Duration(now-c.lastRecv.Load()))
	}
	return max(d, time.Millisecond)
}

// ping sends a Ping unless a write is in progress (which resets send idleness anyway). It
// reports whether it got the write lock.
func (c *Conn) ping() bool {
	select {
	case c.wsem <- struct{}{}:
	default:
		return false
	}
	defer func() { <-c.wsem }()
	// Bounded so a stuck socket cannot stall the server-timeout check forever: a ping that
	// cannot be written for that long closes the connection.
	ctx, cancel := context.WithTimeout(c.ctx, max(c.serverTimeout, c.keepAlive))
	defer cancel()
	if err := c.writeLocked(ctx, hubproto.Ping{}); err != nil {
		c.log.Debug("keep-alive ping failed", "err", err)
	}
	return true
}

// lock acquires the write semaphore.
func (c *Conn) lock(ctx context.Context) error {
	select {
	case c.wsem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr()
	}
}

func (c *Conn) unlock() { <-c.wsem }

// writeMsg encodes m and writes it as one WebSocket message. ctx bounds the wait for the
// write lock; wctx is passed to the WebSocket write (see writeLocked).
func (c *Conn) writeMsg(ctx, wctx context.Context, m hubproto.Message) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	return c.writeLocked(wctx, m)
}

// maxKeptBuf caps the encode buffer kept between writes.
const maxKeptBuf = 64 << 10

// writeLocked encodes and writes m; the caller holds wsem. wctx is handed to the WebSocket
// write, whose cancellation closes the socket: callers pass context.Background() unless
// closing is the intended outcome. (coder/websocket disarms the context only after flushing,
// so a caller's context cancelled just as a write completes would kill a healthy connection.)
func (c *Conn) writeLocked(wctx context.Context, m hubproto.Message) error {
	b, err := c.codec.Append(c.wbuf[:0], m)
	if err != nil {
		return fmt.Errorf("client: encode %v: %w", m.Type(), err)
	}
	if cap(b) <= maxKeptBuf {
		c.wbuf = b
	}
	return c.writeFrameLocked(wctx, b)
}

func (c *Conn) writeFrameLocked(wctx context.Context, b []byte) error {
	var err error
	if c.sink != nil {
		err = c.sink(b)
	} else {
		err = c.ws.Write(wctx, c.msgType, b)
	}
	if err != nil {
		if wctx.Err() == nil && c.isEnded() {
			return c.closedErr()
		}
		return fmt.Errorf("client: write: %w", err)
	}
	c.lastSend.Store(c.now())
	return nil
}

func (c *Conn) isEnded() bool {
	select {
	case <-c.ctx.Done():
		return true
	default:
		return false
	}
}

// closedErr wraps ErrClosed with the reason the connection ended.
func (c *Conn) closedErr() error {
	c.mu.Lock()
	reason := c.err
	c.mu.Unlock()
	if reason == nil || reason == ErrClosed {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, reason)
}

// ConnectionID is the id from negotiate ("" with SkipNegotiation).
func (c *Conn) ConnectionID() string { return c.id }

// Protocol is the hub protocol name ("json", "messagepack" or "blazorpack").
func (c *Conn) Protocol() string { return c.codec.Name() }

// Codec is the connection's codec, e.g. to pre-encode arguments as hubproto.Raw.
func (c *Conn) Codec() hubproto.Codec { return c.codec }

// Done is closed once the connection has ended and all its goroutines have returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended: nil while it is open and after Close; a *CloseError after a
// server Close message; ErrServerTimeout; or the transport error.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		return nil
	}
	return c.err
}

// Close sends a Close message, closes the WebSocket with status 1000 and waits until the
// connection's goroutines have returned. The WebSocket close handshake itself waits at most
// 5 s for the server. Close on an ended connection returns nil.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.errSet {
		c.errSet, c.err = true, nil
	}
	c.mu.Unlock()
	c.closeOnce.Do(func() {
		if c.isEnded() {
			return
		}
		// Closing is the intent, so a write stuck past ctx may close the socket.
		if err := c.writeMsg(ctx, ctx, hubproto.Close{}); err != nil {
			c.log.Debug("sending close message failed", "err", err)
		}
		// The reader goroutine sees the close and tears down.
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		_ = c.ws.CloseNow()
		return fmt.Errorf("client: close: %w", ctx.Err())
	}
}

// SendRaw writes frame as one WebSocket message (Text for JSON, Binary for MessagePack)
// without looking at it; tests use it to send malformed or hand-built messages.
func (c *Conn) SendRaw(ctx context.Context, frame []byte) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	return c.writeFrameLocked(context.Background(), frame)
}

// lowerTarget returns strings.ToLower(target), cached for the reader goroutine.
func (c *Conn) lowerTarget(target string) string {
	if l, ok := c.lower[target]; ok {
		return l
	}
	l := strings.ToLower(target)
	if len(c.lower) < 256 {
		c.lower[target] = l
	}
	return l
}
