package server

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/signalrd/signalrd/protocol"
	"github.com/signalrd/signalrd/protocol/hubproto"
	"github.com/signalrd/signalrd/protocol/svcproto"
)

// Live trace: a bounded, non-blocking event bus owned by the Server. Emitters never wait: each
// viewer has a bounded channel and a viewer that falls behind loses events (and is told how
// many). Nothing is built while nobody watches: every emit checks an atomic subscriber count
// first. The ring buffer keeps the last events (without payloads) for a viewer that just
// arrived. The HTTP side is in trace_page.go.

// Trace event kinds.
const (
	traceClientConnected    = "client.connected"
	traceClientDisconnected = "client.disconnected"
	traceServerConnected    = "server.connected"
	traceServerDisconnected = "server.disconnected"
	traceMessage            = "message"
)

// Message directions.
const (
	traceClientToServer = "client-to-server"
	traceServerToClient = "server-to-client"
)

const (
	traceRingSize    = 256     // events kept for new viewers
	traceSubBuffer   = 512     // events queued per viewer before it drops
	tracePayloadMax  = 1 << 10 // payload bytes shown, when asked
	traceMaxViewers  = 64      // concurrent viewers (each holds a goroutine and a buffer)
	payloadEncText   = "text"
	payloadEncBase64 = "base64"
)

// traceEvent is one live-trace event, as the /trace/events stream sends it (JSON).
type traceEvent struct {
	Seq          uint64    `json:"seq"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	Instance     string    `json:"instance"`
	Hub          string    `json:"hub"`
	ConnectionID string    `json:"connectionId,omitempty"`
	UserID       string    `json:"userId,omitempty"`
	Transport    string    `json:"transport,omitempty"`
	Protocol     string    `json:"protocol,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	ServerID     string    `json:"serverId,omitempty"`
	CID          string    `json:"cid,omitempty"`
	SocketType   string    `json:"socketType,omitempty"`
	Clients      int       `json:"clients,omitempty"` // server.disconnected: clients closed with it
	Direction    string    `json:"direction,omitempty"`
	Target       string    `json:"target,omitempty"` // server-to-client fan-out: broadcast, group:…, user:…, connections
	Size         int       `json:"size,omitempty"`
	MessageType  string    `json:"messageType,omitempty"`
	// Payload is set only for viewers that asked for payloads: the first tracePayloadMax bytes,
	// as text or base64 (PayloadEncoding).
	Payload         string `json:"payload,omitempty"`
	PayloadEncoding string `json:"payloadEncoding,omitempty"`
	Truncated       bool   `json:"truncated,omitempty"`

	rawPayload []byte // captured only while a payload viewer is subscribed
	binary     bool
}

// traceSub is one viewer.
type traceSub struct {
	ch        chan *traceEvent
	payloads  bool
	instances map[string]bool // nil: every instance
	dropped   atomic.Uint64
}

// traceBus is the Server's live-trace bus. The zero value is ready; it is goroutine-safe and
// never blocks an emitter.
type traceBus struct {
	subs        atomic.Int32
	payloadSubs atomic.Int32

	mu      sync.Mutex
	seq     uint64
	ring    []*traceEvent // circular, len <= traceRingSize
	next    int
	viewers map[*traceSub]struct{}
}

// on reports whether anyone watches; emitters check it before building an event.
func (b *traceBus) on() bool { return b.subs.Load() > 0 }

// subscribe adds a viewer and returns the recent events it may see (oldest first). ok is false
// when too many viewers are connected.
func (b *traceBus) subscribe(payloads bool, instances map[string]bool) (sub *traceSub, recent []*traceEvent, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.viewers) >= traceMaxViewers {
		return nil, nil, false
	}
	if b.viewers == nil {
		b.viewers = map[*traceSub]struct{}{}
	}
	sub = &traceSub{ch: make(chan *traceEvent, traceSubBuffer), payloads: payloads, instances: instances}
	b.viewers[sub] = struct{}{}
	b.subs.Add(1)
	if payloads {
		b.payloadSubs.Add(1)
	}
	n := len(b.ring)
	for i := range n {
		e := b.ring[(b.next+i)%n]
		if sub.wants(e) {
			recent = append(recent, e)
		}
	}
	return sub, recent, true
}

func (b *traceBus) unsubscribe(sub *traceSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.viewers[sub]; !ok {
		return
	}
	delete(b.viewers, sub)
	b.subs.Add(-1)
	if sub.payloads {
		b.payloadSubs.Add(-1)
	}
}

func (s *traceSub) wants(e *traceEvent) bool { return s.instances == nil || s.instances[e.Instance] }

// publish stamps e and hands it to every viewer without blocking.
func (b *traceBus) publish(e *traceEvent) {
	var full *traceEvent
	if e.rawPayload != nil {
		full = e.withPayload()
	}
	e.rawPayload = nil // the ring and payload-less viewers never see payloads
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq, e.Time = b.seq, time.Now().UTC()
	if full != nil {
		full.Seq, full.Time = e.Seq, e.Time
	}
	if len(b.ring) < traceRingSize {
		b.ring = append(b.ring, e)
	} else {
		b.ring[b.next] = e
		b.next = (b.next + 1) % traceRingSize
	}
	for sub := range b.viewers {
		if !sub.wants(e) {
			continue
		}
		ev := e
		if sub.payloads && full != nil {
			ev = full
		}
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
		}
	}
}

// withPayload returns a copy of e carrying its captured payload, encoded.
func (e *traceEvent) withPayload() *traceEvent {
	c := *e
	c.rawPayload = nil
	p := e.rawPayload
	if len(p) > tracePayloadMax {
		p, c.Truncated = p[:tracePayloadMax], true
	}
	if e.binary || !utf8.Valid(p) {
		c.Payload, c.PayloadEncoding = base64.StdEncoding.EncodeToString(p), payloadEncBase64
	} else {
		c.Payload, c.PayloadEncoding = string(p), payloadEncText
	}
	return &c
}

// capture keeps the first payload bytes when a payload viewer is subscribed (copied: the
// caller's buffer is reused).
func (b *traceBus) capture(e *traceEvent, p []byte, binary bool) {
	if b.payloadSubs.Load() == 0 || len(p) == 0 {
		return
	}
	e.rawPayload = append([]byte(nil), p[:min(len(p), tracePayloadMax+1)]...)
	e.binary = binary
}

// traceClient emits a client lifecycle event.
func (s *Server) traceClient(kind string, c *client, reason string) {
	if !s.trace.on() {
		return
	}
	s.trace.publish(&traceEvent{
		Kind: kind, Instance: c.in.name, Hub: c.hub.id, ConnectionID: c.id, UserID: c.userID,
		Transport: c.transport, Protocol: c.protocol, Reason: reason,
	})
}

// traceLink emits an app-server socket lifecycle event; clients is how many clients it closed.
func (s *Server) traceLink(kind string, l *link, clients int) {
	if !s.trace.on() {
		return
	}
	s.trace.publish(&traceEvent{
		Kind: kind, Instance: l.in.name, Hub: l.hub.id, ServerID: l.serverID, CID: l.cid,
		SocketType: socketTypeName(l.connType), Clients: clients,
	})
}

// traceInbound emits one whole hub message (unframed) a client sent (inMu held).
func (c *client) traceInbound(msg []byte) {
	b := &c.in.srv.trace
	if !b.on() {
		return
	}
	e := &traceEvent{
		Kind: traceMessage, Instance: c.in.name, Hub: c.hub.id, ConnectionID: c.id, UserID: c.userID,
		Direction: traceClientToServer, Size: len(msg), Protocol: c.protocol,
	}
	if c.codec != nil {
		if t, err := c.codec.PeekType(msg); err == nil {
			e.MessageType = t.String()
		}
	}
	b.capture(e, msg, c.binary.Load())
	b.publish(e)
}

// traceDispatch emits what an app server sends towards clients (link reader goroutine).
func (l *link) traceDispatch(m svcproto.Message) {
	b := &l.in.srv.trace
	if !b.on() {
		return
	}
	e := &traceEvent{Kind: traceMessage, Instance: l.in.name, Hub: l.hub.id, ServerID: l.serverID, CID: l.cid, Direction: traceServerToClient}
	var payloads svcproto.Payloads
	switch m := m.(type) {
	case svcproto.ConnectionData:
		e.ConnectionID, e.Size = m.ConnectionID, len(m.Payload)
		binary := false
		if c, ok := l.hub.client(m.ConnectionID); ok {
			e.UserID, e.Protocol, binary = c.userID, c.protocol, c.binary.Load()
		}
		if m.Ext.DataMessageType == svcproto.DataHandshake {
			e.MessageType = "Handshake"
		} else {
			e.MessageType = peekFramed(m.Payload, binary)
		}
		b.capture(e, m.Payload, binary)
		b.publish(e)
		return
	case svcproto.MultiConnectionData:
		e.Target, payloads = "connections:"+strings.Join(m.ConnectionIDs, ","), m.Payloads
	case svcproto.UserData:
		e.Target, payloads = "user:"+m.UserID, m.Payloads
	case svcproto.MultiUserData:
		e.Target, payloads = "users:"+strings.Join(m.UserIDs, ","), m.Payloads
	case svcproto.BroadcastData:
		e.Target, payloads = "broadcast", m.Payloads
	case svcproto.GroupBroadcastData:
		e.Target, payloads = "group:"+m.Group, m.Payloads
	case svcproto.MultiGroupBroadcastData:
		e.Target, payloads = "groups:"+strings.Join(m.Groups, ","), m.Payloads
	default:
		return
	}
	b.fanOut(e, payloads)
}

// traceREST records a message sent through the REST API (server id "rest-api").
func (q *restReq) traceSend(target string, payloads svcproto.Payloads) {
	b := &q.in.srv.trace
	if !b.on() {
		return
	}
	b.fanOut(&traceEvent{Kind: traceMessage, Instance: q.in.name, Hub: q.hubState().id, ServerID: traceRESTServer, Direction: traceServerToClient, Target: target}, payloads)
}

// traceRESTServer stands for the REST API where an app server's id would be; traceUpstreamServer
// for the service answering a serverless client (the upstream's reply, or the service's error).
const (
	traceRESTServer     = "rest-api"
	traceUpstreamServer = "upstream"
)

// traceServiceSend records a message the service itself sent one client: a serverless reply, or
// a REST :invoke invocation.
func (c *client) traceServiceSend(frame []byte, serverID string) {
	b := &c.in.srv.trace
	if !b.on() {
		return
	}
	binary := c.binary.Load()
	e := &traceEvent{Kind: traceMessage, Instance: c.in.name, Hub: c.hub.id, ConnectionID: c.id, UserID: c.userID,
		Protocol: c.protocol, ServerID: serverID, Direction: traceServerToClient, Size: len(frame), MessageType: peekFramed(frame, binary)}
	b.capture(e, frame, binary)
	b.publish(e)
}

// fanOut publishes one event for a send to several recipients.
func (b *traceBus) fanOut(e *traceEvent, payloads svcproto.Payloads) {
	if len(payloads) == 0 {
		return
	}
	// One event per fan-out; the JSON payload is the readable one when the app sent several.
	p := payloads[0]
	if d, ok := payloads.Get("json"); ok {
		p = svcproto.Payload{Protocol: "json", Data: d}
	}
	binary := !strings.EqualFold(p.Protocol, "json")
	e.Protocol, e.Size, e.MessageType = strings.ToLower(p.Protocol), len(p.Data), peekFramed(p.Data, binary)
	b.capture(e, p.Data, binary)
	b.publish(e)
}

// peekFramed names the hub message type of the first framed message of p, "" when unknown.
func peekFramed(p []byte, binary bool) string {
	var msg []byte
	var err error
	codec, _ := hubproto.CodecFor("json")
	if binary {
		codec, _ = hubproto.CodecFor("messagepack")
		msg, _, _, err = protocol.CutBinary(p, 0)
	} else {
		msg, _, _, err = protocol.CutText(p, 0)
	}
	if err != nil || codec == nil {
		return ""
	}
	t, err := codec.PeekType(msg)
	if err != nil {
		return ""
	}
	return t.String()
}

func socketTypeName(t svcproto.ConnectionType) string {
	switch t {
	case svcproto.ConnWeak:
		return "Weak"
	case svcproto.ConnDefault:
		return "Default"
	case svcproto.ConnOnDemand:
		return "OnDemand"
	}
	return fmt.Sprint(int(t))
}

// traceReason joins a close kind (closeReason*) and its text.
func traceReason(kind, reason string) string {
	if reason == "" {
		return kind
	}
	return kind + ": " + reason
}
