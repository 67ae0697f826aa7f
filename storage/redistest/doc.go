// Package redistest runs real redis-server processes for tests: a standalone server (or a
// Sentinel) on a free loopback port without persistence, which a test may kill and restart, and
// a three-master Redis Cluster. Tests that need it fail, never skip, when redis-server is
// missing: `make deps` installs it. The storage and e2e tests share it.
package redistest
