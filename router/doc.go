// Package router addresses and fans out messages inside one node: hub -> connections, users and
// groups; send to a connection, user, group or everyone, with exclusions; join and leave.
//
// It knows nothing about transports or wire protocols. It consumes a small Conn interface (declared
// here) and a Payloads interface that picks the bytes for a connection's hub protocol, so each
// payload is encoded once per protocol by the caller and the same slice is handed to every recipient.
//
// Goroutine safety: every method of Router and Hub is safe for concurrent use. Sends hold the hub's
// read lock while calling Conn.Send, which must never block or call back into the router (the
// transport queues the frame and, on overflow, closes the connection from its own goroutine).
// Lock order: Router.mu before Hub.mu; never the reverse.
package router
