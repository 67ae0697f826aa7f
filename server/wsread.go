package server

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/coder/websocket"
)

// readBufs holds read buffers only while a message is being read, so an idle connection owns none.
var readBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readStream reads WebSocket messages as one byte stream, handing every chunk to fn. It returns
// when the socket fails or closes, ctx ends, or fn returns an error.
func readStream(ctx context.Context, ws *websocket.Conn, fn func([]byte) error) error {
	return readStreamUntil(ctx, ws, fn, nil)
}

// readStreamUntil is readStream that also returns (nil) after a message at whose end done, if
// not nil, reports true.
func readStreamUntil(ctx context.Context, ws *websocket.Conn, fn func([]byte) error, done func() bool) error {
	for {
		if done != nil && done() {
			return nil
		}
		_, r, err := ws.Reader(ctx)
		if err != nil {
			return err
		}
		bp := readBufPool.Get().(*[]byte)
		err = readMessage(r, *bp, fn)
		readBufPool.Put(bp)
		if err != nil {
			return err
		}
	}
}

func readMessage(r io.Reader, buf []byte, fn func([]byte) error) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if ferr := fn(buf[:n]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
