package svcproto

import (
	"bytes"
	"testing"

	"github.com/signalrd/signalrd/protocol"
)

// Typical hub traffic: a ~200-byte JSON invocation to one client, and a broadcast carrying the
// message in both hub protocols.
func benchConnectionData() ConnectionData {
	return ConnectionData{
		ConnectionID: "Q2xpZW50Q29ubmVjdGlvbklkMDE",
		Payload:      append(bytes.Repeat([]byte(`{"type":1,"target":"send","arguments":["hello"]}`), 4), 0x1e),
		Ext:          Ext{TracingID: 1234567, HasTracingID: true, DataMessageType: DataInvocation},
	}
}

func benchBroadcastData() BroadcastData {
	return BroadcastData{
		ExcludedConnections: []string{"Q2xpZW50Q29ubmVjdGlvbklkMDE"},
		Payloads: Payloads{
			{"json", append(bytes.Repeat([]byte(`{"type":1,"target":"send","arguments":["hello"]}`), 4), 0x1e)},
			{"messagepack", bytes.Repeat([]byte{0x96, 0x01, 0x80, 0xc0, 0xa4, 's', 'e', 'n', 'd'}, 16)},
		},
		Ext: Ext{TracingID: 1234567, HasTracingID: true},
	}
}

func benchAppend(b *testing.B, m Message, frame bool) {
	buf := make([]byte, 0, 4096)
	n, _ := Append(nil, m)
	b.SetBytes(int64(len(n)))
	b.ReportAllocs()
	for b.Loop() {
		if frame {
			buf, _ = AppendFrame(buf[:0], m)
		} else {
			buf, _ = Append(buf[:0], m)
		}
	}
}

func benchDecode(b *testing.B, m Message) {
	body, err := Append(nil, m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendConnectionData(b *testing.B)      { benchAppend(b, benchConnectionData(), false) }
func BenchmarkAppendFrameConnectionData(b *testing.B) { benchAppend(b, benchConnectionData(), true) }
func BenchmarkAppendBroadcastData(b *testing.B)       { benchAppend(b, benchBroadcastData(), false) }
func BenchmarkAppendFrameBroadcastData(b *testing.B)  { benchAppend(b, benchBroadcastData(), true) }
func BenchmarkDecodeConnectionData(b *testing.B)      { benchDecode(b, benchConnectionData()) }
func BenchmarkDecodeBroadcastData(b *testing.B)       { benchDecode(b, benchBroadcastData()) }

// BenchmarkReader feeds 32 framed ConnectionData messages per Write, as a batched WebSocket
// message, and drains them.
func BenchmarkReader(b *testing.B) {
	for _, zeroCopy := range []bool{false, true} {
		name := "Copy"
		if zeroCopy {
			name = "ZeroCopy"
		}
		b.Run(name, func(b *testing.B) {
			var batch []byte
			for range 32 {
				batch, _ = AppendFrame(batch, benchConnectionData())
			}
			r := Reader{ZeroCopy: zeroCopy}
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				r.Write(batch)
				for {
					_, err := r.Next()
					if err == protocol.ErrIncomplete {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
