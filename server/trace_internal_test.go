package server

import (
	"testing"
)

func TestTraceBusDropsAndRing(t *testing.T) {
	t.Parallel()
	var b traceBus
	if b.on() {
		t.Fatal("bus on without viewers")
	}
	slow, _, _ := b.subscribe(false, nil)
	withPayloads, _, _ := b.subscribe(true, map[string]bool{"a": true})
	const n = traceSubBuffer + 100
	for i := range n {
		e := &traceEvent{Kind: traceMessage, Instance: "a", Size: i}
		b.capture(e, []byte("payload"), false)
		b.publish(e) // never blocks, nobody reads
	}
	if got := slow.dropped.Load(); got != 100 {
		t.Fatalf("slow viewer dropped %d, want 100", got)
	}
	first := <-withPayloads.ch
	if first.Payload != "payload" || first.PayloadEncoding != payloadEncText {
		t.Fatalf("payload viewer got %+v", first)
	}
	if e := <-slow.ch; e.Payload != "" || e.Seq != first.Seq {
		t.Fatalf("plain viewer got %+v", e)
	}
	late, recent, _ := b.subscribe(true, nil)
	if len(recent) != traceRingSize || recent[0].Size != n-traceRingSize || recent[len(recent)-1].Size != n-1 {
		t.Fatalf("ring replay: %d events from size %d", len(recent), recent[0].Size)
	}
	for _, e := range recent {
		if e.Payload != "" || e.rawPayload != nil {
			t.Fatal("the ring keeps a payload")
		}
	}
	other, recentOther, _ := b.subscribe(false, map[string]bool{"b": true})
	if len(recentOther) != 0 {
		t.Fatalf("instance filter let %d events through", len(recentOther))
	}
	for _, s := range []*traceSub{slow, withPayloads, late, other} {
		b.unsubscribe(s)
	}
	if b.on() || b.payloadSubs.Load() != 0 {
		t.Fatal("bus still on after every viewer left")
	}
}

func TestTracePayloadEncoding(t *testing.T) {
	t.Parallel()
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(i)
	}
	for _, tc := range []struct {
		name      string
		p         []byte
		binary    bool
		enc       string
		truncated bool
	}{
		{"text", []byte(`{"type":6}`), false, payloadEncText, false},
		{"binary protocol", []byte{0x91, 0x06}, true, payloadEncBase64, false},
		{"invalid utf-8 text", []byte{0xff, 0xfe}, false, payloadEncBase64, false},
		{"over 1 KB", big, true, payloadEncBase64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b traceBus
			sub, _, _ := b.subscribe(true, nil)
			e := &traceEvent{Kind: traceMessage}
			b.capture(e, tc.p, tc.binary)
			b.publish(e)
			got := <-sub.ch
			if got.PayloadEncoding != tc.enc || got.Truncated != tc.truncated {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func BenchmarkTraceEmitNoViewer(b *testing.B) {
	b.ReportAllocs()
	var bus traceBus
	for b.Loop() {
		if bus.on() {
			bus.publish(&traceEvent{})
		}
	}
}
