// Package servertest starts an in-process signalrd on 127.0.0.1:0 for tests, stopped by
// t.Cleanup. It is imported only by tests.
package servertest
