package transport

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsMsg is one WebSocket message received by the test server.
type wsMsg struct {
	typ  websocket.MessageType
	data []byte
}

// wsPair is a real client/server WebSocket pair over httptest: the test writes on client and reads
// what the server received, message by message.
type wsPair struct {
	client *websocket.Conn
	msgs   chan wsMsg
}

func newWSPair(t *testing.T) *wsPair {
	t.Helper()
	msgs := make(chan wsMsg, 64)
	handlerDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		defer close(msgs)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return // the client closed
			}
			msgs <- wsMsg{typ, data}
		}
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, srv.URL, nil)
	if err != nil {
		srv.Close()
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		client.Close(websocket.StatusNormalClosure, "")
		for range msgs { // unblock the handler if a test left messages unread
		}
		<-handlerDone
		srv.Close()
	})
	return &wsPair{client: client, msgs: msgs}
}

// next returns the next message the server received.
func (p *wsPair) next(t *testing.T) wsMsg {
	t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			t.Fatal("connection closed before the expected message")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a message")
		return wsMsg{}
	}
}

// expectOnly checks that nothing but the messages already read was sent: it writes a sentinel and
// requires it to be the next message.
func (p *wsPair) expectOnly(t *testing.T) {
	t.Helper()
	const sentinel = "sentinel"
	if err := p.client.Write(t.Context(), websocket.MessageText, []byte(sentinel)); err != nil {
		t.Fatalf("write sentinel: %v", err)
	}
	if m := p.next(t); string(m.data) != sentinel {
		t.Fatalf("unexpected extra message %q", m.data)
	}
}

// sizedFrames returns frames of the given sizes, frame i filled with 'a'+i.
func sizedFrames(sizes ...int) [][]byte {
	frames := make([][]byte, len(sizes))
	for i, n := range sizes {
		frames[i] = frameOf(byte('a'+i%26), n)
	}
	return frames
}

func TestWSWriterCoalesces(t *testing.T) {
	t.Parallel()
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			p := newWSPair(t)
			w := &WSWriter{Conn: p.client, Type: typ}
			frames := [][]byte{[]byte(`{"type":6}` + "\x1e"), []byte(`{"type":1,"target":"a"}` + "\x1e"), {}, []byte("\x1e")}
			if err := w.WriteBatch(t.Context(), frames); err != nil {
				t.Fatal(err)
			}
			m := p.next(t)
			if m.typ != typ || !bytes.Equal(m.data, bytes.Join(frames, nil)) {
				t.Fatalf("got %v %q; want one %v message %q", m.typ, m.data, typ, bytes.Join(frames, nil))
			}
			p.expectOnly(t)
		})
	}
}

func TestWSWriterMaxBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		maxBatch int
		sizes    []int
		groups   [][]int // frame indexes per expected message
	}{
		{"split at frame boundaries", 8, []int{3, 4, 5, 6, 2}, [][]int{{0, 1}, {2}, {3, 4}}},
		{"exact fit", 8, []int{4, 4, 4, 4}, [][]int{{0, 1}, {2, 3}}},
		{"oversized first", 8, []int{20, 1, 1}, [][]int{{0}, {1, 2}}},
		{"oversized middle", 8, []int{1, 20, 1}, [][]int{{0}, {1}, {2}}},
		{"every frame alone", 8, []int{5, 5, 5}, [][]int{{0}, {1}, {2}}},
		{"empty frames", 8, []int{0, 8, 0, 0, 1}, [][]int{{0, 1, 2, 3}, {4}}},
		{"under the default", 0, []int{1000, 1000, 1000}, [][]int{{0, 1, 2}}},
		{"default splits", 0, []int{400 << 10, 400 << 10, 400 << 10}, [][]int{{0, 1}, {2}}},
		{"negative is default", -1, []int{600 << 10, 600 << 10}, [][]int{{0}, {1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newWSPair(t)
			w := &WSWriter{Conn: p.client, Type: websocket.MessageBinary, MaxBatch: tc.maxBatch}
			frames := sizedFrames(tc.sizes...)
			if err := w.WriteBatch(t.Context(), frames); err != nil {
				t.Fatal(err)
			}
			for i, g := range tc.groups {
				var want []byte
				for _, idx := range g {
					want = append(want, frames[idx]...)
				}
				if m := p.next(t); !bytes.Equal(m.data, want) {
					t.Fatalf("message %d: %d bytes %.20q...; want frames %v (%d bytes)", i, len(m.data), m.data, g, len(want))
				}
			}
			p.expectOnly(t)
		})
	}
}

func TestWSWriterSingleFrame(t *testing.T) {
	t.Parallel()
	p := newWSPair(t)
	w := &WSWriter{Conn: p.client, Type: websocket.MessageBinary, MaxBatch: 8}
	for _, f := range [][]byte{[]byte("one"), frameOf('x', 100), {}} {
		if err := w.WriteBatch(t.Context(), [][]byte{f}); err != nil {
			t.Fatal(err)
		}
		if m := p.next(t); !bytes.Equal(m.data, f) {
			t.Fatalf("got %q; want the frame %q", m.data, f)
		}
		if w.buf != nil {
			t.Fatalf("a single frame went through the coalescing buffer (cap %d)", cap(w.buf))
		}
	}
	p.expectOnly(t)
}

func TestWSWriterEmptyBatch(t *testing.T) {
	t.Parallel()
	p := newWSPair(t)
	w := &WSWriter{Conn: p.client, Type: websocket.MessageText}
	for _, frames := range [][][]byte{nil, {}} {
		if err := w.WriteBatch(t.Context(), frames); err != nil {
			t.Fatal(err)
		}
	}
	p.expectOnly(t) // an empty batch is no message, not an empty one
}

func TestWSWriterBuffer(t *testing.T) {
	t.Parallel()
	p := newWSPair(t)
	w := &WSWriter{Conn: p.client, Type: websocket.MessageBinary, MaxBatch: 16}
	if err := w.WriteBatch(t.Context(), sizedFrames(4, 4)); err != nil {
		t.Fatal(err)
	}
	p.next(t)
	if cap(w.buf) == 0 {
		t.Fatal("coalescing buffer not kept for reuse")
	}
	kept := &w.buf[:1][0]
	if err := w.WriteBatch(t.Context(), sizedFrames(4, 4)); err != nil {
		t.Fatal(err)
	}
	p.next(t)
	if &w.buf[:1][0] != kept {
		t.Fatal("coalescing buffer not reused")
	}
	// A burst far over MaxBatch (one oversized frame among others) is not pinned afterwards.
	if err := w.WriteBatch(t.Context(), sizedFrames(1, 100, 1)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.next(t)
	}
	if w.buf != nil {
		t.Fatalf("buffer of cap %d kept after a burst; want it released (> 4*MaxBatch)", cap(w.buf))
	}
	p.expectOnly(t)
}

func TestWSWriterWriteError(t *testing.T) {
	t.Parallel()
	p := newWSPair(t)
	if err := p.client.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	w := &WSWriter{Conn: p.client, Type: websocket.MessageBinary, MaxBatch: 4}
	for _, frames := range [][][]byte{sizedFrames(1), sizedFrames(1, 1), sizedFrames(4, 4)} {
		if err := w.WriteBatch(t.Context(), frames); err == nil {
			t.Fatalf("WriteBatch of %d frames on a closed connection succeeded", len(frames))
		}
	}
}

func TestPumpIntoWebSocket(t *testing.T) {
	t.Parallel()
	p := newWSPair(t)
	o := NewOutbox(0)
	var want []byte
	for i := range 10 {
		f := fmt.Appendf(nil, `{"type":1,"target":"m%d"}`+"\x1e", i)
		want = append(want, f...)
		o.Push(f)
	}
	o.Close()
	if err := Pump(t.Context(), o, &WSWriter{Conn: p.client, Type: websocket.MessageText}, PumpOptions{}); err != nil {
		t.Fatalf("Pump = %v", err)
	}
	if m := p.next(t); m.typ != websocket.MessageText || !bytes.Equal(m.data, want) {
		t.Fatalf("got %v %q; want one text message with every frame", m.typ, m.data)
	}
	p.expectOnly(t)
}
