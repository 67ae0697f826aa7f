package transport

import (
	"context"
	"errors"
	"sync"
)

var (
	// ErrClosed is returned when pushing to a closed outbox.
	ErrClosed = errors.New("transport: outbox closed")
	// ErrOverrun means the outbox went over its byte bound: the peer is a slow consumer.
	ErrOverrun = errors.New("transport: outbox overrun (slow consumer)")
)

// Outbox is a FIFO of whole frames bounded in bytes. A frame larger than the bound is still
// accepted when the outbox is empty, so one big message never counts as a slow consumer.
type Outbox struct {
	max int

	mu      sync.Mutex
	frames  [][]byte
	size    int
	closed  bool // no more pushes; what is queued is still drained
	overrun bool
	ready   chan struct{} // signalled (cap 1) when frames arrive or state changes; made by Ready
	space   chan struct{} // made by a waiting PushWait; closed (and cleared) when the outbox drains

	drain    *Drain // attached on-demand writer, if any
	draining bool   // its goroutine runs
}

// NewOutbox returns an outbox holding at most max bytes (max <= 0: unbounded).
func NewOutbox(max int) *Outbox {
	return &Outbox{max: max}
}

// signal wakes the consumer (mu held): the Ready channel's reader, or an attached Drain, whose
// goroutine is started if it is not running; the caller runs the returned Drain (if not nil)
// after unlocking.
func (o *Outbox) signal() *Drain {
	if o.ready != nil {
		select {
		case o.ready <- struct{}{}:
		default:
		}
	}
	if d := o.drain; d != nil && !o.draining && !d.ended && (len(o.frames) > 0 || o.closed) {
		o.draining = true
		d.wg.Add(1)
		return d
	}
	return nil
}

// wakeWaiters releases every PushWait blocked on the current space channel; called with mu held
// whenever the outbox is drained or closed, so a waiter re-checks and never outlives the outbox.
func (o *Outbox) wakeWaiters() {
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
}

func (o *Outbox) fits(n int) bool { return o.max <= 0 || o.size == 0 || o.size+n <= o.max }

// Push queues a frame without blocking. Over the bound it marks the outbox overrun, closes it and
// returns false; the pump then reports ErrOverrun.
func (o *Outbox) Push(frame []byte) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if !o.fits(len(frame)) {
		o.overrun = true
		o.closed = true
		o.frames = nil
		o.size = 0
		o.wakeWaiters()
		d := o.signal()
		o.mu.Unlock()
		d.start()
		return false
	}
	o.frames = append(o.frames, frame)
	o.size += len(frame)
	d := o.signal()
	o.mu.Unlock()
	d.start()
	return true
}

// PushWait queues a frame, waiting while more than limit bytes are queued. It is for producers that
// should feel back-pressure (client data flowing to one app-server link), never for fan-out. It
// ignores the outbox's own bound, so it never overruns the outbox.
func (o *Outbox) PushWait(ctx context.Context, limit int, frame []byte) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if limit <= 0 || o.size == 0 || o.size+len(frame) <= limit {
			o.frames = append(o.frames, frame)
			o.size += len(frame)
			d := o.signal()
			o.mu.Unlock()
			d.start()
			return nil
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready is signalled when frames may be available. The channel is made on first use (an outbox
// drained by a Drain never needs one).
func (o *Outbox) Ready() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready == nil {
		o.ready = make(chan struct{}, 1)
		if len(o.frames) > 0 || o.closed {
			o.ready <- struct{}{}
		}
	}
	return o.ready
}

// Take moves every queued frame to buf (which it reuses) and reports whether the outbox is closed
// and drained (done) and whether it was overrun.
func (o *Outbox) Take(buf [][]byte) (frames [][]byte, done, overrun bool) {
	clear(buf)
	buf = buf[:0]
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.frames) > 0 {
		frames, o.frames = o.frames, buf
		o.size = 0
		o.wakeWaiters()
	} else {
		frames = buf
	}
	return frames, o.closed && len(o.frames) == 0, o.overrun
}

// Close stops further pushes; frames already queued are still drained by the pump.
func (o *Outbox) Close() {
	o.mu.Lock()
	var d *Drain
	if !o.closed {
		o.closed = true
		o.wakeWaiters()
		d = o.signal()
	}
	o.mu.Unlock()
	d.start()
}

// Discard closes the outbox and drops what it holds (the peer is gone).
func (o *Outbox) Discard() {
	o.mu.Lock()
	o.closed = true
	o.frames = nil
	o.size = 0
	o.wakeWaiters()
	d := o.signal()
	o.mu.Unlock()
	d.start()
}

// Len is the number of bytes queued.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size
}

// Closed reports whether the outbox takes no more frames.
func (o *Outbox) Closed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}
