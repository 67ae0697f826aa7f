package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// target is what the load is aimed at: signalrd behind the Go app server, or the raw baseline.
// All methods are safe for concurrent use.
type target interface {
	// name is "signalrd" or "baseline".
	name() string
	// pids are the processes to sample, whose CPU and RSS are added up (none: no sampling).
	pids() []int
	// dial opens client i and starts delivering what it receives to rec.
	dial(ctx context.Context, i int, rec *recorder) (clientConn, error)
	// prepare runs once all clients are connected (resolves send-to-connection targets).
	prepare(ctx context.Context, conns []clientConn) error
	// restSend posts one message carrying ts addressed to client i (or everyone).
	restSend(ctx context.Context, i int, ts int64) error
	close() error
}

// clientConn is one connected client.
type clientConn interface {
	// send sends one message carrying ts; one goroutine per connection calls it.
	send(ctx context.Context, ts int64) error
	// setPeer tells the connection where send-to-connection messages go.
	setPeer(peer clientConn)
	// done is closed when the connection ended; err then says why (nil for our own close).
	done() <-chan struct{}
	err() error
	close(ctx context.Context)
}

// child is a process started by the tool; stop ends it with SIGTERM, then SIGKILL.
type child struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once Wait returned
	waitErr error
	onStop  func() // after the process ended (cleanup of its files)
}

func newChild(name string, args ...string) *child {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	return &child{cmd: cmd, exited: make(chan struct{})}
}

func (c *child) start() error {
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.cmd.Path, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return nil
}

func (c *child) stop() error {
	if c.onStop != nil {
		defer c.onStop()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return errors.New("bench: child did not stop on SIGTERM; killed")
	}
}

// freeLoopbackAddr picks a free port for a child that cannot report its own (signalrd prints no
// address); the tiny race with other processes is acceptable for a benchmark.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// waitHTTP polls url until it answers 200, the child exits, or ctx ends.
func waitHTTP(ctx context.Context, url string, exited <-chan struct{}) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", url, ctx.Err())
		case <-exited:
			return fmt.Errorf("wait for %s: process exited", url)
		case <-tick.C:
		}
	}
}
