// Package transport is connection I/O: a byte-bounded outbox, the write pump that drains it in as
// few writes as possible, and the WebSocket plumbing (coder/websocket) shared by client connections
// and app-server links.
//
// Producers call Outbox.Push, which never blocks; exactly one pump goroutine per connection drains
// the outbox and performs all writes, so no lock is held across I/O. Outbox is safe for concurrent
// use; a Pump is owned by the goroutine that runs it.
package transport
