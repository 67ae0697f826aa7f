package appserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// InvokeClient invokes method on one client connection and waits for the value its handler
// returns (client results: ISingleClientProxy.InvokeAsync<T>, sent the way the SDK's
// ServiceLifetimeManager.InvokeConnectionAsync sends it). The client may be hosted by any app
// server of the hub; the service routes the invocation to it and its completion back here.
//
// On the wire: ClientInvocation(invocationId, connectionId, this server's id, payloads) whose
// payloads are an Invocation carrying that invocationId in every hub protocol, written on the
// caller's socket when ctx comes from a hub Context, else on any socket. The invocation id is
// the SDK's "<connectionId>-<32 hex digits>-<n>". The result is decoded into T with the client's
// protocol (encoding/json rules for JSON, vmihailenco/msgpack with json tags for MessagePack).
//
// Errors: a client handler error, an ErrorCompletion from the service (the client disconnected,
// does not exist, ...) or a local client disconnecting ("Connection '<id>' is disconnected.", as
// the SDK reports it) yield a *HubError with that text; no answer within Timing.ClientInvocation
// (10 min) yields ErrClientResultTimeout; ctx ending yields its error; a closed Server ErrClosed.
//
// Hub methods of one connection run one at a time, so a connection's own hub method or
// OnConnected cannot wait for that same connection's result (its completion would only be read
// after the method returns): InvokeClient refuses it with ErrInvokeOwnConnection when ctx is
// that connection's Context (or derived from it). ASP.NET Core refuses it likewise while
// MaximumParallelInvocationsPerClient is 1.
func InvokeClient[T any](ctx context.Context, hc *HubContext, connectionID, method string, args ...any) (T, error) {
	var zero T
	if hc == nil || hc.h == nil {
		return zero, fmt.Errorf("appserver: invoke client: nil HubContext: %w", ErrInvalidArgument)
	}
	out, err := hc.h.invokeClient(ctx, connectionID, method, args)
	if err != nil {
		return zero, err
	}
	var v T
	if err := out.codec.Unmarshal(out.result, &v); err != nil {
		return zero, fmt.Errorf("appserver: invoke %q on %s: decode the result as %T: %w", method, connectionID, v, err)
	}
	return v, nil
}

// Texts of client-result failures reported by the SDK itself.
const textNoResult = "The client completed the invocation without a result."

func textDisconnected(connectionID string) string {
	return "Connection '" + connectionID + "' is disconnected."
}

// callerResults is the SDK's CallerClientResultsManager: the client-result invocations this
// process made, by invocation id, until their completion arrives.
type callerResults struct {
	managerID string // 32 hex digits, Guid.ToString("N")
	last      atomic.Int64

	mu      sync.Mutex
	pending map[string]*pendingResult
}

// pendingResult is one invocation waiting for its completion. The outcome fields are written
// once, before done is closed.
type pendingResult struct {
	h      *hubRuntime
	connID string
	done   chan struct{}
	out    resultOutcome
}

type resultOutcome struct {
	codec  hubproto.Codec
	result hubproto.Raw
	err    error
}

func (r *callerResults) init() {
	var b [16]byte
	_, _ = rand.Read(b[:])
	r.managerID = hex.EncodeToString(b[:])
	r.pending = make(map[string]*pendingResult)
}

// newID is GenerateInvocationId: "{connectionId}-{managerId}-{++n}".
func (r *callerResults) newID(connectionID string) string {
	return connectionID + "-" + r.managerID + "-" + strconv.FormatInt(r.last.Add(1), 10)
}

func (r *callerResults) add(id string, h *hubRuntime, connectionID string) *pendingResult {
	p := &pendingResult{h: h, connID: connectionID, done: make(chan struct{})}
	r.mu.Lock()
	r.pending[id] = p
	r.mu.Unlock()
	return p
}

func (r *callerResults) remove(id string) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

// take removes and returns the pending invocation id of connectionID, or nil. A completion
// naming another connection is not ours to take (ClientResultsManager throws for it).
func (r *callerResults) take(id, connectionID string) *pendingResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[id]
	if p == nil || p.connID != connectionID {
		return nil
	}
	delete(r.pending, id)
	return p
}

func (p *pendingResult) finish(o resultOutcome) {
	p.out = o
	close(p.done)
}

// outcomeOf maps a completion the way the SDK completes its TaskCompletionSource: a result, or a
// HubException with the error.
func outcomeOf(m hubproto.Completion, codec hubproto.Codec) resultOutcome {
	switch {
	case m.Error != "":
		return resultOutcome{err: &HubError{Message: m.Error}}
	case !m.HasResult:
		return resultOutcome{err: &HubError{Message: textNoResult}}
	}
	return resultOutcome{codec: codec, result: m.Result}
}

// completeLocal takes the completion a connection of this process sent for an invocation this
// process made (Caller.TryCompleteResult on SetConnectionResultAsync).
func (r *callerResults) completeLocal(cc *clientConn, m hubproto.Completion) bool {
	p := r.take(m.InvocationID, cc.id)
	if p == nil {
		return false
	}
	// The decoded message must not alias the connection's read buffer (hubproto guarantees it).
	p.finish(outcomeOf(m, cc.codec))
	return true
}

// completeRemote handles ClientCompletion from the service: the completion of a client hosted by
// another server, serialized in the client's protocol.
func (r *callerResults) completeRemote(m svcproto.ClientCompletion) {
	p := r.take(m.InvocationID, m.ConnectionID)
	if p == nil {
		return
	}
	codec := p.h.codecFor(m.Protocol)
	if codec == nil {
		p.finish(resultOutcome{err: &HubError{Message: "Not supported protocol " + m.Protocol + " by server."}})
		return
	}
	msg, _, _, err := codec.Cut(m.Payload, 0)
	if err == nil {
		var hm hubproto.Message
		if hm, err = codec.Decode(msg); err == nil {
			c, ok := hm.(hubproto.Completion)
			if !ok {
				err = fmt.Errorf("the payload of ClientCompletionMessage is a %v, not a completion", hm.Type())
			} else {
				p.finish(outcomeOf(c, codec))
				return
			}
		}
	}
	if errors.Is(err, protocol.ErrIncomplete) {
		err = errors.New("the payload of ClientCompletionMessage is not a complete message")
	}
	p.finish(resultOutcome{err: fmt.Errorf("appserver: client result of %s: %w", m.ConnectionID, err)})
}

// fail completes the pending invocation id with err (ErrorCompletion from the service).
func (r *callerResults) fail(id, connectionID string, err error) {
	if p := r.take(id, connectionID); p != nil {
		p.finish(resultOutcome{err: err})
	}
}

// failConnection fails every invocation of a connection that left this process
// (CleanupInvocationsByConnection, run whenever the SDK removes a client connection).
func (r *callerResults) failConnection(connectionID string) {
	r.failWhere(func(p *pendingResult) bool { return p.connID == connectionID }, func() error {
		return &HubError{Message: textDisconnected(connectionID)}
	})
}

// failAll fails every pending invocation (the Server closed).
func (r *callerResults) failAll(err error) {
	r.failWhere(func(*pendingResult) bool { return true }, func() error { return err })
}

func (r *callerResults) failWhere(match func(*pendingResult) bool, errOf func() error) {
	var gone []*pendingResult
	r.mu.Lock()
	for id, p := range r.pending {
		if match(p) {
			gone = append(gone, p)
			delete(r.pending, id)
		}
	}
	r.mu.Unlock()
	for _, p := range gone {
		p.finish(resultOutcome{err: errOf()})
	}
}

// callerKey finds the connection behind a context derived from a hub Context.
type callerKey struct{}

// invokeClient is InvokeClient without the decoding.
func (h *hubRuntime) invokeClient(ctx context.Context, connectionID, method string, args []any) (resultOutcome, error) {
	s := h.srv
	if connectionID == "" || method == "" {
		return resultOutcome{}, fmt.Errorf("appserver: invoke client: connection id and method: %w", ErrInvalidArgument)
	}
	var scope *clientConn
	if cc, _ := ctx.Value(callerKey{}).(*clientConn); cc != nil && cc.h == h {
		if cc.id == connectionID && cc.inHub.Load() {
			return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s: %w", method, connectionID, ErrInvokeOwnConnection)
		}
		scope = cc // ClientConnectionScope: write on the caller's socket
	}
	s.mu.Lock()
	closed := s.state == stateClosed
	s.mu.Unlock()
	if closed {
		return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s: %w", method, connectionID, ErrClosed)
	}
	if args == nil {
		args = []any{}
	}
	id := s.results.newID(connectionID)
	payloads, err := h.payloadsWithID(id, method, args, nil)
	if err != nil {
		return resultOutcome{}, err
	}
	// Registered before the write: a local client can answer before the write returns.
	p := s.results.add(id, h, connectionID)
	defer s.results.remove(id)
	msg := svcproto.ClientInvocation{InvocationID: id, ConnectionID: connectionID, CallerServerID: s.opts.ServerID, Payloads: payloads}
	if err := h.writeAny(ctx, scope, "", msg); err != nil {
		return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s: %w", method, connectionID, err)
	}
	t := time.NewTimer(s.opts.Timing.ClientInvocation)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s (invocation %s): no result within %v: %w", method, connectionID, id, s.opts.Timing.ClientInvocation, ErrClientResultTimeout)
	case <-ctx.Done():
		return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s: %w", method, connectionID, context.Cause(ctx))
	}
	if p.out.err != nil {
		return resultOutcome{}, fmt.Errorf("appserver: invoke %q on %s: %w", method, connectionID, p.out.err)
	}
	return p.out, nil
}

// sendLocalCompletion tells the service an invocation this process made was answered by a
// client of this process, so it can drop its record. As in the SDK only the ids matter; the
// payload stays empty.
func (cc *clientConn) sendLocalCompletion(invocationID string) {
	name := cc.codec.Name()
	msg := svcproto.ClientCompletion{
		InvocationID:   invocationID,
		ConnectionID:   cc.id,
		CallerServerID: cc.h.srv.opts.ServerID,
		Protocol:       name,
		Payload:        []byte{},
		Ext:            svcproto.Ext{Protocol: name},
	}
	if err := cc.h.writeAny(cc.h.srv.ctx, cc, "", msg); err != nil {
		cc.h.log.Debug("cannot send client completion", "conn_id", cc.id, "error", err)
	}
}
