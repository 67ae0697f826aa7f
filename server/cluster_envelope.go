package server

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// envKind says what a backplane envelope asks of the nodes receiving it. New kinds go last:
// every node of a deployment must number them alike (see TestEnvelopeGolden).
type envKind uint8

const (
	// Fan-out on hub, user and group topics: every subscribed node delivers to its own
	// connections. The publishing node delivered locally already and skips its own envelopes.
	envSendAll envKind = iota + 1
	envSendUser
	envSendGroup
	envCloseAll
	envCloseUser
	envCloseGroup

	// Addressed to one node (topic n/{node}).
	envSendConns     // Conns: connections this node owns
	envCloseConn     // Conns[0], Text: reason; answered (rpc)
	envJoin          // Conns[0] joins Group; answered once subscribed
	envLeave         // Conns[0] leaves Group ("" every group); answered
	envUserJoin      // User joins Group until Expires (0: none); answered once subscribed
	envUserLeave     // User leaves Group ("" every group); answered
	envQuery         // Text: which question (query* constants); answered
	envExecute       // REST :execute: Text filter, Data encoded steps; answered
	envRelayOpen     // client node -> app node: Data is the OpenConnection frame, then Data2 the handshake
	envRelayData     // client node -> app node: Data is a ConnectionData frame
	envRelayClose    // client node -> app node: the client went away (Text: reason)
	envRelayMigrate  // app node -> client node: the client's server is shutting down, move it
	envToClient      // app node -> client node: Data is hub frames for Conns[0]
	envAppClose      // app node -> client node: the app server closed Conns[0]
	envServerLost    // app node -> client node: the app server of Conns[0] is gone
	envInvoke        // caller node -> client node: Data is a ClientInvocation frame
	envCompletion    // any node -> caller node: Data is a ClientCompletion/ErrorCompletion frame, Server: from
	envRPCReply      // answer to an rpc: ID, OK, List
	envRelayRefused  // app node -> client node: no socket of the server (Text: reason)
	envInvokeFailed  // client node -> caller node: Conns[0] closed with Group=invocation id pending
	envJoinUserConns // REST user join with ttl=0: the user's current connections join Group; answered
	envNodeLeft      // a node leaving gracefully tells each peer (addressed to n/{peer})
	envNodeRestarted // a node restarted within its TTL: peers drop what its earlier life held
)

// envelope is one backplane message, msgpack-encoded once per send. Field names are short:
// they are on the wire for every message.
type envelope struct {
	Origin    string   `msgpack:"o"`
	Kind      envKind  `msgpack:"k"`
	Hub       string   `msgpack:"h,omitempty"`
	ID        uint64   `msgpack:"i,omitempty"` // rpc correlation
	OK        bool     `msgpack:"ok,omitempty"`
	Conns     []string `msgpack:"c,omitempty"`
	User      string   `msgpack:"u,omitempty"`
	Group     string   `msgpack:"g,omitempty"`
	ExclConns []string `msgpack:"xc,omitempty"`
	ExclUsers []string `msgpack:"xu,omitempty"`
	Protocols []string `msgpack:"pp,omitempty"`
	Payloads  [][]byte `msgpack:"pd,omitempty"`
	Text      string   `msgpack:"t,omitempty"`
	Server    string   `msgpack:"s,omitempty"`
	Expires   int64    `msgpack:"e,omitempty"` // unix ms
	Data      []byte   `msgpack:"d,omitempty"`
	Data2     []byte   `msgpack:"d2,omitempty"`
	List      []string `msgpack:"l,omitempty"`
}

func (e *envelope) setPayloads(p svcproto.Payloads) {
	e.Protocols = make([]string, len(p))
	e.Payloads = make([][]byte, len(p))
	for i := range p {
		e.Protocols[i], e.Payloads[i] = p[i].Protocol, p[i].Data
	}
}

func (e *envelope) payloads() svcproto.Payloads {
	n := min(len(e.Protocols), len(e.Payloads))
	p := make(svcproto.Payloads, n)
	for i := range n {
		p[i] = svcproto.Payload{Protocol: e.Protocols[i], Data: e.Payloads[i]}
	}
	return p
}

func encodeEnvelope(e *envelope) ([]byte, error) {
	b, err := msgpack.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode backplane envelope: %w", err)
	}
	return b, nil
}

func decodeEnvelope(b []byte) (*envelope, error) {
	var e envelope
	if err := msgpack.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode backplane envelope: %w", err)
	}
	if e.Kind == 0 || e.Origin == "" {
		return nil, fmt.Errorf("decode backplane envelope: kind %d from %q is not valid", e.Kind, e.Origin)
	}
	return &e, nil
}
