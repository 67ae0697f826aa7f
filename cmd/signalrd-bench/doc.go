// Command signalrd-bench is signalrd's load generator. It drives the scenarios of the Azure
// SignalR performance guide (echo, broadcast, group, biggroup, connection, rest-broadcast,
// rest-user, plus idle for connect rate and memory per client) with sdk/client clients and an
// sdk/appserver hub running in this process, against signalrd started in process, as a child
// (--service-bin) or already running (--service-url). With --baseline it runs the same scenario
// against a bundled raw WebSocket server (no SignalR logic) so results read as a share of what
// the machine can do. It measures messages/s in and out, latency percentiles from a send
// timestamp carried in every message (a lock-free log-linear histogram: no allocation per
// message), errors, connect rate and the target process's CPU and RSS from /proc. --suite runs
// the standard suite of `make bench` and writes docs/PERFORMANCE.md, including the search of the
// highest echo and broadcast loads that meet the guide's criterion (p99 under 1 s), reported as the
// Azure units they equal (units.go; --units runs only that search).
//
// Goroutines: one sender per client (or --rest-concurrency REST senders), the clients' own
// reader goroutines, and the run loop, which prints a progress line every second on stderr.
// Everything ends with the run; the recorder and histogram are safe for concurrent use.
package main
