package storage

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalrd/signalrd/storage/redistest"
)

// BenchmarkPublishReceive measures one message published by one node and handed to a
// subscriber's handler on another (the same Memory for the memory backend), 128-byte payloads.
func BenchmarkPublishReceive(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		m := NewMemory(Options{})
		defer m.Close()
		benchPubSub(b, m, m, false)
	})
	srv := redistest.Start(b)
	newNode := func(b *testing.B) *Redis {
		r, err := NewRedis(context.Background(), RedisOptions{Options: Options{Prefix: "bench"}, URL: srv.URL()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Close() })
		return r
	}
	b.Run("redis", func(b *testing.B) {
		benchPubSub(b, newNode(b), newNode(b), false)
	})
	b.Run("redis-parallel", func(b *testing.B) {
		benchPubSub(b, newNode(b), newNode(b), true)
	})
}

func benchPubSub(b *testing.B, pub, sub Storage, parallel bool) {
	ctx := context.Background()
	var got atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	s, err := sub.Subscribe(ctx, "bench", func(string, []byte) {
		if got.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, 128)
	publish := func() {
		for {
			err := pub.Publish(ctx, "bench", payload)
			if !errors.Is(err, ErrOverloaded) {
				if err != nil {
					b.Error(err)
				}
				return
			}
			runtime.Gosched() // memory: the handler is behind; wait for it like a real producer would
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	if parallel {
		var left atomic.Int64
		left.Store(n)
		b.SetParallelism(16) // many goroutines publishing, as many links would
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if left.Add(-1) >= 0 {
					publish()
				}
			}
		})
	} else {
		for range b.N {
			publish()
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("received %d of %d", got.Load(), n)
	}
}
