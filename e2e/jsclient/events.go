package jsclient

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
)

// Event kinds emitted by the driver.
const (
	EventMessage      = "message"      // the server invoked a registered client method
	EventClose        = "close"        // onclose fired; Error is the close reason ("" for a clean stop)
	EventReconnecting = "reconnecting" // onreconnecting fired (automatic reconnect)
	EventReconnected  = "reconnected"  // onreconnected fired; ConnectionID is the new id
)

// Event is one unsolicited line from the driver.
type Event struct {
	Event        string            `json:"event"`
	Conn         string            `json:"conn"`
	Method       string            `json:"method,omitempty"`
	Error        string            `json:"error,omitempty"`
	ConnectionID string            `json:"connectionId,omitempty"`
	Args         []json.RawMessage `json:"args,omitempty"`
}

// IsMessage matches message events for conn and method (method compared
// case-insensitively, as the JS client does).
func IsMessage(conn, method string) func(Event) bool {
	return func(e Event) bool {
		return e.Event == EventMessage && e.Conn == conn && strings.EqualFold(e.Method, method)
	}
}

// IsClose matches the close event of conn.
func IsClose(conn string) func(Event) bool { return isKind(EventClose, conn) }

// IsReconnecting matches reconnecting events of conn.
func IsReconnecting(conn string) func(Event) bool { return isKind(EventReconnecting, conn) }

// IsReconnected matches reconnected events of conn.
func IsReconnected(conn string) func(Event) bool { return isKind(EventReconnected, conn) }

func isKind(kind, conn string) func(Event) bool {
	return func(e Event) bool { return e.Event == kind && e.Conn == conn }
}

// eventLog is an append-only record of every event. WaitEvent consumes
// entries (each event satisfies at most one WaitEvent), while Messages and the
// Events channel see everything regardless of consumption. Appending never
// blocks on readers, so the stdout reader cannot stall behind a slow test.
type eventLog struct {
	mu        sync.Mutex
	events    []Event
	consumed  []bool
	firstFree int           // every index below it is consumed
	changed   chan struct{} // closed and replaced on every append and on close
	closed    bool
	closeErr  error
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) append(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.events = append(l.events, e)
	l.consumed = append(l.consumed, false)
	close(l.changed)
	l.changed = make(chan struct{})
}

// close wakes all waiters; they still get matches from what is already logged.
func (l *eventLog) close(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed, l.closeErr = true, err
	close(l.changed)
}

// wait returns the oldest unconsumed event matching match and marks it
// consumed. Each waiter keeps its own cursor: an event it has already
// rejected stays rejected (match must be deterministic), but remains
// available to other waiters with other predicates.
func (l *eventLog) wait(ctx context.Context, match func(Event) bool) (Event, error) {
	l.mu.Lock()
	pos := l.firstFree
	for {
		for ; pos < len(l.events); pos++ {
			if l.consumed[pos] || !match(l.events[pos]) {
				continue
			}
			l.consumed[pos] = true
			for l.firstFree < len(l.consumed) && l.consumed[l.firstFree] {
				l.firstFree++
			}
			e := l.events[pos]
			l.mu.Unlock()
			return e, nil
		}
		if l.closed {
			err := l.closeErr
			l.mu.Unlock()
			return Event{}, err
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
		l.mu.Lock()
	}
}

// snapshot returns copies of all logged events accepted by keep.
func (l *eventLog) snapshot(keep func(Event) bool) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// next returns the event at index i, or a channel that is closed once that
// index may exist; done reports that the log is closed and i is past its end.
func (l *eventLog) next(i int) (e Event, ok bool, changed <-chan struct{}, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.events) {
		return l.events[i], true, nil, false
	}
	return Event{}, false, l.changed, l.closed
}

// pump feeds every logged event, in order, into out until the log is closed
// and drained or quit is closed; it then closes out.
func (l *eventLog) pump(out chan<- Event, quit <-chan struct{}) {
	defer close(out)
	for i := 0; ; {
		e, ok, changed, done := l.next(i)
		switch {
		case ok:
			select {
			case out <- e:
				i++
			case <-quit:
				return
			}
		case done:
			return
		default:
			select {
			case <-changed:
			case <-quit:
				return
			}
		}
	}
}
