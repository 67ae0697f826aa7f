package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process a test started; t.Cleanup kills it.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	first []string // before the generated arguments (a config file, --sentinel)
	args  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary finds redis-server on PATH or fails the test with how to install it.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH: this test needs a real Redis (>= 7). Run `make deps` " +
			"(or `make deps-redis`), which installs Debian's redis-server package.")
	}
	return p
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts redis-server with extra config arguments ("--name", "value", ...), without
// persistence: a restart loses every key, as a crash of a cache-only Redis does.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return start(t, "redis-server", &Server{t: t, bin: Binary(t), dir: t.TempDir(), args: extra})
}

// StartSentinel starts redis-server in Sentinel mode with the given configuration file content.
func StartSentinel(t testing.TB, config string) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, "redis sentinel", &Server{t: t, bin: Binary(t), dir: dir, first: []string{conf, "--sentinel"}})
}

func start(t testing.TB, what string, s *Server) *Server {
	t.Helper()
	var err error
	for range 3 { // another process may take the free port between probe and bind
		s.port = FreePort(t)
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("%s did not start: %v", what, err)
	return nil
}

// Addr is host:port; URL the redis:// URL; Port the port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *Server) URL() string  { return "redis://" + s.Addr() }
func (s *Server) Port() int    { return s.port }

func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append(slices.Clone(s.first),
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if Ping(s.Addr()) {
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server exited on port %d: %s", s.port, bytes.TrimSpace(log))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d not answering PING", s.port)
		}
	}
}

// Start restarts a stopped server on the same port (empty: no persistence).
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Ping reports whether a Redis answers PING at addr, speaking the protocol by hand (no client
// library state survives a restart).
func Ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Admin is a plain go-redis client for inspecting a server, closed by t.Cleanup.
func Admin(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
