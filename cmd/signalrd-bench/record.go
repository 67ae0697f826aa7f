package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// recorder counts what flows during a run. Every method is safe for concurrent use and allocates
// nothing on the per-message paths (sent, recv).
//
// By default the window is one of receipt: a run counts what was sent and what arrived while
// measuring, and the latencies of what arrived. With bySend it is one of sending: the messages
// stamped (sent) within [winStart, winEnd) are counted, with their recipients, and so are their
// deliveries and latencies whenever they arrive, so that no message is split across the edges of the
// window (a broadcast to 10,000 clients near an edge would otherwise move the counts by percents).
type recorder struct {
	sent, received, expected, errors atomic.Uint64
	measuring                        atomic.Bool
	hist                             histogram

	bySend               atomic.Bool
	winStart, winEnd     atomic.Int64 // Unix nanoseconds
	sentWin, expectedWin atomic.Uint64
	receivedWin          atomic.Uint64

	mu      sync.Mutex
	samples []string // first few error texts
}

const maxErrorSamples = 5

// sentOne counts one message sent that should reach fanout recipients.
func (r *recorder) sentOne(fanout int) {
	r.sent.Add(1)
	r.expected.Add(uint64(fanout))
}

// sentAt is sentOne for a message stamped ts.
func (r *recorder) sentAt(ts int64, fanout int) {
	r.sentOne(fanout)
	if r.bySend.Load() && r.inWindow(ts) {
		r.sentWin.Add(1)
		r.expectedWin.Add(uint64(fanout))
	}
}

func (r *recorder) inWindow(ts int64) bool { return ts >= r.winStart.Load() && ts < r.winEnd.Load() }

// openSendWindow counts, by send time, the messages stamped from start on (bySend). start should
// be a little ahead of the clock, so no sender has taken a later stamp yet.
func (r *recorder) openSendWindow(start int64) {
	r.winStart.Store(math.MaxInt64)
	r.winEnd.Store(math.MaxInt64)
	r.sentWin.Store(0)
	r.expectedWin.Store(0)
	r.receivedWin.Store(0)
	r.bySend.Store(true)
	r.winStart.Store(start)
}

// closeSendWindow ends the window at end (a little ahead of the clock); deliveries of the messages
// sent in it still count until stopSendWindow.
func (r *recorder) closeSendWindow(end int64) { r.winEnd.Store(end) }

func (r *recorder) stopSendWindow() { r.bySend.Store(false) }

// recv counts one delivered message carrying the sender's timestamp (Unix nanoseconds).
func (r *recorder) recv(sentUnixNano int64) {
	r.received.Add(1)
	if r.bySend.Load() {
		if r.inWindow(sentUnixNano) {
			r.receivedWin.Add(1)
			r.hist.Record(time.Duration(time.Now().UnixNano() - sentUnixNano))
		}
		return
	}
	if r.measuring.Load() {
		r.hist.Record(time.Duration(time.Now().UnixNano() - sentUnixNano))
	}
}

// fail counts an error; cancellations at the end of a run are not errors.
func (r *recorder) fail(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	r.errors.Add(1)
	r.mu.Lock()
	if len(r.samples) < maxErrorSamples {
		r.samples = append(r.samples, fmt.Sprintf("%s: %v", op, err))
	}
	r.mu.Unlock()
}

// takeErrorSamples returns the samples and forgets them (the next phase collects its own).
func (r *recorder) takeErrorSamples() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.samples
	r.samples = nil
	return s
}

func (r *recorder) errorSamples() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.samples...)
}

// counts is a snapshot of the counters.
type counts struct{ sent, received, expected, errors uint64 }

func (r *recorder) snapshot() counts {
	return counts{r.sent.Load(), r.received.Load(), r.expected.Load(), r.errors.Load()}
}
