package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// recorder counts what flows during a run. Every method is safe for concurrent use and allocates
// nothing on the per-message paths (sent, recv).
type recorder struct {
	sent, received, expected, errors atomic.Uint64
	measuring                        atomic.Bool
	hist                             histogram

	mu      sync.Mutex
	samples []string // first few error texts
}

const maxErrorSamples = 5

// sentOne counts one message sent that should reach fanout recipients.
func (r *recorder) sentOne(fanout int) {
	r.sent.Add(1)
	r.expected.Add(uint64(fanout))
}

// recv counts one delivered message carrying the sender's timestamp (Unix nanoseconds).
func (r *recorder) recv(sentUnixNano int64) {
	r.received.Add(1)
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
