package server

import (
	"errors"
	"sync"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// statefulState implements SignalR stateful reconnect on the service's side of the client
// connection (service-protocol §9): the app server never sees Ack or Sequence messages. The
// service numbers the trackable messages it sends (1, 2, ...), keeps them until the client acks
// them, and replays them after the client reconnects with the same connection token; in the
// other direction it counts what it forwarded, acks it, and drops what the client replays twice.
type statefulState struct {
	negotiated bool // negotiate answered useStatefulReconnect
	enabled    bool // ... and the handshake asked for protocol version 2

	mu       sync.Mutex // send side: numbering, buffer and the outbox push happen together
	sent     uint64     // trackable messages sent so far
	buf      []bufferedFrame
	bufBytes int
	acked    uint64 // highest id the service acked to the client

	// receive side, guarded by client.inMu
	recvSeq uint64 // highest trackable id forwarded to the app server
	curSeq  uint64 // id of the last trackable message read in the current stream

	detachedAt   time.Time // zero while a transport is attached (guarded by mu)
	lastToServer time.Time // last data forwarded to the app server while detached (guarded by mu)
}

type bufferedFrame struct {
	seq   uint64
	frame []byte
}

// sendStateful numbers and buffers the trackable messages of frame, then queues it (c.st.enabled).
func (c *client) sendStateful(frame []byte) bool {
	st := &c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	for rest := frame; len(rest) > 0; {
		msg, f, r, err := c.codec.Cut(rest, 0)
		if err != nil {
			break // not a whole message: deliver as is, it is not counted
		}
		rest = r
		t, err := c.codec.PeekType(msg)
		if err != nil || !t.Trackable() {
			continue
		}
		st.sent++
		st.buf = append(st.buf, bufferedFrame{seq: st.sent, frame: f})
		st.bufBytes += len(f)
	}
	if st.bufBytes > c.in.settings().StatefulReconnectBufferBytes {
		c.in.srv.spawn(func() { c.closeWith(closeReasonSlowConsumer, reasonSlowConsumer, true) })
		return false
	}
	return c.out.Push(frame)
}

// onAck drops the buffered messages the client has received.
func (c *client) onAck(id uint64) {
	st := &c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for n < len(st.buf) && st.buf[n].seq <= id {
		st.bufBytes -= len(st.buf[n].frame)
		st.buf[n] = bufferedFrame{}
		n++
	}
	st.buf = st.buf[n:]
}

// filterInbound applies stateful bookkeeping to one whole client message (inMu held) and reports
// whether it goes on to the app server.
func (c *client) filterInbound(msg []byte) (forward bool, err error) {
	st := &c.st
	t, err := c.codec.PeekType(msg)
	if err != nil {
		return true, nil // let the app server judge what it cannot parse
	}
	switch {
	case t == hubproto.TypeAck:
		m, err := c.codec.Decode(msg)
		if err != nil {
			return false, err
		}
		if a, ok := m.(hubproto.Ack); ok && a.SequenceID > 0 {
			c.onAck(uint64(a.SequenceID))
		}
		return false, nil
	case t == hubproto.TypeSequence:
		m, err := c.codec.Decode(msg)
		if err != nil {
			return false, err
		}
		s, _ := m.(hubproto.Sequence)
		if s.SequenceID < 1 || uint64(s.SequenceID) > st.recvSeq+1 {
			//lint:ignore ST1005 the official client's text, sent in the Close message
			return false, errors.New("Sequence ID greater than amount of messages we've received.")
		}
		st.curSeq = uint64(s.SequenceID) - 1
		return false, nil
	case t.Trackable():
		st.curSeq++
		if st.curSeq <= st.recvSeq {
			return false, nil // a replay of something already forwarded
		}
		st.recvSeq = st.curSeq
	}
	return true, nil
}

// detach keeps a stateful connection whose transport broke, for the reconnect window.
func (c *client) detach() {
	st := &c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.detachedAt = time.Now()
	st.lastToServer = st.detachedAt
}

// reattach prepares a new transport for a stateful connection: what was queued for the dead one
// is dropped, then Sequence and every unacknowledged message are queued ahead of anything new.
func (c *client) reattach() bool {
	st := &c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if c.out.Closed() {
		return false
	}
	c.out.Take(nil) // frames for the dead socket: trackable ones are in buf, the rest may go
	first := st.sent + 1
	if len(st.buf) > 0 {
		first = st.buf[0].seq
	}
	seq, err := c.codec.Append(nil, &hubproto.Sequence{SequenceID: int64(first)})
	if err != nil || !c.out.Push(seq) {
		return false
	}
	for _, b := range st.buf {
		if !c.out.Push(b.frame) {
			return false
		}
	}
	st.detachedAt = time.Time{}
	st.acked = 0 // ack again what was received, the last Ack may have been lost
	return true
}

// statefulTick runs once a second for stateful connections: it acks what the client sent, keeps
// the app server's client timeout from firing while the client is away, and ends connections
// whose reconnect window passed.
func (c *client) statefulTick(now time.Time) {
	st := &c.st
	st.mu.Lock()
	detachedAt, lastToServer := st.detachedAt, st.lastToServer
	st.mu.Unlock()
	if !detachedAt.IsZero() {
		if now.Sub(detachedAt) > c.in.settings().StatefulReconnectWindow {
			c.out.Discard()
			c.finish(closeReasonTimeout, "The client did not reconnect within the stateful reconnect window.")
			return
		}
		if now.Sub(lastToServer) >= 15*time.Second {
			c.pingServerForClient(now)
		}
		return
	}
	if !c.inMu.TryLock() {
		return // receiving right now: ack on a later tick
	}
	recv := st.recvSeq
	c.inMu.Unlock()
	st.mu.Lock()
	due := recv > st.acked
	if due {
		st.acked = recv
	}
	st.mu.Unlock()
	if due {
		if f, err := c.codec.Append(nil, &hubproto.Ack{SequenceID: int64(recv)}); err == nil {
			c.out.Push(f)
		}
	}
}

// pingServerForClient sends a hub Ping in the client's name so the app server's client timeout
// does not end a connection that is only waiting for its client to reconnect.
func (c *client) pingServerForClient(now time.Time) {
	l := c.link.Load()
	if l == nil {
		return
	}
	f, err := c.codec.Append(nil, &hubproto.Ping{})
	if err != nil {
		return
	}
	l.sendControl(svcproto.ConnectionData{ConnectionID: c.id, Payload: f})
	c.st.mu.Lock()
	c.st.lastToServer = now
	c.st.mu.Unlock()
}

// handshakeForApp is the handshake forwarded to the app server. A stateful client asks for
// version 2, but the service owns stateful reconnect, so the app server is asked for version 1
// (which every ASP.NET Core version supports).
func (c *client) handshakeForApp(req hubproto.HandshakeRequest, raw []byte) []byte {
	if !c.st.enabled {
		return append([]byte(nil), raw...)
	}
	return hubproto.AppendHandshakeRequest(nil, hubproto.HandshakeRequest{Protocol: req.Protocol, Version: 1})
}
