package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear like HdrHistogram: values below 2*histSub microseconds have their own
// bucket, above that every power of two is split into histSub buckets, so a bucket is at most
// 1/histSub (1.6 %) wide relative to its value. Recording is a few atomic adds on a fixed array:
// no allocation and no lock per message, whatever the rate.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histShifts  = 34 // values up to ~2^40 µs (12 days) are kept exactly enough; larger ones clamp
	histBuckets = (histShifts + 2) * histSub
)

// histogram records latencies in microseconds. Record is safe for concurrent use; Snapshot may run
// concurrently with Record (it then sees some of the concurrent values).
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	idx := (shift+1)*histSub + int(v>>uint(shift)) - histSub
	if idx >= histBuckets {
		return histBuckets - 1
	}
	return idx
}

// histUpper is the largest value that lands in bucket idx (percentiles are reported as the bucket's
// upper bound, so they never understate).
func histUpper(idx int) uint64 {
	if idx < 2*histSub {
		return uint64(idx)
	}
	shift := idx/histSub - 1
	mant := uint64(idx%histSub + histSub)
	return (mant+1)<<uint(shift) - 1
}

// Record adds one latency; negative durations (clock steps) count as zero.
func (h *histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[histIndex(us)].Add(1)
	h.n.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// reset forgets everything recorded. Values recorded concurrently may be kept or lost (the runs
// reset between phases, when nothing is recorded).
func (h *histogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.sumUS.Store(0)
	h.maxUS.Store(0)
}

// latencyStats are the reported figures, in milliseconds.
type latencyStats struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Snapshot computes the percentiles of everything recorded so far.
func (h *histogram) Snapshot() latencyStats {
	var counts [histBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	st := latencyStats{Count: total}
	if total == 0 {
		return st
	}
	maxUS := h.maxUS.Load()
	pct := func(p float64) float64 {
		rank := uint64(math.Ceil(p * float64(total)))
		if rank < 1 {
			rank = 1
		}
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen >= rank {
				return ms(min(histUpper(i), maxUS))
			}
		}
		return ms(maxUS)
	}
	st.P50, st.P90, st.P99 = pct(0.50), pct(0.90), pct(0.99)
	st.Max = ms(maxUS)
	if n := h.n.Load(); n > 0 {
		st.Mean = ms(h.sumUS.Load() / n)
	}
	return st
}

func ms(us uint64) float64 { return float64(us) / 1000 }
