package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// batch is one WriteBatch call as the writer saw it.
type batch struct {
	at     time.Time
	frames []string
}

// recordWriter records every batch (copied: the pump reuses its slices). When block is set, a
// write waits for its context to end and returns its error; otherwise it returns err.
type recordWriter struct {
	mu      sync.Mutex
	batches []batch
	err     error
	block   bool
}

func (w *recordWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	b := batch{at: time.Now()}
	for _, f := range frames {
		b.frames = append(b.frames, string(f))
	}
	w.mu.Lock()
	w.batches = append(w.batches, b)
	err, block := w.err, w.block
	w.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (w *recordWriter) got() []batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]batch(nil), w.batches...)
}

// frames flattens the recorded batches.
func (w *recordWriter) frames() []string {
	var all []string
	for _, b := range w.got() {
		all = append(all, b.frames...)
	}
	return all
}

// runPump starts Pump in a goroutine and returns a channel with its result.
func runPump(ctx context.Context, o *Outbox, w BatchWriter, opt PumpOptions) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Pump(ctx, o, w, opt) }()
	return ch
}

func TestPumpBatchesQueuedFrames(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	want := []string{"a", "bb", "ccc", "", "dddd"}
	for _, f := range want {
		o.Push([]byte(f))
	}
	o.Close()
	w := &recordWriter{}
	if err := Pump(t.Context(), o, w, PumpOptions{}); err != nil {
		t.Fatalf("Pump = %v; want nil after Close and drain", err)
	}
	got := w.got()
	if len(got) != 1 || fmt.Sprint(got[0].frames) != fmt.Sprint(want) {
		t.Fatalf("batches = %v; want one batch %q", got, want)
	}
}

func TestPumpDrainsThenReturnsNil(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{}
		res := runPump(t.Context(), o, w, PumpOptions{})
		var want []string
		for round := range 3 {
			for i := range round + 1 {
				f := fmt.Sprintf("r%d-%d", round, i)
				want = append(want, f)
				o.Push([]byte(f))
			}
			synctest.Wait()
			if got := w.got(); len(got) != round+1 || len(got[round].frames) != round+1 {
				t.Fatalf("round %d: batches %v; want one more batch of %d frames", round, got, round+1)
			}
		}
		if len(res) != 0 {
			t.Fatalf("Pump returned %v while the outbox is open", <-res)
		}
		o.Push([]byte("last"))
		want = append(want, "last")
		o.Close()
		if err := <-res; err != nil {
			t.Fatalf("Pump = %v; want nil", err)
		}
		if got := w.frames(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("frames written = %q; want %q", got, want)
		}
	})
}

func TestPumpDiscardReturnsNil(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{}
		res := runPump(t.Context(), o, w, PumpOptions{})
		synctest.Wait()
		o.Discard()
		if err := <-res; err != nil {
			t.Fatalf("Pump = %v; want nil", err)
		}
		if got := w.got(); len(got) != 0 {
			t.Fatalf("batches = %v; want none", got)
		}
	})
}

func TestPumpOverrun(t *testing.T) {
	t.Parallel()
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		o := NewOutbox(4)
		o.Push([]byte("abc"))
		o.Push([]byte("def"))
		w := &recordWriter{}
		if err := Pump(t.Context(), o, w, PumpOptions{}); !errors.Is(err, ErrOverrun) {
			t.Fatalf("Pump = %v; want ErrOverrun", err)
		}
		if got := w.got(); len(got) != 0 {
			t.Fatalf("batches = %v; nothing may be written after an overrun", got)
		}
	})
	t.Run("while running", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			o := NewOutbox(4)
			w := &recordWriter{}
			res := runPump(t.Context(), o, w, PumpOptions{})
			o.Push([]byte("abc"))
			synctest.Wait()
			o.Push([]byte("def"))
			o.Push([]byte("ghi")) // overruns
			if err := <-res; !errors.Is(err, ErrOverrun) {
				t.Fatalf("Pump = %v; want ErrOverrun", err)
			}
			if got := w.frames(); fmt.Sprint(got) != "[abc def]" && fmt.Sprint(got) != "[abc]" {
				t.Fatalf("frames = %q; want abc (and def only if taken before the overrun)", got)
			}
		})
	})
}

func TestPumpWriteError(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{err: errBoom}
		res := runPump(t.Context(), o, w, PumpOptions{})
		o.Push([]byte("a"))
		if err := <-res; !errors.Is(err, errBoom) {
			t.Fatalf("Pump = %v; want the write error", err)
		}
		o.Push([]byte("b"))
		synctest.Wait()
		if got := w.frames(); fmt.Sprint(got) != "[a]" {
			t.Fatalf("frames = %q; nothing may be written after a failed write", got)
		}
	})
}

func TestPumpContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		ctx, cancel := context.WithCancel(t.Context())
		w := &recordWriter{}
		res := runPump(ctx, o, w, PumpOptions{KeepAlive: time.Second, KeepAliveFrame: []byte("ka")})
		synctest.Wait()
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Pump = %v; want context.Canceled", err)
		}
	})
}

func TestPumpWriteTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"explicit", 3 * time.Second, 3 * time.Second},
		{"default", 0, 10 * time.Second},
		{"negative is default", -1, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				o := NewOutbox(0)
				w := &recordWriter{block: true}
				start := time.Now()
				res := runPump(t.Context(), o, w, PumpOptions{WriteTimeout: tc.timeout})
				o.Push([]byte("a"))
				if err := <-res; !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Pump = %v; want context.DeadlineExceeded", err)
				}
				if d := time.Since(start); d != tc.want {
					t.Fatalf("write gave up after %v; want %v", d, tc.want)
				}
			})
		})
	}
}

// keepAlives returns the times, relative to start, of the batches that are exactly one keep-alive.
func keepAlives(w *recordWriter, start time.Time) []time.Duration {
	var at []time.Duration
	for _, b := range w.got() {
		if len(b.frames) == 1 && b.frames[0] == "ka" {
			at = append(at, b.at.Sub(start))
		}
	}
	return at
}

func TestPumpKeepAlive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ka = 10 * time.Second
		o := NewOutbox(0)
		w := &recordWriter{}
		start := time.Now()
		res := runPump(t.Context(), o, w, PumpOptions{KeepAlive: ka, KeepAliveFrame: []byte("ka")})

		// Idle: nothing before KeepAlive, then one keep-alive per KeepAlive.
		time.Sleep(ka - time.Second)
		synctest.Wait()
		if got := w.got(); len(got) != 0 {
			t.Fatalf("writes before KeepAlive elapsed: %v", got)
		}
		time.Sleep(ka*3 - (ka - time.Second) + time.Second)
		synctest.Wait()
		if got := keepAlives(w, start); fmt.Sprint(got) != "[10s 20s 30s]" {
			t.Fatalf("keep-alives at %v; want [10s 20s 30s]", got)
		}

		// Busy: a frame every 4 s for a minute leaves no idle KeepAlive, so no keep-alive.
		busyFrom := time.Since(start)
		var last time.Duration
		for range 15 {
			o.Push([]byte("data"))
			last = time.Since(start)
			time.Sleep(4 * time.Second)
		}
		synctest.Wait()
		for _, at := range keepAlives(w, start) {
			if at > busyFrom && at <= last {
				t.Fatalf("keep-alive at %v while busy (%v..%v)", at, busyFrom, last)
			}
		}
		if n := len(w.frames()) - len(keepAlives(w, start)); n != 15 {
			t.Fatalf("%d data frames written; want 15", n)
		}

		// Idle again: the next keep-alive comes KeepAlive (plus at most one check interval) after the
		// last data write.
		time.Sleep(ka)
		synctest.Wait()
		all := keepAlives(w, start)
		next := all[len(all)-1]
		if next <= last || next-last < ka || next-last > ka+ka/2 {
			t.Fatalf("keep-alive %v after the last write; want between %v and %v", next-last, ka, ka+ka/2)
		}

		o.Close()
		if err := <-res; err != nil {
			t.Fatalf("Pump = %v", err)
		}
	})
}

func TestPumpNoKeepAlive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{}
		res := runPump(t.Context(), o, w, PumpOptions{KeepAliveFrame: []byte("ka")})
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := w.got(); len(got) != 0 {
			t.Fatalf("writes without KeepAlive: %v", got)
		}
		o.Close()
		if err := <-res; err != nil {
			t.Fatalf("Pump = %v", err)
		}
	})
}

// A keep-alive too short to halve must not panic the pump (time.NewTicker rejects 0).
func TestPumpTinyKeepAlive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{}
		ctx, cancel := context.WithCancel(t.Context())
		res := runPump(ctx, o, w, PumpOptions{KeepAlive: time.Nanosecond, KeepAliveFrame: []byte("ka")})
		time.Sleep(10 * time.Nanosecond)
		synctest.Wait()
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Pump = %v; want context.Canceled", err)
		}
		if len(keepAlives(w, time.Time{})) == 0 {
			t.Fatal("no keep-alive written")
		}
	})
}

func TestPumpKeepAliveWriteError(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox(0)
		w := &recordWriter{err: errBoom}
		start := time.Now()
		res := runPump(t.Context(), o, w, PumpOptions{KeepAlive: time.Second, KeepAliveFrame: []byte("ka")})
		if err := <-res; !errors.Is(err, errBoom) {
			t.Fatalf("Pump = %v; want the keep-alive write error", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("keep-alive failed after %v; want 1s", d)
		}
	})
}

// discardWriter counts what it is given.
type discardWriter struct{ frames, bytes int }

func (w *discardWriter) WriteBatch(_ context.Context, frames [][]byte) error {
	w.frames += len(frames)
	for _, f := range frames {
		w.bytes += len(f)
	}
	return nil
}

func BenchmarkPump(b *testing.B) {
	frame := bytes.Repeat([]byte{'p'}, 64)
	o := NewOutbox(0)
	w := &discardWriter{}
	res := make(chan error, 1)
	go func() { res <- Pump(context.Background(), o, w, PumpOptions{}) }()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		o.Push(frame)
		n++
	}
	o.Close()
	if err := <-res; err != nil {
		b.Fatal(err)
	}
	if w.frames != n {
		b.Fatalf("pump wrote %d frames; want %d", w.frames, n)
	}
}
