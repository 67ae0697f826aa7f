package hubproto

import (
	"fmt"
	"math"
	"strconv"

	"github.com/signalrd/signalrd/protocol"
)

// HandshakeRequest is the client's first message: {"protocol":"json","version":1}.
type HandshakeRequest struct {
	Protocol string
	Version  int
}

// ErrTextHandshakeCanceled is ASP.NET Core's handshake error after a timeout (or an oversized
// handshake).
const ErrTextHandshakeCanceled = "Handshake was canceled."

// ErrTextProtocolNotSupported is ASP.NET Core's handshake error for an unknown protocol name.
func ErrTextProtocolNotSupported(p string) string {
	return "The protocol '" + p + "' is not supported."
}

// ErrTextVersionNotSupported is ASP.NET Core's handshake error for an unsupported version.
func ErrTextVersionNotSupported(p string, v int) string {
	return "The server does not support version " + strconv.Itoa(v) + " of the '" + p + "' protocol."
}

// ErrTextTransferFormat is ASP.NET Core's handshake error for a binary protocol on a text-only
// transport (Server-Sent Events).
func ErrTextTransferFormat(p string) string {
	return "Cannot use the '" + p + "' protocol on the current transport. The transport does not support 'Binary' transfer format."
}

// ParseHandshakeRequest parses a handshake request (JSON text without the trailing 0x1E).
// "protocol" (string) and "version" (integral number) are required; unknown members are ignored.
func ParseHandshakeRequest(msg []byte) (HandshakeRequest, error) {
	var r HandshakeRequest
	if !jsonValid(msg) {
		return r, fmt.Errorf("%w: handshake request: invalid JSON", ErrMalformed)
	}
	it, ok := newObjIter(msg)
	if !ok {
		return r, fmt.Errorf("%w: handshake request: not a JSON object", ErrMalformed)
	}
	var proto, version []byte
	for {
		m, done, ok := it.next()
		if !ok {
			return r, fmt.Errorf("%w: handshake request: bad object", ErrMalformed)
		}
		if done {
			break
		}
		switch {
		case m.is("protocol"):
			proto = msg[m.vs:m.ve]
		case m.is("version"):
			version = msg[m.vs:m.ve]
		}
	}
	if proto == nil {
		return r, fmt.Errorf("%w: handshake request: missing required property 'protocol'", ErrMalformed)
	}
	p, ok := jsonStringValue(proto)
	if !ok {
		return r, fmt.Errorf("%w: handshake request: 'protocol' is not a string", ErrMalformed)
	}
	if version == nil {
		return r, fmt.Errorf("%w: handshake request: missing required property 'version'", ErrMalformed)
	}
	v, ok := parseJSONInt(version)
	if !ok || v < math.MinInt32 || v > math.MaxInt32 {
		return r, fmt.Errorf("%w: handshake request: 'version' is not an integer", ErrMalformed)
	}
	return HandshakeRequest{Protocol: p, Version: int(v)}, nil
}

// AppendHandshakeRequest appends {"protocol":"...","version":N} and 0x1E.
func AppendHandshakeRequest(dst []byte, r HandshakeRequest) []byte {
	dst = append(dst, `{"protocol":`...)
	dst = appendJSONString(dst, r.Protocol)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(r.Version), 10)
	return append(dst, '}', protocol.RecordSeparator)
}

// AppendHandshakeResponse appends "{}" and 0x1E on success (errMsg == ""), otherwise
// {"error":"..."} and 0x1E. It never writes a "type" member: the JS client treats a response with
// one as a hub message and fails the handshake.
func AppendHandshakeResponse(dst []byte, errMsg string) []byte {
	if errMsg == "" {
		return append(dst, '{', '}', protocol.RecordSeparator)
	}
	dst = append(dst, `{"error":`...)
	dst = appendJSONString(dst, errMsg)
	return append(dst, '}', protocol.RecordSeparator)
}

// ParseHandshakeResponse parses a handshake response (JSON without 0x1E) and returns the
// server's error text ("" on success). A response with a "type" member is rejected, as the JS
// client does ("Expected a handshake response from the server.").
func ParseHandshakeResponse(msg []byte) (errMsg string, err error) {
	if !jsonValid(msg) {
		return "", fmt.Errorf("%w: handshake response: invalid JSON", ErrMalformed)
	}
	it, ok := newObjIter(msg)
	if !ok {
		return "", fmt.Errorf("%w: handshake response: not a JSON object", ErrMalformed)
	}
	var errTok []byte
	for {
		m, done, ok := it.next()
		if !ok {
			return "", fmt.Errorf("%w: handshake response: bad object", ErrMalformed)
		}
		if done {
			break
		}
		switch {
		case m.is("type"):
			return "", fmt.Errorf("%w: handshake response: expected a handshake response from the server, got a hub message", ErrMalformed)
		case m.is("error"):
			errTok = msg[m.vs:m.ve]
		}
	}
	if errTok == nil || string(errTok) == "null" {
		return "", nil
	}
	s, ok := jsonStringValue(errTok)
	if !ok {
		return "", fmt.Errorf("%w: handshake response: 'error' is not a string", ErrMalformed)
	}
	return s, nil
}
