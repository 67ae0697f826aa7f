package hubproto

import (
	"strings"
	"testing"
)

// benchInvocation is a broadcast with one 2 KB string argument, the common service workload.
func benchInvocation(b *testing.B, c Codec) Invocation {
	arg, err := c.Marshal(strings.Repeat("x", 2048))
	if err != nil {
		b.Fatal(err)
	}
	return Invocation{Target: "broadcastMessage", Arguments: []Raw{arg}}
}

func benchAppend(b *testing.B, c Codec) {
	m := benchInvocation(b, c)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if buf, err = c.Append(buf[:0], &m); err != nil { // a pointer avoids boxing the struct
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendInvocationJSON(b *testing.B)        { benchAppend(b, JSON()) }
func BenchmarkAppendInvocationMessagePack(b *testing.B) { benchAppend(b, MessagePack()) }

func benchDecode(b *testing.B, c Codec) {
	frame, err := c.Append(nil, benchInvocation(b, c))
	if err != nil {
		b.Fatal(err)
	}
	msg, _, _, err := c.Cut(frame, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInvocationJSON(b *testing.B)        { benchDecode(b, JSON()) }
func BenchmarkDecodeInvocationMessagePack(b *testing.B) { benchDecode(b, MessagePack()) }

func benchPeek(b *testing.B, c Codec, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.PeekType(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekTypeJSON(b *testing.B) {
	frame, _ := JSON().Append(nil, benchInvocation(b, JSON()))
	benchPeek(b, JSON(), frame[:len(frame)-1])
}

// The JS client writes "type" last, so PeekType has to skip the 2 KB argument.
func BenchmarkPeekTypeJSONTypeLast(b *testing.B) {
	msg := []byte(`{"arguments":["` + strings.Repeat("x", 2048) + `"],"target":"send","type":1}`)
	benchPeek(b, JSON(), msg)
}

func BenchmarkPeekTypeMessagePack(b *testing.B) {
	frame, _ := MessagePack().Append(nil, benchInvocation(b, MessagePack()))
	msg, _, _, _ := MessagePack().Cut(frame, 0)
	benchPeek(b, MessagePack(), msg)
}

func BenchmarkJSONToMessagePack(b *testing.B) {
	in := Raw(`{"user":"alice","text":"` + strings.Repeat("hello ", 300) + `","n":[1,2.5,-3],"ok":true}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := JSONToMessagePack(in); err != nil {
			b.Fatal(err)
		}
	}
}

// Encoding must not allocate beyond growing dst (headers aside, which are sorted).
func TestAppendAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts")
	}
	for _, c := range []Codec{JSON(), MessagePack()} {
		msgs := []Message{
			Invocation{Target: "t", InvocationID: "1", Arguments: []Raw{mustMarshal(t, c, "x")}, StreamIDs: []string{"s"}},
			&Invocation{Target: "t"}, StreamItem{InvocationID: "1", Item: mustMarshal(t, c, 1)},
			Completion{InvocationID: "1", HasResult: true, Result: mustMarshal(t, c, 1)}, Completion{InvocationID: "1", Error: "e"},
			CancelInvocation{InvocationID: "1"}, Ping{}, Close{Error: "e", AllowReconnect: true}, Ack{SequenceID: 5}, &Sequence{SequenceID: 9},
		}
		buf := make([]byte, 0, 1024)
		for _, m := range msgs {
			if n := testing.AllocsPerRun(100, func() { buf, _ = c.Append(buf[:0], m) }); n != 0 {
				t.Errorf("%s Append(%T) allocates %v times", c.Name(), m, n)
			}
		}
	}
}
