package transport

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Drain is Pump without a resident goroutine: it drains an outbox into a writer from a goroutine
// that exists only while there is something to write. A push into an idle outbox starts the
// goroutine; it writes batches until the outbox is empty and exits. An idle connection thus
// costs no goroutine (and no stack) for writing. At most one drain goroutine runs per outbox,
// so writes stay serialized and in order, as with Pump.
//
// The drain ends when the outbox is closed and drained (end(nil)), overrun (end(ErrOverrun)),
// or a write fails (end(err)); end runs once, on the drain goroutine, and nothing is written
// after it.
type Drain struct {
	o   *Outbox
	ctx context.Context
	w   BatchWriter
	wt  time.Duration
	end func(error)

	wg    sync.WaitGroup
	ended bool         // guarded by o.mu: no goroutine starts any more
	last  atomic.Int64 // unix nanos of the last write (or of Attach)
	buf   [][]byte     // reused between batches, owned by the running goroutine
}

// DeadlineWriter is a BatchWriter that bounds a write by a deadline it is given (a socket write
// deadline, say). A Drain gives it the deadline instead of a context per write, which costs an
// allocation and a timer per write, and which a WebSocket library may keep referenced until the
// next write.
type DeadlineWriter interface {
	WriteBatchBy(deadline time.Time, frames [][]byte) error
}

// DrainOptions tune a Drain.
type DrainOptions struct {
	// WriteTimeout bounds one batch write; 0 means 10 s.
	WriteTimeout time.Duration
	// End, when set, is called once when the drain ends (see Drain).
	End func(err error)
}

// Attach drains o into w with writes bounded by ctx (a cancelled ctx fails the write in
// progress and ends the drain at its next write; a DeadlineWriter only sees the latter). It replaces any drain attached before
// (which must have been stopped). If frames are already queued, or the outbox is closed, the
// goroutine starts at once.
func (o *Outbox) Attach(ctx context.Context, w BatchWriter, opt DrainOptions) *Drain {
	d := &Drain{o: o, ctx: ctx, w: w, wt: opt.WriteTimeout, end: opt.End}
	if d.wt <= 0 {
		d.wt = 10 * time.Second
	}
	d.last.Store(time.Now().UnixNano())
	o.mu.Lock()
	o.drain = d
	o.draining = false
	run := o.signal()
	o.mu.Unlock()
	run.start()
	return d
}

// start runs the drain goroutine (d may be nil: nothing to start).
func (d *Drain) start() {
	if d != nil {
		go d.run()
	}
}

func (d *Drain) run() {
	defer d.wg.Done()
	for {
		frames, done, overrun, stop := d.take()
		if stop {
			return
		}
		if overrun {
			d.finish(ErrOverrun)
			return
		}
		if len(frames) > 0 {
			if err := d.write(frames); err != nil {
				d.finish(err)
				return
			}
		}
		clear(frames)
		d.buf = frames[:0]
		if done {
			d.finish(nil)
			return
		}
	}
}

// take moves the queued frames out, or parks the drain (stop) when there are none and the
// outbox is open, or when the drain was stopped.
func (d *Drain) take() (frames [][]byte, done, overrun, stop bool) {
	o := d.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drain != d || d.ended {
		return nil, false, false, true // stopped: o.draining belongs to whatever is attached now
	}
	if o.overrun {
		return nil, false, true, false
	}
	if len(o.frames) == 0 {
		if o.closed {
			return nil, true, false, false
		}
		o.draining = false
		if cap(d.buf) > 64 {
			d.buf = nil // do not pin a burst's slice on an idle connection
		}
		return nil, false, false, true
	}
	frames, o.frames = o.frames, d.buf
	o.size = 0
	o.wakeWaiters()
	return frames, o.closed, false, false
}

func (d *Drain) write(frames [][]byte) error {
	now := time.Now()
	d.last.Store(now.UnixNano())
	if dw, ok := d.w.(DeadlineWriter); ok {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		return dw.WriteBatchBy(now.Add(d.wt), frames)
	}
	wctx, cancel := context.WithTimeout(d.ctx, d.wt)
	defer cancel()
	return d.w.WriteBatch(wctx, frames)
}

func (d *Drain) finish(err error) {
	o := d.o
	o.mu.Lock()
	d.ended = true
	if o.drain == d {
		o.draining = false
	}
	o.mu.Unlock()
	if d.end != nil {
		d.end(err)
	}
}

// LastWrite is when the drain last started a write (or was attached).
func (d *Drain) LastWrite() time.Time { return time.Unix(0, d.last.Load()) }

// Wait waits until no drain goroutine runs. After the outbox was closed (Close, Discard) it
// returns once the drain has ended and its end callback returned.
func (d *Drain) Wait() { d.wg.Wait() }

// Stop detaches the drain without ending the outbox: no goroutine starts any more, and Stop waits
// for a running one (cancel the drain's context first for it to give up a blocked write). The
// outbox keeps what is queued, for a drain attached later. End is not called by Stop itself.
func (d *Drain) Stop() {
	o := d.o
	o.mu.Lock()
	d.ended = true
	if o.drain == d {
		o.drain = nil
	}
	o.mu.Unlock()
	d.wg.Wait()
}
