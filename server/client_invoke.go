package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// serviceCalls are invocations the service itself sends to a client (REST :invoke) and whose
// Completion it consumes instead of forwarding.
type serviceCalls struct {
	pending atomic.Int32 // fast path: inbound messages are only inspected while calls are pending
	mu      sync.Mutex
	calls   map[string]chan hubproto.Completion
	next    uint64
}

// errConnectionClosed is returned to service invocations whose client went away.
var errConnectionClosed = errors.New("server: the connection closed before completing the invocation")

// invoke sends an Invocation with a service-owned id to the client and waits for its Completion.
// JSON arguments are converted for MessagePack clients.
func (c *client) invoke(ctx context.Context, target string, args []json.RawMessage) (hubproto.Completion, error) {
	if c.codec == nil {
		return hubproto.Completion{}, errors.New("server: the connection has not completed its handshake")
	}
	sc := &c.calls
	sc.mu.Lock()
	if sc.calls == nil {
		sc.calls = map[string]chan hubproto.Completion{}
	}
	sc.next++
	id := fmt.Sprintf("asrs-%d", sc.next)
	ch := make(chan hubproto.Completion, 1)
	sc.calls[id] = ch
	sc.pending.Add(1)
	sc.mu.Unlock()
	defer func() {
		sc.mu.Lock()
		if _, ok := sc.calls[id]; ok {
			delete(sc.calls, id)
			sc.pending.Add(-1)
		}
		sc.mu.Unlock()
	}()
	raw := make([]hubproto.Raw, len(args))
	for i, a := range args {
		r := hubproto.Raw(a)
		if c.codec.Format() != hubproto.JSON().Format() {
			var err error
			if r, err = hubproto.JSONToMessagePack(r); err != nil {
				return hubproto.Completion{}, fmt.Errorf("argument %d: %w", i, err)
			}
		}
		raw[i] = r
	}
	frame, err := c.codec.Append(nil, &hubproto.Invocation{InvocationID: id, Target: target, Arguments: raw})
	if err != nil {
		return hubproto.Completion{}, fmt.Errorf("encode invocation: %w", err)
	}
	if !c.Send(frame) {
		return hubproto.Completion{}, errConnectionClosed
	}
	c.traceServiceSend(frame, traceRESTServer)
	select {
	case comp := <-ch:
		return comp, nil
	case <-c.ctx.Done():
		return hubproto.Completion{}, errConnectionClosed
	case <-ctx.Done():
		return hubproto.Completion{}, ctx.Err()
	}
}

// takeCompletion consumes a client's Completion that answers a service invocation (inMu held).
func (c *client) takeCompletion(msg []byte) bool {
	if c.calls.pending.Load() == 0 {
		return false
	}
	if t, err := c.codec.PeekType(msg); err != nil || t != hubproto.TypeCompletion {
		return false
	}
	m, err := c.codec.Decode(msg)
	if err != nil {
		return false
	}
	comp, ok := m.(hubproto.Completion)
	if !ok {
		return false
	}
	sc := &c.calls
	sc.mu.Lock()
	ch, ok := sc.calls[comp.InvocationID]
	if ok {
		delete(sc.calls, comp.InvocationID)
		sc.pending.Add(-1)
	}
	sc.mu.Unlock()
	if ok {
		ch <- comp
	}
	return ok
}
