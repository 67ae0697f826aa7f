package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// endRecorder collects the error a Drain ended with.
type endRecorder struct {
	ch chan error
}

func newEndRecorder() *endRecorder { return &endRecorder{ch: make(chan error, 4)} }

func (e *endRecorder) end(err error) { e.ch <- err }

func (e *endRecorder) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not end")
		return nil
	}
}

func (e *endRecorder) none(t *testing.T) {
	t.Helper()
	select {
	case err := <-e.ch:
		t.Fatalf("drain ended (%v); want it running", err)
	default:
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDrainWritesInOrderAndParks(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	w := &recordWriter{}
	e := newEndRecorder()
	d := o.Attach(t.Context(), w, DrainOptions{End: e.end})
	var want []string
	for round := range 3 {
		for i := range 5 {
			f := fmt.Sprintf("r%d-f%d", round, i)
			want = append(want, f)
			o.Push([]byte(f))
		}
		eventually(t, "frames written", func() bool { return len(w.frames()) == len(want) })
		d.Wait() // parked: no goroutine left
	}
	if got := w.frames(); !slices.Equal(got, want) {
		t.Fatalf("frames = %q, want %q", got, want)
	}
	e.none(t)
	o.Close()
	if err := e.wait(t); err != nil {
		t.Fatalf("end = %v, want nil", err)
	}
	d.Wait()
}

func TestDrainStartsWithQueuedFrames(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	o.Push([]byte("a"))
	o.Push([]byte("b"))
	o.Close()
	w := &recordWriter{}
	e := newEndRecorder()
	d := o.Attach(t.Context(), w, DrainOptions{End: e.end})
	if err := e.wait(t); err != nil {
		t.Fatalf("end = %v", err)
	}
	d.Wait()
	if got := w.got(); len(got) != 1 || !slices.Equal(got[0].frames, []string{"a", "b"}) {
		t.Fatalf("batches = %v, want one batch [a b]", got)
	}
}

func TestDrainDiscardEnds(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	e := newEndRecorder()
	d := o.Attach(t.Context(), &recordWriter{}, DrainOptions{End: e.end})
	o.Discard()
	if err := e.wait(t); err != nil {
		t.Fatalf("end = %v, want nil", err)
	}
	d.Wait()
	if o.Push([]byte("x")) {
		t.Fatal("push after discard accepted")
	}
}

func TestDrainOverrun(t *testing.T) {
	t.Parallel()
	o := NewOutbox(10)
	w := &recordWriter{block: true}
	e := newEndRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	d := o.Attach(ctx, w, DrainOptions{End: e.end})
	o.Push(frameOf('a', 8)) // taken and blocked in the write
	eventually(t, "write started", func() bool { return len(w.got()) == 1 })
	o.Push(frameOf('b', 8))
	if o.Push(frameOf('c', 8)) {
		t.Fatal("push over the bound accepted")
	}
	cancel() // the blocked write fails first
	err := e.wait(t)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("end = %v, want the write's error", err)
	}
	d.Wait()

	// Overrun seen before any write: ErrOverrun.
	o2 := NewOutbox(10)
	o2.Push(frameOf('a', 8))
	o2.Push(frameOf('b', 8))
	e2 := newEndRecorder()
	d2 := o2.Attach(t.Context(), &recordWriter{}, DrainOptions{End: e2.end})
	if err := e2.wait(t); !errors.Is(err, ErrOverrun) {
		t.Fatalf("end = %v, want ErrOverrun", err)
	}
	d2.Wait()
}

func TestDrainWriteError(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	boom := errors.New("boom")
	w := &recordWriter{err: boom}
	e := newEndRecorder()
	d := o.Attach(t.Context(), w, DrainOptions{End: e.end})
	o.Push([]byte("a"))
	if err := e.wait(t); !errors.Is(err, boom) {
		t.Fatalf("end = %v, want boom", err)
	}
	d.Wait()
	o.Push([]byte("b")) // the drain has ended: nothing starts, nothing is written
	time.Sleep(10 * time.Millisecond)
	if n := len(w.got()); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	e.none(t)
}

func TestDrainWriteTimeout(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	w := &recordWriter{block: true}
	e := newEndRecorder()
	d := o.Attach(t.Context(), w, DrainOptions{WriteTimeout: 20 * time.Millisecond, End: e.end})
	o.Push([]byte("a"))
	if err := e.wait(t); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("end = %v, want DeadlineExceeded", err)
	}
	d.Wait()
}

// deadlineWriter is a DeadlineWriter recording the deadlines it got.
type deadlineWriter struct {
	recordWriter
	mu        sync.Mutex
	deadlines []time.Time
}

func (w *deadlineWriter) WriteBatchBy(deadline time.Time, frames [][]byte) error {
	w.mu.Lock()
	w.deadlines = append(w.deadlines, deadline)
	w.mu.Unlock()
	return w.WriteBatch(context.Background(), frames)
}

func TestDrainDeadlineWriter(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	w := &deadlineWriter{}
	e := newEndRecorder()
	start := time.Now()
	d := o.Attach(t.Context(), w, DrainOptions{WriteTimeout: time.Minute, End: e.end})
	o.Push([]byte("a"))
	o.Close()
	if err := e.wait(t); err != nil {
		t.Fatalf("end = %v", err)
	}
	d.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.deadlines) != 1 || w.deadlines[0].Before(start.Add(time.Minute)) || w.deadlines[0].After(time.Now().Add(time.Minute)) {
		t.Fatalf("deadlines = %v, want one a minute from the write", w.deadlines)
	}
	if d.LastWrite().Before(start) {
		t.Fatalf("LastWrite %v before the write", d.LastWrite())
	}
}

func TestDrainStopKeepsFramesForTheNextDrain(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	w1 := &recordWriter{}
	e1 := newEndRecorder()
	d1 := o.Attach(t.Context(), w1, DrainOptions{End: e1.end})
	o.Push([]byte("a"))
	eventually(t, "first frame", func() bool { return len(w1.frames()) == 1 })
	d1.Stop()
	o.Push([]byte("b")) // no drain attached: it waits in the outbox
	o.Push([]byte("c"))
	time.Sleep(10 * time.Millisecond)
	if got := w1.frames(); len(got) != 1 {
		t.Fatalf("stopped drain wrote %q", got)
	}
	w2 := &recordWriter{}
	e2 := newEndRecorder()
	d2 := o.Attach(t.Context(), w2, DrainOptions{End: e2.end})
	eventually(t, "frames on the new drain", func() bool { return len(w2.frames()) == 2 })
	o.Close()
	if err := e2.wait(t); err != nil {
		t.Fatalf("end = %v", err)
	}
	d2.Wait()
	e1.none(t)
	if got := w2.frames(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("second drain wrote %q", got)
	}
}

func TestDrainStopWaitsForTheRunningWrite(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	w := &recordWriter{block: true}
	ctx, cancel := context.WithCancel(t.Context())
	e := newEndRecorder()
	d := o.Attach(ctx, w, DrainOptions{End: e.end})
	o.Push([]byte("a"))
	eventually(t, "write started", func() bool { return len(w.got()) == 1 })
	stopped := make(chan struct{})
	go func() {
		d.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a write was running")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	<-stopped
	if err := e.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("end = %v", err)
	}
}

// TestDrainOneWriterAtATime pushes from many goroutines and checks that writes never overlap and
// every frame is written once, in each producer's order.
func TestDrainOneWriterAtATime(t *testing.T) {
	t.Parallel()
	o := NewOutbox(0)
	var active, overlaps atomic.Int32
	var mu sync.Mutex
	var got []string
	w := writerFunc(func(frames [][]byte) error {
		if active.Add(1) > 1 {
			overlaps.Add(1)
		}
		runtime.Gosched()
		mu.Lock()
		for _, f := range frames {
			got = append(got, string(f))
		}
		mu.Unlock()
		active.Add(-1)
		return nil
	})
	e := newEndRecorder()
	d := o.Attach(t.Context(), w, DrainOptions{End: e.end})
	const producers, each = 8, 500
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				o.Push(fmt.Appendf(nil, "%d:%d", p, i))
				if i%50 == 0 {
					time.Sleep(time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	o.Close()
	if err := e.wait(t); err != nil {
		t.Fatalf("end = %v", err)
	}
	d.Wait()
	if n := overlaps.Load(); n > 0 {
		t.Fatalf("%d overlapping writes", n)
	}
	if len(got) != producers*each {
		t.Fatalf("%d frames written, want %d", len(got), producers*each)
	}
	next := make([]int, producers)
	for _, f := range got {
		var p, i int
		fmt.Sscanf(f, "%d:%d", &p, &i)
		if i != next[p] {
			t.Fatalf("producer %d: frame %d after %d", p, i, next[p]-1)
		}
		next[p]++
	}
}

type writerFunc func(frames [][]byte) error

func (f writerFunc) WriteBatch(_ context.Context, frames [][]byte) error { return f(frames) }

// TestDrainIdleHasNoGoroutine checks the point of Drain: an idle outbox costs no goroutine.
func TestDrainIdleHasNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	const n = 200
	outs := make([]*Outbox, n)
	drains := make([]*Drain, n)
	for i := range outs {
		outs[i] = NewOutbox(0)
		drains[i] = outs[i].Attach(t.Context(), &recordWriter{}, DrainOptions{})
		outs[i].Push([]byte("x"))
	}
	for _, d := range drains {
		d.Wait()
	}
	if after := runtime.NumGoroutine(); after > before+n/10 {
		t.Fatalf("%d goroutines after draining %d idle outboxes, %d before", after, n, before)
	}
	for i, o := range outs {
		o.Close()
		drains[i].Wait()
	}
}

// signalWriter signals every batch written; it is a DeadlineWriter when deadline is set.
type signalWriter struct{ written chan struct{} }

func (w signalWriter) WriteBatch(context.Context, [][]byte) error {
	w.written <- struct{}{}
	return nil
}

type signalDeadlineWriter struct{ signalWriter }

func (w signalDeadlineWriter) WriteBatchBy(time.Time, [][]byte) error {
	w.written <- struct{}{}
	return nil
}

// BenchmarkWake is the cost of one frame pushed to an idle outbox until it is written: a resident
// pump woken through its channel, or a drain goroutine started for it.
func BenchmarkWake(b *testing.B) {
	frame := make([]byte, 64)
	b.Run("pump", func(b *testing.B) {
		o := NewOutbox(0)
		w := signalWriter{make(chan struct{})}
		res := make(chan error, 1)
		go func() { res <- Pump(context.Background(), o, w, PumpOptions{}) }()
		b.ReportAllocs()
		for b.Loop() {
			o.Push(frame)
			<-w.written
		}
		o.Close()
		<-res
	})
	b.Run("drain", func(b *testing.B) {
		o := NewOutbox(0)
		w := signalDeadlineWriter{signalWriter{make(chan struct{})}}
		d := o.Attach(context.Background(), w, DrainOptions{})
		b.ReportAllocs()
		for b.Loop() {
			o.Push(frame)
			<-w.written
		}
		o.Close()
		d.Wait()
	})
}

// TestDrainNoLostWakeup: frames pushed while the drain goroutine is parking are still written,
// without a later push or Close to wake it (a lost wake-up would strand them in the outbox).
func TestDrainNoLostWakeup(t *testing.T) {
	t.Parallel()
	for round := range 200 {
		o := NewOutbox(0)
		var written atomic.Int32
		w := writerFunc(func(frames [][]byte) error {
			written.Add(int32(len(frames)))
			if round%2 == 0 {
				runtime.Gosched()
			}
			return nil
		})
		d := o.Attach(t.Context(), w, DrainOptions{})
		const producers, each = 4, 25
		var wg sync.WaitGroup
		for range producers {
			wg.Go(func() {
				for range each {
					o.Push([]byte("x"))
					runtime.Gosched()
				}
			})
		}
		wg.Wait()
		eventually(t, fmt.Sprintf("round %d: every frame written without a later push", round), func() bool {
			return written.Load() == producers*each
		})
		d.Stop()
	}
}
