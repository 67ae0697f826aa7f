package transport

import (
	"context"

	"github.com/coder/websocket"
)

// DefaultMaxBatch caps the bytes coalesced into one WebSocket message.
const DefaultMaxBatch = 1 << 20

// WSWriter writes batches as WebSocket messages of one type, several whole frames per message.
type WSWriter struct {
	Conn     *websocket.Conn
	Type     websocket.MessageType
	MaxBatch int // 0: DefaultMaxBatch
	buf      []byte
}

// WriteBatch implements BatchWriter. A single frame is written without copying; an empty batch
// writes nothing (not an empty message).
func (w *WSWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	if len(frames) == 1 {
		return w.Conn.Write(ctx, w.Type, frames[0])
	}
	max := w.MaxBatch
	if max <= 0 {
		max = DefaultMaxBatch
	}
	w.buf = w.buf[:0]
	for _, f := range frames {
		if len(w.buf) > 0 && len(w.buf)+len(f) > max {
			if err := w.Conn.Write(ctx, w.Type, w.buf); err != nil {
				return err
			}
			w.buf = w.buf[:0]
		}
		w.buf = append(w.buf, f...)
	}
	err := w.Conn.Write(ctx, w.Type, w.buf)
	if cap(w.buf) > 4*max {
		w.buf = nil // do not pin a burst's buffer for the connection's lifetime
	}
	return err
}
