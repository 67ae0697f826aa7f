package appserver

import (
	"testing"

	"github.com/signalrd/signalrd/protocol/hubproto"
)

// BenchmarkPayloads measures serializing one broadcast for both protocols.
func BenchmarkPayloads(b *testing.B) {
	h := &hubRuntime{codecs: []hubproto.Codec{hubproto.JSON(), hubproto.MessagePack()}}
	args := []any{"user", "hello world", 42}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.payloads("message", args, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNegotiateJSON measures the System.Text.Json-compatible string escaping.
func BenchmarkNegotiateJSON(b *testing.B) {
	s := "http://localhost:8080/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AAAAAAAAAAA%3D"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendDotNetJSONString(buf[:0], s)
	}
}
