package e2e

import (
	"net"
	"sync"
	"testing"
)

// tcpProxy forwards loopback TCP connections to a target. It can cut them all at once the way a
// network failure would, and hold what the target sends (a message in flight, not delivered).
type tcpProxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cond  *sync.Cond
	conns map[net.Conn]struct{}
	held  bool // target -> client bytes wait while set
	dead  bool // Kill was called: nothing waits any more
	bytes int  // bytes held back so far
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.Kill()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *tcpProxy) Addr() string { return p.l.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, false)
		go p.pipe(c, up, true)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn, fromTarget bool) {
	defer p.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && fromTarget {
			p.mu.Lock()
			if p.held && !p.dead {
				p.bytes += n
			}
			for p.held && !p.dead {
				p.cond.Wait()
			}
			p.mu.Unlock()
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Cut resets every proxied connection (RST, no close handshake) and returns how many client
// connections it cut; new connections are still accepted.
func (p *tcpProxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resetLocked() / 2
}

func (p *tcpProxy) resetLocked() int {
	n := 0
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		n++
	}
	return n
}

// Hold keeps back everything the target sends from now on (until Kill).
func (p *tcpProxy) Hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// HeldBytes is how many bytes from the target are being held back.
func (p *tcpProxy) HeldBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Kill stops accepting and resets every connection.
func (p *tcpProxy) Kill() {
	_ = p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = true
	p.cond.Broadcast()
	p.resetLocked()
}
