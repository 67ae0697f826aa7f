package transport

import (
	"context"
	"time"
)

// BatchWriter writes a batch of whole frames, as few writes as the transport allows.
type BatchWriter interface {
	WriteBatch(ctx context.Context, frames [][]byte) error
}

// PumpOptions tune a write pump.
type PumpOptions struct {
	// KeepAlive, when > 0, writes KeepAliveFrame after that long without any write.
	KeepAlive      time.Duration
	KeepAliveFrame []byte
	// KeepAliveFunc, when set, replaces KeepAliveFrame; it may return nil to skip this keep-alive
	// (for connections whose need for pings is only known later).
	KeepAliveFunc func() []byte
	// WriteTimeout bounds one batch write; 0 means 10 s. A peer that cannot take a batch in time is dead.
	WriteTimeout time.Duration
}

// Pump drains the outbox into w until the outbox is closed and drained (nil), overrun
// (ErrOverrun, nothing more is written), ctx ends, or a write fails.
func Pump(ctx context.Context, o *Outbox, w BatchWriter, opt PumpOptions) error {
	wt := opt.WriteTimeout
	if wt <= 0 {
		wt = 10 * time.Second
	}
	var tick <-chan time.Time
	if opt.KeepAlive > 0 {
		// Check twice per period; max keeps a 1 ns period from halving to 0, which NewTicker rejects.
		t := time.NewTicker(max(opt.KeepAlive/2, time.Nanosecond))
		defer t.Stop()
		tick = t.C
	}
	last := time.Now()
	write := func(frames [][]byte) error {
		wctx, cancel := context.WithTimeout(ctx, wt)
		defer cancel()
		last = time.Now()
		return w.WriteBatch(wctx, frames)
	}
	var buf [][]byte
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if time.Since(last) >= opt.KeepAlive {
				frame := opt.KeepAliveFrame
				if opt.KeepAliveFunc != nil {
					frame = opt.KeepAliveFunc()
				}
				if frame == nil {
					last = time.Now()
					continue
				}
				if err := write([][]byte{frame}); err != nil {
					return err
				}
			}
			continue
		case <-o.Ready():
		}
		frames, done, overrun := o.Take(buf)
		if overrun {
			return ErrOverrun
		}
		if len(frames) > 0 {
			if err := write(frames); err != nil {
				return err
			}
		}
		buf = frames
		if done {
			return nil
		}
	}
}
