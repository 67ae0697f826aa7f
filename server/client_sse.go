package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/transport"
)

// serveSSE runs the server-to-client half of a Server-Sent Events connection; the client sends
// with POST. The stream lives as long as this request.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, c *client, tok *auth.Token) {
	if !c.claimTransport(w, r, transportNameSSE, tok) {
		return
	}
	if !c.attached.CompareAndSwap(false, true) {
		textError(w, http.StatusConflict, "The connection already has an active event stream.")
		return
	}
	defer c.attached.Store(false)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache,no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Encoding", "identity")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Browsers fire onopen only once bytes arrive; the JS client waits for onopen.
	_, _ = w.Write([]byte(":\r\n"))
	if err := rc.Flush(); err != nil {
		c.finish(closeReasonClient, "")
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	go func() {
		// The client stops by closing the EventSource: the request context ends.
		select {
		case <-r.Context().Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := transport.Pump(ctx, c.out, c.in.met.toClient.counting(&sseWriter{w: w, rc: rc}), c.pumpOptions())
	kind, reason := c.closeKindOr(closeReasonClient), ""
	switch {
	case errors.Is(err, transport.ErrOverrun):
		kind, reason = closeReasonSlowConsumer, reasonSlowConsumer
		c.finish(kind, reason) // tell the app server now: the client may never read the close
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = (&sseWriter{w: w, rc: rc}).WriteBatch(wctx, [][]byte{c.closeFrame(reasonSlowConsumer, true)})
		cancel()
	case err != nil && r.Context().Err() == nil && !errors.Is(err, context.Canceled):
		reason = "Client transport failed: " + err.Error()
	}
	c.finish(kind, reason)
}

// sseWriter writes each batch as one event: a data: line per line of the payload, then a blank
// line. Several whole hub messages may share an event; the client splits them.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

func (s *sseWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	s.buf = s.buf[:0]
	for _, f := range frames {
		s.buf = append(s.buf, f...)
	}
	payload := s.buf
	var out []byte
	for len(payload) > 0 {
		line := payload
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i], payload[i+1:]
		} else {
			payload = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		out = append(out, "data: "...)
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	out = append(out, '\r', '\n')
	if dl, ok := ctx.Deadline(); ok {
		_ = s.rc.SetWriteDeadline(dl)
		defer s.rc.SetWriteDeadline(time.Time{})
	}
	if _, err := s.w.Write(out); err != nil {
		return err
	}
	if cap(s.buf) > 64<<10 {
		s.buf = nil
	}
	return s.rc.Flush()
}
