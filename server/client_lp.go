package server

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalrd/signalrd/auth"
)

// pollState tracks the long poll currently holding a connection.
type pollState struct {
	active  atomic.Int32 // polls being served; MaxPollInterval counts only while none is
	mu      sync.Mutex
	started bool          // the first poll was answered
	current chan struct{} // closed to end the pending poll with 204
}

// take moves the queued frames out for the poll identified by mine, unless a newer poll
// superseded it (then it must not take anything: the client no longer reads its response).
func (p *pollState) take(o interface {
	Take([][]byte) ([][]byte, bool, bool)
}, mine chan struct{}) (frames [][]byte, done, overrun, superseded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != mine {
		return nil, false, false, true
	}
	frames, done, overrun = o.Take(nil)
	return frames, done, overrun, false
}

// supersede ends the pending poll (a newer one arrived) and returns the channel the new poll
// waits on.
func (p *pollState) supersede() (cancel chan struct{}, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != nil {
		close(p.current)
	}
	p.current = make(chan struct{})
	first = !p.started
	p.started = true
	return p.current, first
}

// release clears the pending poll if it is still cancel.
func (p *pollState) release(cancel chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current == cancel {
		p.current = nil
	}
}

// end completes the pending poll, if any, with 204.
func (p *pollState) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != nil {
		close(p.current)
		p.current = nil
	}
}

func noCache(h http.Header) {
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
}

// serveLongPoll answers one poll: the first at once (it activates the connection), later ones
// with everything queued, an empty 200 after the poll timeout, or 204 when superseded or closed.
func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request, c *client, tok *auth.Token) {
	if !c.claimTransport(w, r, transportNameLongPolling, tok) {
		return
	}
	noCache(w.Header())
	c.poll.active.Add(1)
	defer func() {
		c.touch() // MaxPollInterval counts from the end of the last poll
		c.poll.active.Add(-1)
	}()
	superseded, first := c.poll.supersede()
	defer c.poll.release(superseded)
	if first {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		return
	}
	timer := time.NewTimer(c.in.settings().PollTimeout)
	defer timer.Stop()
	for {
		frames, done, overrun, replaced := c.poll.take(c.out, superseded)
		switch {
		case replaced:
			w.WriteHeader(http.StatusNoContent)
			return
		case overrun:
			c.writePoll(w, [][]byte{c.closeFrame(reasonSlowConsumer, true)})
			c.finish(closeReasonSlowConsumer, reasonSlowConsumer)
			return
		case len(frames) > 0:
			c.writePoll(w, frames)
			if done {
				// Everything was delivered, including the final Close: the next poll gets 204.
				c.finish(c.closeKindOr(closeReasonService), "")
			}
			return
		case done || c.done():
			w.WriteHeader(http.StatusNoContent)
			c.finish(c.closeKindOr(closeReasonService), "")
			return
		}
		select {
		case <-c.out.Ready():
		case <-superseded:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-timer.C:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		case <-r.Context().Done():
			return // the client aborted this poll; MaxPollInterval decides whether it is gone
		case <-c.ctx.Done():
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
}

// writePoll writes a poll body: every queued whole message, back to back.
func (c *client) writePoll(w http.ResponseWriter, frames [][]byte) {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	body := make([]byte, 0, n)
	for _, f := range frames {
		body = append(body, f...)
	}
	clear(frames)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(body); err == nil {
		c.in.met.toClient.add(len(frames), n)
	}
}
