package client

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// newSinkConn is a Conn without a WebSocket: writes go to sink, and the reader is driven by
// feeding rbuf and calling dispatchBuffered.
func newSinkConn(codec hubproto.Codec, sink func([]byte) error) *Conn {
	c := newConn(codec, slog.New(slog.DiscardHandler))
	c.sink = sink
	return c
}

func mustAppend(t testing.TB, codec hubproto.Codec, msgs ...hubproto.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = codec.Append(b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// receiveSeeds are valid server streams for each codec.
func receiveSeeds(t testing.TB, codec hubproto.Codec) [][]byte {
	raw := func(v any) hubproto.Raw {
		r, err := codec.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return [][]byte{
		mustAppend(t, codec, hubproto.Ping{}),
		mustAppend(t, codec, hubproto.Invocation{Target: "On", Arguments: []hubproto.Raw{raw("x"), raw(1)}}),
		mustAppend(t, codec, hubproto.Invocation{InvocationID: "1", Target: "Result", Arguments: []hubproto.Raw{raw(2)}}),
		mustAppend(t, codec, hubproto.Invocation{InvocationID: "2", Target: "none"}),
		mustAppend(t, codec, hubproto.Completion{InvocationID: "0", HasResult: true, Result: raw(3)}),
		mustAppend(t, codec, hubproto.Completion{InvocationID: "0", Error: "e"}),
		mustAppend(t, codec, hubproto.StreamItem{InvocationID: "0", Item: raw(1)}),
		mustAppend(t, codec, hubproto.Close{Error: "bye", AllowReconnect: true}),
		mustAppend(t, codec, hubproto.Ack{SequenceID: 1}, hubproto.Sequence{SequenceID: 2}, hubproto.Ping{}),
	}
}

// FuzzReceive feeds arbitrary server bytes, split in two reads, to the dispatch path: it must
// never panic, and an ended stream must carry a reason.
func FuzzReceive(f *testing.F) {
	for _, proto := range []bool{false, true} {
		codec := hubproto.JSON()
		if proto {
			codec = hubproto.MessagePack()
		}
		for _, s := range receiveSeeds(f, codec) {
			f.Add(proto, s, uint16(len(s)/2))
		}
	}
	f.Fuzz(func(t *testing.T, binary bool, data []byte, split uint16) {
		codec := hubproto.JSON()
		if binary {
			codec = hubproto.MessagePack()
		}
		c := newSinkConn(codec, func([]byte) error { return nil })
		c.maxMsg = 1 << 16
		c.On("on", func(args []hubproto.Raw) {
			for _, a := range args {
				var v any
				_ = c.Unmarshal(a, &v)
			}
		})
		c.OnResult("result", func(args []hubproto.Raw) (any, error) { return len(args), nil })
		// One pending invocation so completions have somewhere to go.
		ch := make(chan completion, 1)
		c.pending["0"] = ch

		cut := min(int(split), len(data))
		stopped := false
		for _, chunk := range [][]byte{data[:cut], data[cut:]} {
			c.rbuf = append(c.rbuf, chunk...)
			if c.dispatchBuffered() {
				stopped = true
				break
			}
			if len(c.rbuf) > len(data) {
				t.Fatalf("kept %d bytes of %d", len(c.rbuf), len(data))
			}
		}
		c.wg.Wait()
		c.cancel()
		if stopped && c.err == nil {
			t.Fatal("stream ended without a reason")
		}
	})
}

func TestReceiveDispatch(t *testing.T) {
	t.Parallel()
	for _, codec := range []hubproto.Codec{hubproto.JSON(), hubproto.MessagePack()} {
		t.Run(codec.Name(), func(t *testing.T) {
			t.Parallel()
			sent := make(chan []byte, 10)
			c := newSinkConn(codec, func(b []byte) error {
				sent <- append([]byte(nil), b...)
				return nil
			})
			var calls int
			var kept []hubproto.Raw
			c.On("on", func(args []hubproto.Raw) { calls, kept = calls+1, args })
			ch := make(chan completion, 1)
			c.pending["0"] = ch
			var stream []byte
			for _, s := range receiveSeeds(t, codec) {
				stream = append(stream, s...)
			}
			// Byte by byte: partial messages must be kept across reads.
			stopped := false
			for i := range stream {
				c.rbuf = append(c.rbuf, stream[i])
				if c.dispatchBuffered() {
					stopped = i == len(stream)-1-len(receiveSeeds(t, codec)[8])
					break
				}
			}
			if !stopped {
				t.Error("did not stop exactly at the Close message")
			}
			var ce *CloseError
			if !errors.As(c.err, &ce) || ce.Message != "bye" || !ce.AllowReconnect {
				t.Errorf("reason = %v", c.err)
			}
			if calls != 1 {
				t.Errorf("On handler called %d times", calls)
			}
			// Arguments stay valid after the receive buffer was reused.
			if s, err := Decode[string](c, kept[0]); err != nil || s != "x" {
				t.Errorf("kept argument = %q, %v", s, err)
			}
			if r := <-ch; string(r.result) == "" || r.err != nil {
				t.Errorf("completion = %+v", r)
			}
			c.wg.Wait()
			c.cancel()
			// "none" without a handler is answered with an error (reader goroutine); "Result"
			// has no OnResult handler here either.
			if len(sent) != 2 {
				t.Fatalf("%d frames sent, want 2", len(sent))
			}
			for range 2 {
				m, err := codec.Decode(trimFrame(t, codec, <-sent))
				comp, ok := m.(hubproto.Completion)
				if err != nil || !ok || comp.Error != errNoResult {
					t.Errorf("reply = %+v, %v", m, err)
				}
			}
		})
	}
}

func trimFrame(t *testing.T, codec hubproto.Codec, b []byte) []byte {
	t.Helper()
	msg, _, rest, err := codec.Cut(b, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("frame %q: %v", b, err)
	}
	return msg
}

func FuzzNegotiateResponse(f *testing.F) {
	f.Add([]byte(`{"negotiateVersion":1,"connectionId":"a","connectionToken":"b","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}`))
	f.Add([]byte(`{"url":"http://x/client/?hub=a","accessToken":"t"}`))
	f.Add([]byte(`{"error":"nope"}`))
	f.Add([]byte(`{"ProtocolVersion":"1.5"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var nr negotiateResponse
		if json.Unmarshal(body, &nr) != nil {
			return
		}
		ep, err := connectionEndpoint("http://x/chat", &nr, "Text")
		if err == nil && ep.url != "http://x/chat" {
			t.Fatalf("endpoint url %q", ep.url)
		}
	})
}

// BenchmarkSendEncode measures the client's own Send path (marshal, encode, lock) with the
// WebSocket write replaced by a no-op.
func BenchmarkSendEncode(b *testing.B) {
	type msg struct {
		User string `json:"user" msgpack:"user"`
		Text string `json:"text" msgpack:"text"`
	}
	for _, codec := range []hubproto.Codec{hubproto.JSON(), hubproto.MessagePack()} {
		b.Run(codec.Name(), func(b *testing.B) {
			c := newSinkConn(codec, func([]byte) error { return nil })
			defer c.cancel()
			ctx := context.Background()
			arg := msg{User: "bench", Text: "hello, world"}
			pre, err := codec.Marshal(arg)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("value", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := c.Send(ctx, "SendMessage", arg); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("raw", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := c.Send(ctx, "SendMessage", pre); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestKeepAliveTimers checks the keep-alive and server-timeout schedule on a fake clock:
// pings after 15 s of send idleness, reset by sends; timeout 30 s after the last receive.
func TestKeepAliveTimers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var pings []time.Duration
		start := time.Now()
		c := newSinkConn(hubproto.JSON(), func(b []byte) error {
			if string(b) == `{"type":6}`+"\x1e" {
				mu.Lock()
				pings = append(pings, time.Since(start))
				mu.Unlock()
			}
			return nil
		})
		defer c.cancel()
		c.keepAlive, c.serverTimeout = 15*time.Second, 30*time.Second
		c.wg.Add(1)
		go c.keepAliveLoop()

		time.Sleep(20 * time.Second)
		c.lastRecv.Store(c.now()) // t=20s: a message from the server
		time.Sleep(5 * time.Second)
		if err := c.Send(context.Background(), "x"); err != nil { // t=25s: next ping at 40s
			t.Fatal(err)
		}
		time.Sleep(24 * time.Second) // t=49s: 29 s after the last receive
		synctest.Wait()
		reason := func() error {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.err
		}
		if err := reason(); err != nil {
			t.Fatalf("ended early: %v", err)
		}
		time.Sleep(2 * time.Second) // t=51s
		synctest.Wait()
		if err := reason(); !errors.Is(err, ErrServerTimeout) {
			t.Errorf("reason = %v, want ErrServerTimeout", err)
		}
		c.wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if want := []time.Duration{15 * time.Second, 40 * time.Second}; !slices.Equal(pings, want) {
			t.Errorf("pings at %v, want %v", pings, want)
		}
	})
}

// A ping due while another write holds the lock is retried after KeepAliveInterval/16.
func TestKeepAliveBusyWriter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var pings []time.Duration
		start := time.Now()
		c := newSinkConn(hubproto.JSON(), func([]byte) error {
			mu.Lock()
			pings = append(pings, time.Since(start))
			mu.Unlock()
			return nil
		})
		c.keepAlive, c.serverTimeout = 16*time.Second, -1
		c.wg.Add(1)
		go c.keepAliveLoop()
		time.Sleep(10 * time.Second)
		c.wsem <- struct{}{} // a writer stuck from t=10s to t=20s
		time.Sleep(10 * time.Second)
		<-c.wsem
		time.Sleep(5 * time.Second)
		c.cancel()
		c.wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		// Due at 16s; retried at 17s, 18s, 19s (busy), 20s (ties with the release), 21s at the latest.
		if len(pings) != 1 || pings[0] < 20*time.Second || pings[0] > 21*time.Second {
			t.Errorf("pings at %v, want one between 20s and 21s", pings)
		}
	})
}
