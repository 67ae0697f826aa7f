package svcproto

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func BenchmarkXLibEncodeConnectionData(b *testing.B) {
	m := benchConnectionData()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		_ = e.EncodeArrayLen(4)
		_ = e.EncodeUint(6)
		_ = e.EncodeString(m.ConnectionID)
		_ = e.EncodeBytes(m.Payload)
		_ = e.EncodeMapLen(2)
		_ = e.EncodeUint(1)
		_ = e.EncodeUint(m.Ext.TracingID)
		_ = e.EncodeUint(5)
		_ = e.EncodeInt(int64(m.Ext.DataMessageType))
	}
}

func BenchmarkXLibDecodeConnectionData(b *testing.B) {
	body, _ := Append(nil, benchConnectionData())
	r := bytes.NewReader(body)
	d := msgpack.NewDecoder(r)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(body)
		d.Reset(r)
		_, _ = d.DecodeArrayLen()
		_, _ = d.DecodeInt32()
		_, _ = d.DecodeString()
		_, _ = d.DecodeBytes()
		n, _ := d.DecodeMapLen()
		for range n {
			_, _ = d.DecodeInt32()
			_, _ = d.DecodeUint64()
		}
	}
}
