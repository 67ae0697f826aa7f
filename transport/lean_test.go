package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// writesConn records every Write as one entry.
type writesConn struct {
	net.Conn // nil: only Write is used
	mu       sync.Mutex
	writes   [][]byte
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// wsFrame encodes one unmasked (server) frame.
func wsFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var hdr []byte
	switch n := len(payload); {
	case n > 0xffff:
		hdr = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	case n > 125:
		hdr = binary.BigEndian.AppendUint16([]byte{b0, 126}, uint16(n))
	default:
		hdr = []byte{b0, byte(n)}
	}
	return append(hdr, payload...)
}

// writeLikeCoder writes a frame through bw the way coder/websocket does: the header byte by
// byte and the length, then the payload, then a flush for a final frame.
func writeLikeCoder(t *testing.T, bw *bufio.Writer, frame []byte, fin bool) {
	t.Helper()
	hl := 2
	switch frame[1] & 0x7f {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	bw.WriteByte(frame[0])
	bw.WriteByte(frame[1])
	if hl > 2 {
		bw.Write(frame[2:hl])
	}
	if _, err := bw.Write(frame[hl:]); err != nil {
		t.Fatal(err)
	}
	if fin {
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFrameWriterOneWritePerFrame(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, 13, 14, 15, 16, 17, 50, 125, 126, 127, 2048, 4096, 65535, 65536, 200000} {
		for _, vectored := range []bool{false, true} {
			c := &writesConn{}
			fw := &frameWriter{conn: c, vectored: vectored}
			bw := bufio.NewWriterSize(fw, leanBufSize)
			payload := bytes.Repeat([]byte{'x'}, size)
			frame := wsFrame(true, 1, payload)
			writeLikeCoder(t, bw, frame, true)
			writeLikeCoder(t, bw, frame, true)
			var all []byte
			for _, w := range c.writes {
				all = append(all, w...)
			}
			if !bytes.Equal(all, append(append([]byte(nil), frame...), frame...)) {
				t.Fatalf("size %d vectored %v: bytes differ", size, vectored)
			}
			// A fake conn is no writev target: net.Buffers then writes each piece, so only the
			// non-vectored path (which copies frames up to leanReadSize) can promise one write
			// per frame here.
			if !vectored && len(frame) <= leanReadSize && len(c.writes) != 2 {
				t.Fatalf("size %d: %d writes for 2 frames", size, len(c.writes))
			}
			if fw.nh != 0 || fw.nhdr != 0 || fw.left != 0 {
				t.Fatalf("size %d: state left over: held %d hdr %d left %d", size, fw.nh, fw.nhdr, fw.left)
			}
		}
	}
}

func TestFrameWriterFragmentsAndControl(t *testing.T) {
	t.Parallel()
	c := &writesConn{}
	fw := &frameWriter{conn: c}
	bw := bufio.NewWriterSize(fw, leanBufSize)
	// A fragmented message (no flush between the fragments), a ping, the final fragment.
	f1 := wsFrame(false, 1, []byte("hello "))
	ping := wsFrame(true, 9, []byte("p"))
	f2 := wsFrame(true, 0, bytes.Repeat([]byte{'w'}, 300))
	writeLikeCoder(t, bw, f1, false)
	writeLikeCoder(t, bw, ping, true)
	writeLikeCoder(t, bw, f2, true)
	var all []byte
	for _, w := range c.writes {
		all = append(all, w...)
	}
	want := append(append(append([]byte(nil), f1...), ping...), f2...)
	if !bytes.Equal(all, want) {
		t.Fatalf("stream = %q, want %q", all, want)
	}
	if len(c.writes) > 3 {
		t.Fatalf("%d writes for 3 frames", len(c.writes))
	}
}

func TestFrameWriterMaskedAndSplitHeader(t *testing.T) {
	t.Parallel()
	c := &writesConn{}
	fw := &frameWriter{conn: c}
	// A masked frame (as a client writes) whose header arrives one byte at a time.
	frame := []byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}
	frame = append(frame, bytes.Repeat([]byte{'m'}, 256)...)
	for _, b := range frame[:8] {
		if _, err := fw.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.writes) != 0 {
		t.Fatalf("wrote %d times before the frame was complete", len(c.writes))
	}
	if _, err := fw.Write(frame[8:]); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 1 || !bytes.Equal(c.writes[0], frame) {
		t.Fatalf("writes = %d, want the whole frame once", len(c.writes))
	}
}

func TestFrameWriterRejectsHugeLength(t *testing.T) {
	t.Parallel()
	fw := &frameWriter{conn: &writesConn{}}
	hdr := []byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if _, err := fw.Write(hdr); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("err = %v, want errFrameTooLarge", err)
	}
}

// leanEchoServer accepts WebSockets through LeanHijack and echoes every message.
func leanEchoServer(t *testing.T) *httptest.Server {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lw := LeanHijack(w)
		ws, err := websocket.Accept(lw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		if _, ok := lw.Conn().(*leanConn); !ok {
			t.Errorf("Conn() = %T, want the lean connection", lw.Conn())
		}
		ws.SetReadLimit(-1)
		wg.Go(func() { // the handler returns: the connection lives on without it
			defer ws.CloseNow()
			for {
				typ, data, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				if err := ws.Write(context.Background(), typ, data); err != nil {
					return
				}
			}
		})
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return srv
}

func TestLeanHijackEcho(t *testing.T) {
	t.Parallel()
	srv := leanEchoServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, srv.URL, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	for _, size := range []int{0, 1, 100, 125, 126, 2048, 8191, 8192, 8193, 70000, 1 << 20} {
		msg := make([]byte, size)
		rand.Read(msg)
		typ := websocket.MessageBinary
		if size%2 == 1 {
			typ = websocket.MessageText
			msg = bytes.Repeat([]byte{'t'}, size)
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatalf("write %d: %v", size, err)
		}
		gt, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", size, err)
		}
		if gt != typ || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: echo differs (type %v, %d bytes)", size, gt, len(got))
		}
	}
	// Many small messages in a burst: several frames per pooled read.
	for i := range 200 {
		if err := c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("s", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		_, got, err := c.Read(ctx)
		if err != nil || len(got) != i {
			t.Fatalf("burst message %d: %d bytes, %v", i, len(got), err)
		}
	}
	// Ping/pong goes through the server reader's control path and the lean writer; the client
	// needs a reader of its own to see the pong.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.Read(ctx)
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	<-readDone
}

// TestLeanHijackBufferedBytes sends the first WebSocket frame in the same packet as the upgrade
// request, so the HTTP server has it buffered when the connection is hijacked.
func TestLeanHijackBufferedBytes(t *testing.T) {
	t.Parallel()
	srv := leanEchoServer(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	payload := []byte("early bird")
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x81 || string(got) != string(payload) {
		t.Fatalf("echo = %x %q, want text %q", hdr[0], got, payload)
	}
}

func TestLeanConnReadsAndReleases(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	lc := newLeanConn(a)
	if lc.raw == nil {
		t.Fatal("no raw conn for a TCP connection")
	}
	go b.Write([]byte("hello world"))
	p := make([]byte, 5)
	if n, err := lc.Read(p); err != nil || string(p[:n]) != "hello" {
		t.Fatalf("read = %q, %v", p[:n], err)
	}
	if lc.rbuf == nil {
		t.Fatal("rest of the read not buffered")
	}
	rest := make([]byte, 100)
	n, err := lc.Read(rest)
	if err != nil {
		t.Fatal(err)
	}
	// The rest may come in the same read or a later one (" world" over TCP).
	got := string(rest[:n])
	for got != " world" {
		n, err = lc.Read(rest)
		if err != nil {
			t.Fatal(err)
		}
		got += string(rest[:n])
	}
	if lc.rbuf != nil {
		t.Fatal("drained buffer not released")
	}
	// A large read goes straight to the caller's buffer.
	go b.Write(bytes.Repeat([]byte{'z'}, 3*leanReadSize))
	big := make([]byte, 4*leanReadSize)
	if n, err := lc.Read(big); err != nil || n == 0 || lc.rbuf != nil {
		t.Fatalf("big read = %d, %v, buffered %v", n, err, lc.rbuf != nil)
	}
	b.Close()
	for {
		_, err := lc.Read(p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read after peer close = %v, want EOF", err)
		}
	}
	// Close unblocks a pending read.
	c, d := tcpPair(t)
	lc2 := newLeanConn(c)
	errc := make(chan error, 1)
	go func() {
		_, err := lc2.Read(p)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	lc2.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	d.Close()
	// Deadlines apply to the waiting read.
	e, f := tcpPair(t)
	defer f.Close()
	lc3 := newLeanConn(e)
	defer lc3.Close()
	lc3.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var ne net.Error
	if _, err := lc3.Read(p); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline = %v, want a timeout", err)
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return b, a
}

func TestLeanHijackWithoutHijacker(t *testing.T) {
	t.Parallel()
	lw := LeanHijack(httptest.NewRecorder())
	if _, _, err := lw.Hijack(); !errors.Is(err, errNotHijacker) {
		t.Fatalf("Hijack = %v, want errNotHijacker", err)
	}
	if lw.Conn() != nil {
		t.Fatal("Conn before a hijack")
	}
}

// BenchmarkIdleWebSocket reports the server-side memory (heap in use + stacks) of an accepted,
// idle WebSocket whose reader waits on its own goroutine (the HTTP handler returned), with the
// library's default buffers and with LeanHijack. The clients are raw sockets, which cost the
// same in both cases.
func BenchmarkIdleWebSocket(b *testing.B) {
	for _, lean := range []bool{false, true} {
		name := "default"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			const conns = 500
			var readers sync.WaitGroup
			var active atomic.Int64
			waiting := make(chan struct{}, conns)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rw := w
				if lean {
					rw = LeanHijack(w)
				}
				ws, err := websocket.Accept(rw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
				if err != nil {
					return
				}
				active.Add(1)
				readers.Go(func() {
					defer active.Add(-1)
					defer ws.CloseNow()
					first := true
					for {
						_, rd, err := ws.Reader(context.Background())
						if err != nil {
							return
						}
						io.Copy(io.Discard, rd)
						if first {
							first = false
							waiting <- struct{}{}
						}
					}
				})
			}))
			defer func() {
				srv.Close()
				readers.Wait()
			}()
			handshake := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			hello := []byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1} // masked "hello"
			inUse := func() uint64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapInuse + ms.StackInuse
			}
			var perConn float64
			for b.Loop() {
				before := inUse()
				clients := make([]net.Conn, 0, conns)
				for range conns {
					c, err := net.Dial("tcp", srv.Listener.Addr().String())
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Write([]byte(handshake)); err != nil {
						b.Fatal(err)
					}
					resp := make([]byte, 0, 256)
					for !bytes.Contains(resp, []byte("\r\n\r\n")) {
						buf := make([]byte, 256)
						n, err := c.Read(buf)
						if err != nil {
							b.Fatal(err)
						}
						resp = append(resp, buf[:n]...)
					}
					if _, err := c.Write(hello); err != nil {
						b.Fatal(err)
					}
					clients = append(clients, c)
				}
				for range conns {
					<-waiting
				}
				after := inUse()
				perConn = float64(int64(after)-int64(before)) / conns
				for _, c := range clients {
					c.Close()
				}
				for active.Load() > 0 { // the next round starts from the same state
					time.Sleep(time.Millisecond)
				}
			}
			b.ReportMetric(perConn, "B/conn")
		})
	}
}
