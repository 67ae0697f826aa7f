package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Scale-out (--nodes 2): a redis-server child on a free loopback port and two signalrd children
// sharing it. The Go app server connects to the first node only; clients alternate between the
// nodes (client i goes to node i%2), so half of them reach their app server through the other
// node and every broadcast crosses Redis to reach them.

// startRedis starts redis-server without persistence and waits until it answers PING.
func startRedis(ctx context.Context, bin string) (*child, string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, "", fmt.Errorf("bench: --nodes 2 needs redis-server (%s): %w; `make deps-redis` installs it", bin, err)
	}
	dir, err := os.MkdirTemp("", "signalrd-bench-redis-")
	if err != nil {
		return nil, "", fmt.Errorf("bench: redis dir: %w", err)
	}
	var lastErr error
	for range 3 { // another process may take the free port between probe and bind
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, "", err
		}
		_, port, _ := net.SplitHostPort(addr)
		c := newChild(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "no")
		c.cmd.Stdout = io.Discard
		c.onStop = func() { os.RemoveAll(dir) }
		if err := c.start(); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
		if lastErr = waitRedis(ctx, addr, c.exited); lastErr == nil {
			return c, addr, nil
		}
		_ = c.stop()
	}
	return nil, "", fmt.Errorf("bench: redis-server did not start: %w", lastErr)
}

func waitRedis(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pingRedis(addr) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING", addr)
		}
	}
}

func pingRedis(addr string) bool {
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

// startNode starts one signalrd child; with redisAddr it joins the cluster as nodeID.
func startNode(ctx context.Context, bin, key, redisAddr, nodeID string) (*child, *url.URL, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, nil, err
	}
	args := []string{"serve", "--listen", addr, "--log-level", "error", "--access-key", key}
	if redisAddr != "" {
		args = append(args, "--redis", "redis://"+redisAddr, "--node-id", nodeID, "--advertise-url", "http://"+addr)
	}
	c := newChild(bin, args...)
	c.cmd.Stdout = io.Discard
	if err := c.start(); err != nil {
		return nil, nil, err
	}
	u := &url.URL{Scheme: "http", Host: addr}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, u.String()+"/api/health", c.exited); err != nil {
		_ = c.stop()
		return nil, nil, err
	}
	return c, u, nil
}

// spreadNegotiate wraps the app server's negotiate handler: clients whose user index is odd are
// sent to the second node (the token's audience does not name the port, so either node accepts it).
type spreadNegotiate struct {
	next       http.Handler
	from, to   string // host:port of the first and the second node
	userOfReqs func(r *http.Request) int
}

func (s *spreadNegotiate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.userOfReqs(r)%2 != 1 {
		s.next.ServeHTTP(w, r)
		return
	}
	rec := &bufferedResponse{header: http.Header{}}
	s.next.ServeHTTP(rec, r)
	body := bytes.Replace(rec.body.Bytes(), []byte("//"+s.from+"/"), []byte("//"+s.to+"/"), 1)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.status())
	_, _ = w.Write(body)
}

// bufferedResponse records a handler's response.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}

// userIndex reads the bench's user=u<i> query parameter (-1 if absent).
func userIndex(r *http.Request) int {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Query().Get("user"), "u"))
	if err != nil {
		return -1
	}
	return n
}
