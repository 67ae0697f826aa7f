package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
)

// An accepted WebSocket normally keeps three buffers for its whole life: the HTTP server's 4 KB
// bufio.Reader and 4 KB bufio.Writer, which the WebSocket library takes over at the hijack, and
// whatever the library allocates itself. With tens of thousands of mostly idle clients these
// buffers are most of a connection's memory. LeanHijack hands the library minimal (16-byte)
// bufio buffers over a connection wrapper that
//
//   - reads into a pooled buffer only when the socket is readable (it waits for readability with
//     syscall.RawConn, holding nothing) and gives the buffer back once its bytes are consumed;
//   - keeps the WebSocket frame being written together: it follows the frame headers in the
//     byte stream and writes each complete frame with one write (writev), so the tiny bufio
//     buffer never splits a frame into several TCP segments.
//
// The syscall count per message stays what it was with 4 KB buffers.

// leanBufSize is the size of the bufio.Reader/Writer handed to the WebSocket library: the
// minimum bufio accepts, which also holds the longest server frame header (10 bytes).
const leanBufSize = 16

// leanReadSize is the pooled read buffer: one read syscall takes up to this much.
const leanReadSize = 8 << 10

var leanReadPool = sync.Pool{New: func() any { b := make([]byte, leanReadSize); return &b }}

// LeanHijack wraps w so that a WebSocket library hijacking the connection gets the lean
// connection and buffers described above. Use it only for connections whose reads and writes
// go through the library (the library must write whole frames: header, then payload).
func LeanHijack(w http.ResponseWriter) *LeanResponseWriter {
	for rw := w; ; {
		switch t := rw.(type) {
		case http.Hijacker:
			return &LeanResponseWriter{ResponseWriter: w, hj: t}
		case interface{ Unwrap() http.ResponseWriter }:
			rw = t.Unwrap()
		default:
			return &LeanResponseWriter{ResponseWriter: w} // Hijack fails: the library reports it
		}
	}
}

// LeanResponseWriter is the http.ResponseWriter made by LeanHijack.
type LeanResponseWriter struct {
	http.ResponseWriter
	hj   http.Hijacker
	conn *leanConn
}

var errNotHijacker = errors.New("transport: the http.ResponseWriter does not implement http.Hijacker")

// Conn is the hijacked connection (nil until Hijack succeeded), e.g. to set write deadlines
// instead of giving the WebSocket library a context per write.
func (w *LeanResponseWriter) Conn() net.Conn {
	if w.conn == nil {
		return nil
	}
	return w.conn
}

// Hijack implements http.Hijacker. Bytes the HTTP server had already read past the request stay
// first in line; the server's own buffers are released with its connection state.
func (w *LeanResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hj == nil {
		return nil, nil, errNotHijacker
	}
	conn, brw, err := w.hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // net/http flushes the 101 response before; be safe
		conn.Close()
		return nil, nil, fmt.Errorf("transport: flush before hijack: %w", err)
	}
	lc := newLeanConn(conn)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		lc.pre = append([]byte(nil), b...)
	}
	w.conn = lc
	return lc, bufio.NewReadWriter(bufio.NewReaderSize(lc, leanBufSize), bufio.NewWriterSize(&lc.fw, leanBufSize)), nil
}

// leanConn is the hijacked connection: Read as described on LeanHijack, Write passes through
// (the WebSocket library writes through fw via its bufio.Writer).
type leanConn struct {
	net.Conn
	raw syscall.RawConn // nil when the connection is not a socket (TLS): plain reads then
	pre []byte          // bytes buffered by the HTTP server before the hijack

	rmu  sync.Mutex // Read is not called concurrently by the library, but Close may race it
	rbuf *[]byte    // pooled, holding unread bytes [roff:rend]; nil when drained
	roff int
	rend int

	fw frameWriter
}

func newLeanConn(conn net.Conn) *leanConn {
	lc := &leanConn{Conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			lc.raw = raw
		}
	}
	lc.fw.conn = conn
	_, lc.fw.vectored = conn.(*net.TCPConn)
	if !lc.fw.vectored {
		_, lc.fw.vectored = conn.(*net.UnixConn)
	}
	return lc
}

func (c *leanConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	if c.rbuf != nil {
		return c.drainLocked(p), nil
	}
	if c.raw == nil || len(p) >= leanReadSize {
		return c.Conn.Read(p) // the caller's buffer is as large as ours
	}
	var (
		n    int
		serr error
		b    *[]byte
	)
	err := c.raw.Read(func(fd uintptr) bool {
		b = leanReadPool.Get().(*[]byte)
		for {
			n, serr = syscall.Read(int(fd), *b)
			if serr != syscall.EINTR {
				break
			}
		}
		if serr == syscall.EAGAIN {
			leanReadPool.Put(b)
			b = nil
			return false // not readable yet: wait without holding a buffer
		}
		return true
	})
	switch {
	case err != nil:
		if b != nil {
			leanReadPool.Put(b)
		}
		return 0, err
	case serr != nil:
		leanReadPool.Put(b)
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", serr)}
	case n <= 0:
		leanReadPool.Put(b)
		return 0, io.EOF
	}
	c.rbuf, c.roff, c.rend = b, 0, n
	return c.drainLocked(p), nil
}

// drainLocked copies buffered bytes to p and returns the buffer to the pool once it is empty.
func (c *leanConn) drainLocked(p []byte) int {
	n := copy(p, (*c.rbuf)[c.roff:c.rend])
	c.roff += n
	if c.roff == c.rend {
		leanReadPool.Put(c.rbuf)
		c.rbuf = nil
	}
	return n
}

func (c *leanConn) Close() error {
	err := c.Conn.Close()
	if c.rmu.TryLock() { // a Read in progress keeps its buffer until it returns; the GC takes it then
		if c.rbuf != nil {
			leanReadPool.Put(c.rbuf)
			c.rbuf = nil
		}
		c.rmu.Unlock()
	}
	return err
}

// frameWriter receives the bytes of WebSocket frames in small pieces (through a 16-byte
// bufio.Writer) and writes each frame with as few writes as possible: pieces of an unfinished
// frame are held (they are small: a header and the bytes bufio had room for), and the frame goes
// out when its last byte arrives, the held bytes and the final piece together (writev). A frame
// piece too large to hold is written at once with what is held.
type frameWriter struct {
	conn     net.Conn
	vectored bool // net.Buffers becomes one writev

	held [64]byte
	nh   int

	// Parser state: the header of the current frame is collected in hdr until complete; then
	// left counts the frame's payload bytes still to come.
	hdr  [14]byte
	nhdr int
	left int64

	bufs [2][]byte
}

var errFrameTooLarge = errors.New("transport: frame length out of range")

// Write implements io.Writer.
func (w *frameWriter) Write(p []byte) (int, error) {
	boundary, err := w.advance(p)
	if err != nil {
		return 0, err
	}
	if !boundary && w.nh+len(p) <= len(w.held) {
		w.nh += copy(w.held[w.nh:], p)
		return len(p), nil
	}
	return len(p), w.flush(p)
}

// flush writes the held bytes followed by p.
func (w *frameWriter) flush(p []byte) error {
	var err error
	switch {
	case w.nh == 0:
		_, err = w.conn.Write(p)
	case len(p) == 0:
		_, err = w.conn.Write(w.held[:w.nh])
	case w.nh+len(p) <= len(w.held):
		n := copy(w.held[w.nh:], p)
		_, err = w.conn.Write(w.held[:w.nh+n])
	case w.vectored:
		w.bufs[0], w.bufs[1] = w.held[:w.nh], p
		bufs := net.Buffers(w.bufs[:])
		_, err = bufs.WriteTo(w.conn)
		w.bufs[0], w.bufs[1] = nil, nil
	case w.nh+len(p) <= leanReadSize:
		// TLS: one record rather than two.
		b := leanReadPool.Get().(*[]byte)
		n := copy(*b, w.held[:w.nh])
		n += copy((*b)[n:], p)
		_, err = w.conn.Write((*b)[:n])
		leanReadPool.Put(b)
	default:
		if _, err = w.conn.Write(w.held[:w.nh]); err == nil {
			_, err = w.conn.Write(p)
		}
	}
	w.nh = 0
	return err
}

// advance runs the frame parser over p and reports whether p ends exactly at a frame boundary.
func (w *frameWriter) advance(p []byte) (bool, error) {
	for len(p) > 0 {
		if w.left > 0 {
			n := int64(len(p))
			if n > w.left {
				n = w.left
			}
			w.left -= n
			p = p[n:]
			continue
		}
		// Collect the header: 2 bytes, then 0/2/8 length bytes, then 4 mask bytes if masked.
		w.hdr[w.nhdr] = p[0]
		w.nhdr++
		p = p[1:]
		if w.nhdr < 2 {
			continue
		}
		need := 2
		switch w.hdr[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if w.hdr[1]&0x80 != 0 {
			need += 4
		}
		if w.nhdr < need {
			continue
		}
		var length int64
		switch l := w.hdr[1] & 0x7f; l {
		case 126:
			length = int64(w.hdr[2])<<8 | int64(w.hdr[3])
		case 127:
			var u uint64
			for _, b := range w.hdr[2:10] {
				u = u<<8 | uint64(b)
			}
			if u > 1<<62 {
				return false, errFrameTooLarge
			}
			length = int64(u)
		default:
			length = int64(l)
		}
		w.nhdr = 0
		w.left = length
	}
	return w.left == 0 && w.nhdr == 0, nil
}
