package appserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/protocol/hubproto"
)

// Hub is a Go hub: lifecycle callbacks, methods clients can invoke, and the ASP.NET Core
// HubOptions that shape the connection. Configure it completely before Server.Start; it is then
// read concurrently and must not be changed.
type Hub struct {
	// OnConnected runs after the handshake, before the client's first message is dispatched.
	// A non-nil error closes the connection ("Connection closed with an error.") and, as in
	// ASP.NET Core, OnDisconnected is then not called.
	OnConnected func(c *Context) error
	// OnDisconnected runs once when a connected client goes away. err is nil for a normal close
	// (client left, Abort, service closed it) and describes the failure otherwise
	// (ErrClientTimeout, a protocol error, or a *HubError carrying the client's close error).
	OnDisconnected func(c *Context, err error)

	// EnableDetailedErrors adds exception details to error completions and close messages and
	// makes negotiate add asrs.s.derror. Default false.
	EnableDetailedErrors bool
	// KeepAliveInterval is how long the hub may stay silent before it pings a client. 15 s.
	KeepAliveInterval time.Duration
	// ClientTimeoutInterval closes a client that sent nothing for this long; as in ASP.NET Core
	// it is enforced only after the client's first ping. 30 s.
	ClientTimeoutInterval time.Duration
	// HandshakeTimeout bounds the wait for the client's hub handshake (also advertised to the
	// service as asrs.s.cht by negotiate when it is not 15 s). 15 s.
	HandshakeTimeout time.Duration
	// MaximumReceiveMessageSize bounds one incoming hub message. 32 KiB; negative = unlimited.
	MaximumReceiveMessageSize int
	// Protocols overrides Options.Protocols for this hub.
	Protocols []string

	mu      sync.RWMutex
	methods map[string]*hubMethod // by lower-case name: ASP.NET Core matches methods case-insensitively
}

// On registers fn as the hub method name. fn must be a func whose first parameter is *Context;
// the other parameters receive the invocation's arguments, decoded with the caller's protocol
// (encoding/json rules for JSON, vmihailenco/msgpack with json tags for MessagePack). fn returns
// nothing, error, a result, or a result and an error:
//
//	h.On("Send", func(c *appserver.Context, user, text string) error { ... })
//	h.On("Add", func(c *appserver.Context, a, b int) (int, error) { return a + b, nil })
//
// The completion carries the result; methods without one complete with a null result, as
// ASP.NET Core does (CompletionMessage.WithResult). A returned *HubError reaches the client verbatim; other errors only with
// EnableDetailedErrors. On panics on an invalid fn or a duplicate name (overloads are not
// supported, as in ASP.NET Core).
func (h *Hub) On(name string, fn any) {
	m, err := newHubMethod(name, fn)
	if err != nil {
		panic(err)
	}
	key := strings.ToLower(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.methods == nil {
		h.methods = make(map[string]*hubMethod)
	}
	if _, dup := h.methods[key]; dup {
		panic(fmt.Errorf("appserver: duplicate definitions of %q: overloading is not supported", name))
	}
	h.methods[key] = m
}

func (h *Hub) method(name string) *hubMethod {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.methods[strings.ToLower(name)]
}

func (h *Hub) keepAlive() time.Duration { return orDefault(h.KeepAliveInterval, 15*time.Second) }
func (h *Hub) clientTimeout() time.Duration {
	return orDefault(h.ClientTimeoutInterval, 30*time.Second)
}
func (h *Hub) handshakeTimeout() time.Duration { return orDefault(h.HandshakeTimeout, 15*time.Second) }

func (h *Hub) maxMessageSize() int {
	switch {
	case h.MaximumReceiveMessageSize < 0:
		return 0
	case h.MaximumReceiveMessageSize == 0:
		return 32 << 10
	}
	return h.MaximumReceiveMessageSize
}

func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// Context is a client connection as its hub sees it (HubCallerContext plus the caller-aware
// Clients/Groups). It embeds a context.Context that is cancelled when the connection ends
// (ConnectionAborted), so it can be passed wherever a context is expected:
//
//	c.Clients.Others().Send(c, "joined", c.UserID)
//
// One Context exists per connection; it is safe for concurrent use.
type Context struct {
	context.Context

	// ConnectionID is the client's SignalR connection id.
	ConnectionID string
	// UserID is the asrs.s.uid claim, else the NameIdentifier claim (UserIdentifier).
	UserID string
	// Claims are the user's claims as ASP.NET Core's ClaimsPrincipal holds them: system claims
	// (asrs.s.*, aud, exp, ...) removed, asrs.u.* prefixes stripped.
	Claims []auth.Claim
	// Headers are the client's request headers as the service forwarded them.
	Headers http.Header
	// Query is the client's connect query (hub, asrs.op, asrs_request_id and the app's own).
	Query url.Values
	// Path is the original request path (asrs.op), e.g. "/chat".
	Path string
	// Protocol is the hub protocol the client chose in its handshake ("json", "messagepack").
	Protocol string
	// MigratedFrom is the server id the client was migrated from (Asrs-Migrate-From), or "".
	MigratedFrom string

	// Clients, Groups and UserGroups act on behalf of this connection: Caller/Others work, and
	// messages go out on this connection's socket, preserving order with its completions.
	Clients    *Clients
	Groups     *Groups
	UserGroups *UserGroups
	// Hub gives access to the hub-wide management operations.
	Hub *HubContext

	// Items is per-connection state for the application.
	Items sync.Map

	conn *clientConn
}

// Value implements context.Context; it also lets InvokeClient recognise the connection a context
// belongs to (the SDK's ClientConnectionScope).
func (c *Context) Value(key any) any {
	if _, ok := key.(callerKey); ok {
		return c.conn
	}
	return c.Context.Value(key)
}

// Abort closes the connection from the server side (Context.Abort() in ASP.NET Core): the client
// receives a close message, OnDisconnected runs with a nil error and the service is told with
// CloseConnection. It returns immediately.
func (c *Context) Abort() { c.conn.abort(nil) }

// MigratedTo is the server id the service is migrating this connection to (Asrs-Migrate-To of
// its CloseConnection), or "". OnDisconnected can use it to tell a migration from a real leave
// (IConnectionMigrationFeature).
func (c *Context) MigratedTo() string {
	c.conn.mu.Lock()
	defer c.conn.mu.Unlock()
	return c.conn.migrateTo
}

// ConnectionAborted is closed as soon as the connection starts to end (abort, timeout, socket
// loss; for a close by the service, once the messages received before it were dispatched),
// before OnDisconnected runs. The embedded context.Context is cancelled only
// after OnDisconnected returned, so it stays usable for sends from OnDisconnected.
func (c *Context) ConnectionAborted() <-chan struct{} { return c.conn.aborted }

// hubMethod is one registered hub method.
type hubMethod struct {
	name      string
	fn        reflect.Value
	args      []reflect.Type // parameters after *Context
	hasResult bool
	hasErr    bool
}

var (
	contextPtrType = reflect.TypeFor[*Context]()
	errorType      = reflect.TypeFor[error]()
)

func newHubMethod(name string, fn any) (*hubMethod, error) {
	if name == "" {
		return nil, errors.New("appserver: hub method name is empty")
	}
	v := reflect.ValueOf(fn)
	if fn == nil || v.Kind() != reflect.Func || v.IsNil() {
		return nil, fmt.Errorf("appserver: hub method %q: handler is %T, not a func", name, fn)
	}
	t := v.Type()
	if t.IsVariadic() {
		return nil, fmt.Errorf("appserver: hub method %q: variadic handlers are not supported", name)
	}
	if t.NumIn() == 0 || t.In(0) != contextPtrType {
		return nil, fmt.Errorf("appserver: hub method %q: first parameter must be *appserver.Context", name)
	}
	m := &hubMethod{name: name, fn: v}
	for i := 1; i < t.NumIn(); i++ {
		m.args = append(m.args, t.In(i))
	}
	switch t.NumOut() {
	case 0:
	case 1:
		if t.Out(0) == errorType {
			m.hasErr = true
		} else {
			m.hasResult = true
		}
	case 2:
		if t.Out(1) != errorType || t.Out(0) == errorType {
			return nil, fmt.Errorf("appserver: hub method %q: two results must be (T, error)", name)
		}
		m.hasResult, m.hasErr = true, true
	default:
		return nil, fmt.Errorf("appserver: hub method %q: at most (T, error) may be returned", name)
	}
	return m, nil
}

// dotnetError is an error that stands for a .NET exception type in detailed error texts
// ("<prefix> InvalidDataException: <msg>").
type dotnetError struct{ typ, msg string }

func (e *dotnetError) Error() string { return e.msg }

func invalidData(msg string) error { return &dotnetError{"InvalidDataException", msg} }

// bind decodes the invocation's arguments into the parameter types.
func (m *hubMethod) bind(codec hubproto.Codec, raws []hubproto.Raw) ([]reflect.Value, error) {
	if len(raws) != len(m.args) {
		return nil, invalidData(fmt.Sprintf("Invocation provides %d argument(s) but target expects %d.", len(raws), len(m.args)))
	}
	vals := make([]reflect.Value, len(m.args))
	for i, t := range m.args {
		p := reflect.New(t)
		if err := codec.Unmarshal(raws[i], p.Interface()); err != nil {
			return nil, invalidData("Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked.")
		}
		vals[i] = p.Elem()
	}
	return vals, nil
}

// call runs the method, turning a panic into an error.
func (m *hubMethod) call(c *Context, args []reflect.Value) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("appserver: hub method %q panicked: %v", m.name, r)
		}
	}()
	in := make([]reflect.Value, 0, len(args)+1)
	in = append(in, reflect.ValueOf(c))
	in = append(in, args...)
	out := m.fn.Call(in)
	if m.hasErr {
		if e := out[len(out)-1]; !e.IsNil() {
			return nil, e.Interface().(error)
		}
	}
	if m.hasResult {
		return out[0].Interface(), nil
	}
	return nil, nil // void: completes with "result":null
}

// errorMessage is ErrorMessageHelper.BuildErrorMessage: HubException details are always shown,
// others only with detailed errors.
func errorMessage(prefix string, err error, detailed bool) string {
	if err == nil {
		return prefix
	}
	var he *HubError
	if errors.As(err, &he) {
		return prefix + " HubException: " + he.Message
	}
	if !detailed {
		return prefix
	}
	var de *dotnetError
	if errors.As(err, &de) {
		return prefix + " " + de.typ + ": " + de.msg
	}
	return prefix + " Exception: " + err.Error()
}
