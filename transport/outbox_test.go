package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
)

// frameOf returns an n-byte frame filled with b.
func frameOf(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// signalled reports whether ch holds a signal, consuming it.
func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestOutboxPushBound(t *testing.T) {
	t.Parallel()
	type push struct {
		size int
		ok   bool
	}
	tests := []struct {
		name        string
		max         int
		pushes      []push
		wantLen     int
		wantTaken   int // frames Take returns afterwards
		wantOverrun bool
	}{
		{"under bound", 10, []push{{4, true}, {5, true}}, 9, 2, false},
		{"exactly the bound", 10, []push{{4, true}, {6, true}}, 10, 2, false},
		{"over the bound", 10, []push{{4, true}, {7, false}}, 0, 0, true},
		{"nothing after overrun", 10, []push{{4, true}, {7, false}, {1, false}}, 0, 0, true},
		{"oversized into empty", 10, []push{{100, true}}, 100, 1, false},
		{"oversized after others", 10, []push{{1, true}, {100, false}}, 0, 0, true},
		{"anything after oversized", 10, []push{{100, true}, {1, false}}, 0, 0, true},
		{"empty frames fit a full outbox", 10, []push{{10, true}, {0, true}, {0, true}}, 10, 3, false},
		{"unbounded", 0, []push{{1 << 20, true}, {1 << 20, true}, {1 << 20, true}}, 3 << 20, 3, false},
		{"negative is unbounded", -1, []push{{1 << 20, true}, {1 << 20, true}}, 2 << 20, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := NewOutbox(tc.max)
			for i, p := range tc.pushes {
				if got := o.Push(frameOf(byte(i), p.size)); got != p.ok {
					t.Fatalf("push %d (%d bytes) = %v; want %v", i, p.size, got, p.ok)
				}
			}
			if got := o.Len(); got != tc.wantLen {
				t.Errorf("Len() = %d; want %d", got, tc.wantLen)
			}
			frames, done, overrun := o.Take(nil)
			if len(frames) != tc.wantTaken || overrun != tc.wantOverrun || done != tc.wantOverrun {
				t.Fatalf("Take = %d frames, done %v, overrun %v; want %d, %v, %v",
					len(frames), done, overrun, tc.wantTaken, tc.wantOverrun, tc.wantOverrun)
			}
			for i, f := range frames {
				if len(f) != tc.pushes[i].size || (len(f) > 0 && f[0] != byte(i)) {
					t.Errorf("frame %d is not push %d", i, i)
				}
			}
			if o.Len() != 0 {
				t.Errorf("Len() after Take = %d; want 0", o.Len())
			}
		})
	}
}

func TestOutboxOverrunIsSticky(t *testing.T) {
	t.Parallel()
	o := NewOutbox(4)
	o.Push(frameOf('a', 3))
	signalled(o.Ready())
	if o.Push(frameOf('b', 3)) {
		t.Fatal("push over the bound succeeded")
	}
	if !signalled(o.Ready()) {
		t.Fatal("overrun did not signal Ready: the pump would not notice")
	}
	for i := range 3 {
		if frames, done, overrun := o.Take(nil); len(frames) != 0 || !done || !overrun {
			t.Fatalf("Take %d = %d frames, done %v, overrun %v; want 0, true, true", i, len(frames), done, overrun)
		}
	}
	if o.Push(frameOf('c', 1)) {
		t.Fatal("push after overrun succeeded")
	}
	if err := o.PushWait(t.Context(), 0, frameOf('c', 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("PushWait after overrun = %v; want ErrClosed", err)
	}
}

func TestOutboxRoomAfterTake(t *testing.T) {
	t.Parallel()
	o := NewOutbox(10)
	if !o.Push(frameOf('a', 8)) {
		t.Fatal("first push failed")
	}
	if frames, _, _ := o.Take(nil); len(frames) != 1 {
		t.Fatalf("Take = %d frames; want 1", len(frames))
	}
	// Take frees the whole bound, and an oversized frame is again welcome in the empty outbox.
	if !o.Push(frameOf('b', 8)) {
		t.Fatal("push after Take failed")
	}
	o.Take(nil)
	if !o.Push(frameOf('c', 50)) {
		t.Fatal("oversized push into the emptied outbox failed")
	}
}

func TestOutboxClose(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	o.Push([]byte("a"))
	o.Push([]byte("b"))
	signalled(o.Ready())
	o.Close()
	if !signalled(o.Ready()) {
		t.Fatal("Close did not signal Ready")
	}
	o.Close() // idempotent
	if o.Push([]byte("c")) {
		t.Fatal("Push after Close succeeded")
	}
	if err := o.PushWait(t.Context(), 0, []byte("c")); !errors.Is(err, ErrClosed) {
		t.Fatalf("PushWait after Close = %v; want ErrClosed", err)
	}
	frames, done, overrun := o.Take(nil)
	if got := string(bytes.Join(frames, nil)); got != "ab" || !done || overrun {
		t.Fatalf("Take after Close = %q, done %v, overrun %v; want \"ab\", true, false", got, done, overrun)
	}
	frames, done, overrun = o.Take(frames)
	if len(frames) != 0 || !done || overrun {
		t.Fatalf("second Take = %d frames, done %v, overrun %v; want 0, true, false", len(frames), done, overrun)
	}
}

func TestOutboxTakeOpen(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	if frames, done, overrun := o.Take(nil); len(frames) != 0 || done || overrun {
		t.Fatalf("Take on an empty open outbox = %d, %v, %v; want 0, false, false", len(frames), done, overrun)
	}
	if signalled(o.Ready()) {
		t.Fatal("Ready signalled before any push")
	}
	// Many pushes coalesce into one pending signal; Take returns them in order.
	for i := range 5 {
		o.Push([]byte(fmt.Sprint(i)))
	}
	if !signalled(o.Ready()) || signalled(o.Ready()) {
		t.Fatal("want exactly one pending Ready signal")
	}
	frames, done, _ := o.Take(nil)
	if got := string(bytes.Join(frames, []byte(","))); got != "0,1,2,3,4" || done {
		t.Fatalf("Take = %q, done %v; want 0,1,2,3,4, false", got, done)
	}
	// The returned slice may be handed back; it is cleared and reused, and the frames stay right.
	o.Push([]byte("x"))
	frames, _, _ = o.Take(frames)
	if len(frames) != 1 || string(frames[0]) != "x" {
		t.Fatalf("Take(reused) = %q; want [x]", frames)
	}
	frames, _, _ = o.Take(frames)
	if len(frames) != 0 {
		t.Fatalf("Take on empty with a reused buffer = %q; want none", frames)
	}
}

func TestOutboxDiscard(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	o.Push([]byte("a"))
	o.Push([]byte("b"))
	signalled(o.Ready())
	o.Discard()
	if !signalled(o.Ready()) {
		t.Fatal("Discard did not signal Ready")
	}
	if o.Len() != 0 {
		t.Fatalf("Len() after Discard = %d", o.Len())
	}
	if frames, done, overrun := o.Take(nil); len(frames) != 0 || !done || overrun {
		t.Fatalf("Take after Discard = %d frames, done %v, overrun %v; want 0, true, false", len(frames), done, overrun)
	}
	if o.Push([]byte("c")) {
		t.Fatal("Push after Discard succeeded")
	}
	o.Discard() // idempotent
	o.Close()
}

// pushWaitAsync runs PushWait in a goroutine and returns a channel with its result.
func pushWaitAsync(ctx context.Context, o *Outbox, limit int, frame []byte) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- o.PushWait(ctx, limit, frame) }()
	return ch
}

// pending reports whether the PushWait behind ch is still blocked (call after synctest.Wait).
func pending(ch <-chan error) bool { return len(ch) == 0 }

func TestOutboxPushWait(t *testing.T) {
	t.Parallel()
	t.Run("no wait under the limit", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(0)
		o.Push(frameOf('a', 5))
		if err := o.PushWait(t.Context(), 10, frameOf('b', 5)); err != nil {
			t.Fatal(err)
		}
		if o.Len() != 10 {
			t.Fatalf("Len() = %d; want 10", o.Len())
		}
	})
	t.Run("no limit", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(0)
		for range 10 {
			if err := o.PushWait(t.Context(), 0, frameOf('a', 1<<20)); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("oversized frame into empty outbox", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(0)
		if err := o.PushWait(t.Context(), 10, frameOf('a', 100)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ignores the outbox bound", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(10)
		for range 5 {
			if err := o.PushWait(t.Context(), 100, frameOf('a', 10)); err != nil {
				t.Fatal(err)
			}
		}
		if frames, _, overrun := o.Take(nil); len(frames) != 5 || overrun {
			t.Fatalf("Take = %d frames, overrun %v; want 5, false", len(frames), overrun)
		}
	})
	t.Run("signals Ready", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(0)
		if err := o.PushWait(t.Context(), 0, []byte("a")); err != nil || !signalled(o.Ready()) {
			t.Fatalf("PushWait = %v, Ready signalled = false", err)
		}
	})
}

func TestOutboxPushWaitBlocksUntilTake(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		o.Push(frameOf('a', 8))
		res := pushWaitAsync(t.Context(), o, 10, frameOf('b', 8))
		synctest.Wait()
		if !pending(res) {
			t.Fatalf("PushWait over its limit returned %v without waiting", <-res)
		}
		if o.Len() != 8 {
			t.Fatalf("Len() while waiting = %d; want 8", o.Len())
		}
		// A Take of nothing does not release it; a Take that drains does.
		frames, _, _ := o.Take(nil)
		if len(frames) != 1 || frames[0][0] != 'a' {
			t.Fatalf("Take = %q", frames)
		}
		if err := <-res; err != nil {
			t.Fatalf("PushWait after Take = %v", err)
		}
		frames, _, _ = o.Take(frames)
		if len(frames) != 1 || frames[0][0] != 'b' {
			t.Fatalf("Take = %q; want the waiting frame", frames)
		}
	})
}

func TestOutboxPushWaitManyWaiters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		o.Push(frameOf('x', 10))
		var results []<-chan error
		for i := range 3 {
			results = append(results, pushWaitAsync(t.Context(), o, 10, frameOf(byte('a'+i), 6)))
		}
		synctest.Wait()
		// Each drain admits waiters while they fit: one 6-byte frame per 10-byte window.
		for round := range 3 {
			frames, _, _ := o.Take(nil)
			if len(frames) != 1 {
				t.Fatalf("round %d: Take = %d frames; want 1", round, len(frames))
			}
			synctest.Wait()
			released := 0
			for _, r := range results {
				if !pending(r) {
					released++
				}
			}
			if released != round+1 {
				t.Fatalf("round %d: %d waiters released; want %d", round, released, round+1)
			}
		}
		for _, r := range results {
			if err := <-r; err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestOutboxPushWaitContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		o.Push(frameOf('a', 8))
		ctx, cancel := context.WithCancel(t.Context())
		res := pushWaitAsync(ctx, o, 10, frameOf('b', 8))
		synctest.Wait()
		if !pending(res) {
			t.Fatal("PushWait did not wait")
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("PushWait after cancel = %v; want context.Canceled", err)
		}
		if frames, _, _ := o.Take(nil); len(frames) != 1 {
			t.Fatalf("Take = %d frames; the cancelled frame must not be queued", len(frames))
		}
	})
}

// A waiting PushWait must learn promptly that the outbox will never take its frame, however the
// outbox ends, without relying on a pump to drain it (the pump may be gone already).
func TestOutboxPushWaitWokenByEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		end  func(o *Outbox)
	}{
		{"Close", func(o *Outbox) { o.Close() }},
		{"Discard", func(o *Outbox) { o.Discard() }},
		{"overrun", func(o *Outbox) {
			if o.Push(frameOf('z', 100)) {
				panic("push over the bound succeeded")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := NewOutbox(50)
				o.Push(frameOf('a', 40))
				res := pushWaitAsync(t.Context(), o, 45, frameOf('b', 10))
				synctest.Wait()
				if !pending(res) {
					t.Fatal("PushWait did not wait")
				}
				tc.end(o)
				synctest.Wait()
				if pending(res) {
					t.Fatalf("PushWait still blocked after %s", tc.name)
				}
				if err := <-res; !errors.Is(err, ErrClosed) {
					t.Fatalf("PushWait after %s = %v; want ErrClosed", tc.name, err)
				}
			})
		})
	}
}

// TestOutboxConcurrentProducers pushes from many goroutines (some with PushWait back-pressure) to one
// consumer, which must receive every frame, each producer's in order. Run with -race.
func TestOutboxConcurrentProducers(t *testing.T) {
	t.Parallel()
	const producers, perProducer = 16, 500
	o := NewOutbox(0)
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for seq := range perProducer {
				f := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(p)), uint32(seq))
				if p%2 == 0 {
					if !o.Push(f) {
						errs <- fmt.Errorf("producer %d: Push %d failed", p, seq)
						return
					}
				} else if err := o.PushWait(t.Context(), 64, f); err != nil {
					errs <- fmt.Errorf("producer %d: PushWait %d: %w", p, seq, err)
					return
				}
			}
		})
	}
	consumed := make(chan [producers]int, 1)
	go func() {
		var next [producers]int
		var buf [][]byte
		for range o.Ready() {
			frames, done, overrun := o.Take(buf)
			if overrun {
				errs <- errors.New("unbounded outbox overran")
				break
			}
			for _, f := range frames {
				p, seq := binary.BigEndian.Uint32(f), int(binary.BigEndian.Uint32(f[4:]))
				if seq != next[p] {
					errs <- fmt.Errorf("producer %d: got frame %d; want %d", p, seq, next[p])
				}
				next[p] = seq + 1
			}
			buf = frames
			if done {
				break
			}
		}
		consumed <- next
	}()
	wg.Wait()
	o.Close()
	next := <-consumed
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for p, n := range next {
		if n != perProducer {
			t.Errorf("producer %d: consumer got %d frames; want %d", p, n, perProducer)
		}
	}
}

func BenchmarkOutboxPushTake(b *testing.B) {
	const frames = 1000
	frame := make([]byte, 64)
	o := NewOutbox(0)
	var buf [][]byte
	b.SetBytes(frames * int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		for range frames {
			o.Push(frame)
		}
		signalled(o.Ready())
		var got [][]byte
		got, _, _ = o.Take(buf)
		if len(got) != frames {
			b.Fatalf("Take = %d frames; want %d", len(got), frames)
		}
		buf = got
	}
}
