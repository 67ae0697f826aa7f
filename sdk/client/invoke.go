package client

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// On registers fn for server invocations of method (case-insensitive, like the JS client).
// Several handlers may be registered for one method; they run in registration order on the
// reader goroutine and must not block. args are owned by the handler.
func (c *Conn) On(method string, fn func(args []hubproto.Raw)) {
	key := strings.ToLower(method)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Copy on write, so the reader can iterate a snapshot without holding mu.
	hs := c.handlers[key]
	c.handlers[key] = append(hs[:len(hs):len(hs)], fn)
}

// Off removes every On and OnResult handler of method.
func (c *Conn) Off(method string) {
	key := strings.ToLower(method)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.handlers, key)
	delete(c.results, key)
}

// OnResult registers fn as the single handler answering client-result invocations of method
// (server Invocations carrying an invocation id). Its result, or its error's text, is sent back
// in a Completion; a nil result is sent as null. fn runs on its own goroutine.
func (c *Conn) OnResult(method string, fn func(args []hubproto.Raw) (any, error)) {
	key := strings.ToLower(method)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results[key] = fn
}

// Unmarshal decodes an argument or result in the connection's protocol into v.
func (c *Conn) Unmarshal(raw hubproto.Raw, v any) error {
	if err := c.codec.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("client: unmarshal: %w", err)
	}
	return nil
}

// Decode decodes an argument or result in c's protocol into a T.
func Decode[T any](c *Conn, raw hubproto.Raw) (T, error) {
	var v T
	err := c.Unmarshal(raw, &v)
	return v, err
}

// Invoke calls a hub method and waits for its Completion. It returns the result (nil for a
// void method), a *HubError carrying the hub's error text, ctx's error, or an error wrapping
// ErrClosed. Arguments are marshalled by the codec; a hubproto.Raw argument is sent as is.
func (c *Conn) Invoke(ctx context.Context, method string, args ...any) (hubproto.Raw, error) {
	ch := make(chan completion, 1)
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return nil, fmt.Errorf("client: invoke %s: %w", method, c.closedErr())
	}
	id := strconv.FormatUint(c.nextID, 10)
	c.nextID++
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.sendInvocation(ctx, id, method, args); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("client: invoke %s: %w", method, err)
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("client: invoke %s: %w", method, ctx.Err())
	}
}

// InvokeInto is Invoke followed by Unmarshal of the result into v (left alone for a void
// result or a nil v).
func (c *Conn) InvokeInto(ctx context.Context, v any, method string, args ...any) error {
	raw, err := c.Invoke(ctx, method, args...)
	if err != nil || v == nil || raw == nil {
		return err
	}
	return c.Unmarshal(raw, v)
}

// Send calls a hub method without waiting for (or asking for) a result.
func (c *Conn) Send(ctx context.Context, method string, args ...any) error {
	if err := c.sendInvocation(ctx, "", method, args); err != nil {
		return fmt.Errorf("client: send %s: %w", method, err)
	}
	return nil
}

// sendInvocation marshals args and writes the Invocation, reusing the Conn's scratch
// message and argument slice under the write lock.
func (c *Conn) sendInvocation(ctx context.Context, id, method string, args []any) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	c.wargs = c.wargs[:0]
	for i, a := range args {
		raw, err := c.codec.Marshal(a)
		if err != nil {
			return fmt.Errorf("marshal argument %d: %w", i, err)
		}
		c.wargs = append(c.wargs, raw)
	}
	c.winv = hubproto.Invocation{InvocationID: id, Target: method, Arguments: c.wargs}
	err := c.writeLocked(context.Background(), &c.winv)
	clear(c.wargs) // drop references to the caller's data
	c.winv = hubproto.Invocation{}
	return err
}

// forget drops a pending invocation whose caller gave up.
func (c *Conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// complete delivers a Completion to the waiting Invoke, if any.
func (c *Conn) complete(m *hubproto.Completion) {
	c.mu.Lock()
	ch, ok := c.pending[m.InvocationID]
	delete(c.pending, m.InvocationID)
	c.mu.Unlock()
	if !ok {
		c.log.Debug("completion for unknown invocation", "invocation_id", m.InvocationID)
		return
	}
	switch {
	case m.Error != "":
		ch <- completion{err: &HubError{Message: m.Error}}
	case m.HasResult:
		ch <- completion{result: m.Result}
	default:
		ch <- completion{}
	}
}

// invokeClient runs the handlers of a server Invocation (reader goroutine).
func (c *Conn) invokeClient(m *hubproto.Invocation) {
	key := c.lowerTarget(m.Target)
	c.mu.Lock()
	hs := c.handlers[key]
	var rf func([]hubproto.Raw) (any, error)
	if m.InvocationID != "" {
		rf = c.results[key]
	}
	c.mu.Unlock()

	if rf != nil {
		id, args := m.InvocationID, m.Arguments
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.reply(id, rf, args)
		}()
		return
	}
	for _, h := range hs {
		h(m.Arguments)
	}
	if len(hs) == 0 {
		c.log.Warn("no client method found", "method", key)
	}
	if m.InvocationID != "" {
		// The server waits for a result that no handler can give (JS client behaviour).
		c.sendCompletion(hubproto.Completion{InvocationID: m.InvocationID, Error: errNoResult})
	}
}

// reply runs a client-result handler and sends its Completion.
func (c *Conn) reply(id string, fn func([]hubproto.Raw) (any, error), args []hubproto.Raw) {
	res, err := fn(args)
	comp := hubproto.Completion{InvocationID: id}
	if err != nil {
		comp.Error = err.Error()
	} else if raw, merr := c.codec.Marshal(res); merr != nil {
		comp.Error = "client: marshal result: " + merr.Error()
	} else {
		comp.HasResult, comp.Result = true, raw
	}
	c.sendCompletion(comp)
}

func (c *Conn) sendCompletion(comp hubproto.Completion) {
	// Wait for the write turn only while the connection lives.
	if err := c.writeMsg(c.ctx, context.Background(), &comp); err != nil {
		c.log.Debug("sending completion failed", "invocation_id", comp.InvocationID, "err", err)
	}
}
