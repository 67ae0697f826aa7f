// Package jsclient lets Go tests drive the official @microsoft/signalr
// JavaScript client (plus @microsoft/signalr-protocol-msgpack) running under
// node, so end-to-end tests exercise signalrd with an unmodified client.
//
// Start spawns e2e/js/driver.mjs, a long-lived node process that speaks JSON
// lines on stdin/stdout (see e2e/js/README.md), and registers a t.Cleanup
// that stops every connection, ends the process and waits for all goroutines
// of the Driver. node (>= 20) must be on PATH and e2e/js/node_modules must be
// installed (`make deps`, or `npm ci` in e2e/js); otherwise Start fails the
// test with that advice rather than skipping, so a missing toolchain is never
// mistaken for a passing suite.
//
// Goroutine safety: every Driver method may be called from any goroutine.
// Commands are multiplexed over one pipe and executed concurrently by node, so
// a pending Invoke does not block HandleResult, Stop or another Invoke.
//
// Blocking: Connect, Invoke, Send, Stream, Stop, State, On and HandleResult
// block until node replies, ctx is done or the driver process dies. Giving up
// on ctx does not cancel the JavaScript operation; its late reply is dropped.
// WaitEvent blocks until a matching event arrives, ctx is done or the driver
// exits. Events and Messages never block, and the stdout reader never waits
// for consumers: events are kept in an unbounded in-memory log.
//
// Values: call arguments and results travel as JSON. A []byte must be sent as
// Bin(b) to arrive as a MessagePack bin value; binary values received over
// MessagePack come back as {"$bin":"<base64>"} (see DecodeBin).
package jsclient
