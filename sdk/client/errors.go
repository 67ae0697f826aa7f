package client

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is wrapped by errors from calls on a connection that has ended (or that ends
	// while an Invoke waits). The same error also wraps the reason reported by Conn.Err.
	ErrClosed = errors.New("client: connection closed")

	// ErrServerTimeout ends a connection that received nothing for Options.ServerTimeout.
	ErrServerTimeout error = jsError("Server timeout elapsed without receiving a message from the server.")
)

// Failures whose text is the JS client's.
const (
	errRedirectLimit  = jsError("Negotiate redirection limit exceeded.")
	errStateful       = jsError("Client didn't negotiate Stateful Reconnect but the server did.")
	errNoTransports   = jsError("None of the transports supported by the client are supported by the server.")
	errTransports     = jsError("Unable to connect to the server with any of the available transports.")
	errClassicSignalR = jsError("Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details.")
)

// errNoResult is the Completion error the JS client sends when no handler gave a result.
const errNoResult = "Client didn't provide a result."

// jsError is an error whose text is copied verbatim from the JS client (capitalized, with a
// period), so logs and assertions read the same across clients.
type jsError string

func (e jsError) Error() string { return string(e) }

// StatusError is an HTTP status that failed negotiate (Op "negotiate") or the WebSocket upgrade
// (Op "connect").
type StatusError struct {
	Op         string
	StatusCode int
	// Body is the start of the response body (at most 1 KiB), for diagnostics.
	Body string
}

func (e *StatusError) Error() string {
	if e.Op == "negotiate" {
		s := fmt.Sprintf("Unexpected status code returned from negotiate '%d'", e.StatusCode)
		if e.StatusCode == 404 {
			s += " Either this is not a SignalR endpoint or there is a proxy blocking the connection."
		}
		return s
	}
	return fmt.Sprintf("client: %s: unexpected status code %d", e.Op, e.StatusCode)
}

// NegotiateError is a negotiate response carrying an "error" field; Message is that text.
type NegotiateError struct{ Message string }

func (e *NegotiateError) Error() string { return e.Message }

// HandshakeError is a handshake response carrying an "error" field; Message is that text.
type HandshakeError struct{ Message string }

func (e *HandshakeError) Error() string { return "Server returned handshake error: " + e.Message }

// HubError is the error of a Completion: the hub method failed (or the server refused the
// invocation). Its text is exactly the hub's message.
type HubError struct{ Message string }

func (e *HubError) Error() string { return e.Message }

// CloseError is a Close message sent by the server. Message is its error text ("" when the
// server closed without an error).
type CloseError struct {
	Message        string
	AllowReconnect bool
}

func (e *CloseError) Error() string {
	if e.Message == "" {
		return "Server closed the connection."
	}
	return "Server returned an error on close: " + e.Message
}
