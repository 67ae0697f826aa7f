package server

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/signalrd/signalrd/protocol/svcproto"
)

// goldenEnvelope uses every field, so a change of any tag or kind number shows in the golden
// bytes: nodes of one deployment (and of a rolling upgrade) must agree on them.
func goldenEnvelope() *envelope {
	e := &envelope{
		Origin: "node-a", Kind: envSendGroup, Hub: "chat", ID: 7, OK: true,
		Conns: []string{"c1"}, User: "alice", Group: "g", ExclConns: []string{"x"}, ExclUsers: []string{"bob"},
		Text: "reason", Server: "s1", Expires: 1700000000000, Data: []byte{1, 2}, Data2: []byte{3}, List: []string{"a", "b"},
	}
	e.setPayloads(svcproto.Payloads{{Protocol: "json", Data: []byte(`{"type":1}` + "\x1e")}})
	return e
}

func TestEnvelopeGolden(t *testing.T) {
	b, err := encodeEnvelope(goldenEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "envelope.golden.hex")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
	}
	if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
		t.Fatalf("envelope encoding changed (a node of the old version cannot read it):\n got %s\nwant %s", got, want)
	}
	back, err := decodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, goldenEnvelope()) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, goldenEnvelope())
	}
	if envNodeRestarted != 29 {
		t.Fatalf("envelope kinds were renumbered (envNodeRestarted = %d): add new kinds last", envNodeRestarted)
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	for _, b := range [][]byte{nil, {0xc1}, {0x80}, []byte("not msgpack")} {
		if _, err := decodeEnvelope(b); err == nil {
			t.Errorf("decodeEnvelope(%x) accepted", b)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	b, _ := encodeEnvelope(goldenEnvelope())
	f.Add(b)
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same envelope.
		again, err := encodeEnvelope(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		e2, err := decodeEnvelope(again)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip of a decoded envelope: %v\n%+v\n%+v", err, e, e2)
		}
		_ = e.payloads()
	})
}

// benchEnvelope is a typical fan-out: a group send of a 2 KB message in both protocols.
func benchEnvelope() *envelope {
	e := &envelope{Origin: "node-a", Kind: envSendGroup, Hub: "chat", Group: "room-42", ExclConns: []string{"c1"}}
	data := make([]byte, 2048)
	e.setPayloads(svcproto.Payloads{{Protocol: "json", Data: data}, {Protocol: "messagepack", Data: data}})
	return e
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	e := benchEnvelope()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeEnvelope(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	raw, _ := encodeEnvelope(benchEnvelope())
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		e, err := decodeEnvelope(raw)
		if err != nil {
			b.Fatal(err)
		}
		_ = e.payloads()
	}
}
