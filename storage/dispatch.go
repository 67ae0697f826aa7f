package storage

import (
	"slices"
	"sync"
	"sync/atomic"
)

// topicEntry is one locally subscribed topic: its name as the caller gave it and its
// subscribers. subs is copy-on-write so the dispatcher reads it without a lock; writers hold
// the owning backend's lock.
type topicEntry struct {
	name string
	subs atomic.Pointer[[]*subscription]
}

// add and remove are called with the owner's lock held.
func (t *topicEntry) add(s *subscription) {
	var next []*subscription
	if cur := t.subs.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, s)
	t.subs.Store(&next)
}

func (t *topicEntry) remove(s *subscription) (left int) {
	cur := t.subs.Load()
	if cur == nil {
		return 0
	}
	next := slices.DeleteFunc(slices.Clone(*cur), func(x *subscription) bool { return x == s })
	t.subs.Store(&next)
	return len(next)
}

type subscription struct {
	topic  string
	h      Handler
	closed atomic.Bool
	unsub  func(*subscription)
}

func (s *subscription) Topic() string { return s.topic }

func (s *subscription) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.unsub(s)
}

// dispatcher hands received messages to handlers on its one goroutine, in arrival order, so
// that receiving (a Redis connection, or a Memory Publish) never waits for a handler and
// handlers may call Subscribe, which waits for the receiver. Its queue is bounded in bytes.
type dispatcher struct {
	max       int
	delivered *atomic.Uint64 // counts messages handed out, or nil

	mu     sync.Mutex
	queue  []delivery
	bytes  int
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

type delivery struct {
	t       *topicEntry
	payload []byte
}

func newDispatcher(maxBytes int, delivered *atomic.Uint64) *dispatcher {
	d := &dispatcher{
		max:       maxBytes,
		delivered: delivered,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go d.run()
	return d
}

// push queues one message; false when the queue is over its bound or closed.
func (d *dispatcher) push(t *topicEntry, payload []byte) bool {
	d.mu.Lock()
	if d.closed || d.bytes > 0 && d.bytes+len(payload) > d.max {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, delivery{t, payload})
	d.bytes += len(payload)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return true
}

func (d *dispatcher) run() {
	defer close(d.done)
	var batch []delivery
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.mu.Unlock()
			<-d.wake
			d.mu.Lock()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		// Swap buffers: producers append to the spare while handlers run.
		batch, d.queue = d.queue, batch[:0]
		d.mu.Unlock()
		n := 0
		for i := range batch {
			dv := &batch[i]
			if subs := dv.t.subs.Load(); subs != nil {
				for _, s := range *subs {
					if !s.closed.Load() {
						s.h(dv.t.name, dv.payload)
					}
				}
			}
			n += len(dv.payload)
			*dv = delivery{}
		}
		if d.delivered != nil {
			d.delivered.Add(uint64(len(batch)))
		}
		d.mu.Lock()
		d.bytes -= n
		d.mu.Unlock()
	}
}

// close drops what is queued and waits for the goroutine (and any handler it is running).
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.queue = nil
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	<-d.done
}
