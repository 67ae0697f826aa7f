// Package server is the composition root and service logic of signalrd: the HTTP mux
// (/client/negotiate, /client, /server, /api/health), negotiate, the app-server link registry and
// client-to-server selection, service-protocol dispatch into the router, and lifecycle. With
// Config.AdminListen, a second listener serves /metrics, /healthz, /readyz and (EnablePprof)
// /debug/pprof/.
//
// Goroutines: every client connection has one reader (its HTTP handler goroutine) and one write
// pump; every app-server link has one reader, one write pump and one liveness watchdog. All are
// owned by the Server and end when Run's context ends.
//
// Lock order: instance.mu -> hubState.mu -> link.mu -> router locks. No lock is held across I/O.
package server
