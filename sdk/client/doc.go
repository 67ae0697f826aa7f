// Package client is a Go SignalR client speaking the hub protocol over WebSockets, modelled on
// the official JavaScript client (@microsoft/signalr). It exists for end-to-end tests and the
// load generator, so it follows the JS client's wire behaviour closely: negotiate (version 1,
// redirects, access tokens), the WebSocket connect URL, the handshake, JSON and MessagePack,
// invocation ids "0", "1", …, keep-alive pings and the server timeout. It has no automatic
// reconnect, no stateful reconnect and no streaming.
//
// # Goroutines and blocking
//
// A Conn owns one reader goroutine and one keep-alive goroutine (plus one goroutine per running
// OnResult handler). All of them end when the connection ends; Done is closed once they have.
// Writes are serialized by the Conn (one WebSocket message per hub message), so every method
// of Conn is safe for concurrent use.
//
// Dial, Invoke, InvokeInto, Send, SendRaw and Close block and take a context. The context given
// to Dial bounds connection establishment only, never the connection's lifetime. For writes the
// context bounds the wait for the connection's write turn; a write already on the wire is not
// abandoned (a half-written message cannot be taken back): it ends when the server reads it or
// when the connection ends (Close, server timeout, transport error).
//
// On handlers run on the reader goroutine in arrival order: they must return quickly and must
// not wait for an Invoke on the same Conn (start a goroutine for that). OnResult handlers run on
// their own goroutine, so they may block and may call back into the Conn.
//
// # Errors
//
// Error texts follow the JS client where it has one: *StatusError ("Unexpected status code
// returned from negotiate '401'"), *NegotiateError (the negotiate "error" field), *HandshakeError,
// *HubError (a Completion error: the text is the hub's message), *CloseError (a server Close
// message) and ErrServerTimeout. Calls on a closed connection fail with an error wrapping
// ErrClosed and the reason reported by Err.
package client
